"""postprocess: inference outputs + .anno + .index.jsonl -> result.json (conlleval scores)."""
