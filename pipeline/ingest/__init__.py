"""Ingest: HR photos (sample photos, folders, globs, lists) → validated, tiled HR shard set."""
from pipeline.ingest.ingest import IngestStats, cap_summary, cap_tiles, ingest, val_sources
from pipeline.ingest.sources import SAMPLE_PHOTOS, resolve_sources

__all__ = ["IngestStats", "cap_summary", "cap_tiles", "ingest", "val_sources", "SAMPLE_PHOTOS", "resolve_sources"]
