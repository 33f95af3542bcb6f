"""train: fine-tune a local BERT-family checkpoint for NER on CoNLL files."""
