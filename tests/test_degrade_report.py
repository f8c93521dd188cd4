"""The degrade report counted over the LR index in pieces: the same PNG and markdown bytes whatever
the pieces (#20 §4)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import cli
from pipeline.degrade.panels import report_columns, summarize
from pipeline.degrade.report import HISTOGRAMS, write_degrade_report
from pipeline.io.shards import Sample, ShardSet, json_bytes, write_shard_set


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    """bsrgan recipes (a log `camera_shot` with NaN, `down0_interp` names with NaN, columns never drawn)
    with poisson noise in every third row (both `noise1_level` panels), LR sizes in front and two
    user-op columns behind: names with gaps, and ints."""
    out = tmp_path_factory.mktemp("recipes")
    assert cli.main(["recipes", str(out), "--preset", "bsrgan", "--n", "60"]) == 0
    table = pd.read_parquet(out / "recipes.parquet")
    table.loc[::3, "noise1_kind"] = "poisson"
    n = len(table)
    table.insert(1, "height", 16 + np.arange(n) % 5)
    table.insert(2, "width", 20 + np.arange(n) % 3)
    table["isp_demosaic"] = [None if i % 4 == 0 else ("bilinear", "malvar")[i % 2] for i in range(n)]
    table["isp_generations"] = np.arange(n) % 4 + 1
    return table


def _report(out, pieces):
    out.mkdir()
    stats = {"backend": "reference", "samples": 60, "shards": 1, "skipped": 0}
    write_degrade_report(out, pieces, [], [], stats=stats, preset="bsrgan", seed=0, scale=4)
    return (out / HISTOGRAMS).read_bytes(), (out / "report.md").read_text()


def test_table_has_what_the_report_must_survive(table):
    panels = {p.title: p for p in summarize(lambda: [table]).panels}
    assert {"noise1_level, gaussian", "noise1_level, poisson", "camera_shot (48 n/a)"} <= set(panels)
    assert panels["camera_shot (48 n/a)"].log and panels["isp_generations"].total == len(table)
    assert panels["isp_demosaic"].labels.to_dict() == {"bilinear": 15, "malvar": 30, "n/a": 15}
    assert "n/a" in panels["down0_interp"].labels and "noise2_level" not in panels


def test_report_in_pieces_is_the_report_of_the_whole_table(tmp_path, table):
    whole = _report(tmp_path / "whole", lambda: [table])
    sevens = _report(tmp_path / "sevens", lambda: (table.iloc[i:i + 7] for i in range(0, len(table), 7)))
    assert sevens[0] == whole[0] and sevens[1] == whole[1]
    assert "- LR sizes: 16–20 px high, 20–22 px wide" in whole[1]
    assert "| isp_demosaic | bilinear 0.25, malvar 0.50, n/a 0.25 |" in whole[1]


def test_report_of_a_shard_set_read_in_pieces(tmp_path, table):
    """As the stage reads its index: `iter_frames` of the columns the report needs, 7 rows at a time."""
    rows = table.drop(columns="key").astype(object).where(table.drop(columns="key").notna(), None)
    samples = [Sample(f"s{i:03d}", {"json": json_bytes({})}, row) for i, row in enumerate(rows.to_dict("records"))]
    write_shard_set(tmp_path / "lr", samples, set_name="lr")
    shards = ShardSet(tmp_path / "lr")
    assert report_columns(shards.columns)[:2] == ["height", "width"] and "key" not in report_columns(shards.columns)
    whole = _report(tmp_path / "whole", lambda: [table])
    read = _report(tmp_path / "read", lambda: shards.iter_frames(report_columns(shards.columns), rows=7))
    assert read == whole
