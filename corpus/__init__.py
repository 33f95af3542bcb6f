"""Whole corpora: millions of sentences streamed in shards, on one process or a Ray cluster, same scores.

See `corpus.cli` (the command), `corpus.shard` (what one shard does) and `corpus.ray_engine`."""
