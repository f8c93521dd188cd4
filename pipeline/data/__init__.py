"""Training data: the PyTorch dataset over a pairs shard set (`dataset`), its epoch order over ranks
and workers (`order`), paired augmentation (`augment`), the loaders (`loader`), plus `inspect`
(any shard set) and synthetic HR/LR sets for tests and benchmarks (`synthetic`).

Nothing is imported here: `realsynth inspect` and the synthetic sets need no torch.
"""
