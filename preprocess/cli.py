"""`python bin_create.py`: the ModelZoo preprocess command, with every documented flag honoured."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click

from common.errors import handle_errors
from common.paths import DEFAULT_MODEL_DIR
from common.cli import CONTEXT_SETTINGS, parse_lengths

from .pipeline import CONTEXTS, create_bins

RECIPE_MODEL_DIR = "./bert-large-NER"


def resolve_model_dir(value: str | None) -> Path:
    """The recipe's default is ./bert-large-NER; where that folder is absent and no folder was given,
    the project's own default model is used instead (and said so)."""
    if value is not None:
        return Path(value)
    if Path(RECIPE_MODEL_DIR).is_dir():
        return Path(RECIPE_MODEL_DIR)
    click.echo(f"note: {RECIPE_MODEL_DIR} not found; using the default model {DEFAULT_MODEL_DIR}", err=True)
    return DEFAULT_MODEL_DIR


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--input_file", default="./conll2003/test.txt", show_default=True,
              help="CoNLL file (word first column, tag last).")
@click.option("--model_name_from_hub", default=None,
              help=f"Local checkpoint folder [default: {RECIPE_MODEL_DIR}, else the project's default model]")
@click.option("--save_dir", default="./bert_bin", show_default=True)
@click.option("--seq_len", default=512, show_default=True, help="Longest sample; longer sentences become windows.")
@click.option("--buckets", default=None, help="Pad each sample to the smallest of these lengths, e.g. 32,64,128,256,512.")
@click.option("--window_overlap", default=None, type=int,
              help="Tokens shared by neighbouring windows (of a long sentence, or of a document) "
                   "[default: half a window].")
@click.option("--context", type=click.Choice(CONTEXTS), default="sentence", show_default=True,
              help="sentence: each sentence on its own; document: the sentences of each -DOCSTART- document "
                   "form one sequence, cut into overlapping windows (each word scored once, where it has "
                   "the most context).")
@handle_errors
def main(input_file, model_name_from_hub, save_dir, seq_len, buckets, window_overlap, context):
    """Turn a CoNLL file into .bin model inputs, an .anno label file and an .index.jsonl map."""
    binset = create_bins(input_file=input_file, model_dir=resolve_model_dir(model_name_from_hub),
                         save_dir=save_dir, seq_len=seq_len, buckets=parse_lengths(buckets) if buckets else None, overlap=window_overlap,
                         context=context)
    header = json.loads(binset.index_file.open(encoding="utf-8").readline())
    lengths = Counter()
    with binset.index_file.open(encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            lengths[json.loads(line)["length"]] += 1
    click.echo(f"{header['num_sentences']} sentences, {header['num_words']} words -> {header['num_samples']} samples "
               f"({', '.join(f'{n} x {length}' for length, n in sorted(lengths.items()))} tokens)")
    click.echo(f"inputs: {binset.bin_dir}  ({', '.join(binset.input_names)})")
    click.echo(f"labels: {binset.anno_file}")
    click.echo(f"index:  {binset.index_file}")


if __name__ == "__main__":
    main()
