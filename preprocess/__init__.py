"""preprocess: CoNLL file -> .bin inputs, .anno labels and an .index.jsonl (see README)."""
