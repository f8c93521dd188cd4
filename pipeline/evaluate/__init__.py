"""The evaluate stage's library: bicubic vs trained generators on the val split (and real photos).

    metrics = evaluate("data/hr", "data/lr", {"net": Path("models/net/generator.pth"),
                       "gan": Path("models/gan/generator.pth")}, tmp_dir, cfg, scale=4, seed=0)
    print(summary("eval"))
"""
from pipeline.evaluate.outputs import metrics_json, metrics_table, summary
from pipeline.evaluate.run import LABELS, METRICS, aggregate, bicubic, evaluate

__all__ = ["LABELS", "METRICS", "aggregate", "bicubic", "evaluate", "metrics_json", "metrics_table", "summary"]
