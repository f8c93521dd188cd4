"""`realsynth pairs`: captured HR/LR photo pairs → a real-pair shard set (`shard.real_pairs` mixes it in).

Not to be confused with `pipeline.shard.pairs`, which cuts the training patches (`data/pairs`).
"""
from pipeline.pairs.align import Alignment, Limits, align_pair, measure_shift
from pipeline.pairs.importer import COLUMNS, ImportStats, import_pairs
from pipeline.pairs.match import match_files, pair_stem, scale_of

__all__ = ["Alignment", "COLUMNS", "ImportStats", "Limits", "align_pair", "import_pairs", "match_files",
           "measure_shift", "pair_stem", "scale_of"]
