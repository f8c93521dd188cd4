"""Safe image decode/encode, shard sets (WebDataset-layout tars + parquet index), atomic outputs."""
