"""`python -m bench.context`: sentence vs document context, side by side in one run (F1 and speed).

Both contexts label the whole CoNLL file with the same ONNX graph on ONNX Runtime through the one
engine; the passes are interleaved (sentence, document, sentence, ...) so both meet the same drift of
the machine's speed, and the median pass counts. Document context costs time because windows
overlap (`--window_overlap` is the knob) and rows are longer; the issue's budget is 1.5x per sentence.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import click

from common.atomic import write_json
from common.cli import CONTEXT_SETTINGS, model_dir_option
from common.errors import handle_errors
from common.metrics import classification_report
from common.model_spec import CONTEXTS, read_model_spec
from common.paths import DEFAULT_MODEL_DIR, conll_dir
from convert.onnx_cache import ensure_onnx
from engine.core import Engine
from preprocess.conll import read_conll_file
from preprocess.pipeline import stderr_note
from preprocess.plan import BatchPolicy
from preprocess.tokenizer import load_tokenizer
from runners.onnxrt import OrtRunner, physical_cores

from .timing import time_pass

# one policy for both: a token budget that still batches several 256-token document windows
CONTEXT_POLICY = BatchPolicy(max_rows=256, max_tokens=1024)


def compare_contexts(*, model_dir, input_file, onnx=None, seq_len: int = 256, window_overlap: int = 64,
                     sentence_seq_len: int = 512, repeats: int = 3, policy: BatchPolicy = CONTEXT_POLICY,
                     log=lambda msg: None) -> dict:
    """F1 and sentences/s of both contexts on `input_file`; document windows are `seq_len` tokens."""
    spec = read_model_spec(model_dir)
    tokenizer = load_tokenizer(model_dir)
    conll = read_conll_file(input_file)
    if not conll.has_docstart:
        stderr_note(conll.no_docstart_note())
    words = [list(s.words) for s in conll.sentences]
    gold = [list(s.tags) for s in conll.sentences]
    documents = conll.documents()
    graph = ensure_onnx(model_dir, onnx, log)
    results = {}
    with OrtRunner.from_path(graph, providers=["CPUExecutionProvider"], intra_op_threads=physical_cores()) as runner:
        engines = {
            "sentence": Engine(runner, tokenizer=tokenizer, input_names=spec.input_names, id2label=spec.id2label,
                               policy=policy, max_len=sentence_seq_len),
            "document": Engine(runner, tokenizer=tokenizer, input_names=spec.input_names, id2label=spec.id2label,
                               policy=policy, max_len=seq_len, context="document", window_overlap=window_overlap),
        }
        tags = {name: engine.label(words, documents=documents) for name, engine in engines.items()}  # warm-up
        times = {name: [] for name in CONTEXTS}
        for round_ in range(repeats):
            for name in CONTEXTS:
                seconds = time_pass(lambda: engines[name].label(words, documents=documents))
                times[name].append(seconds)
                log(f"round {round_ + 1}: {name} {len(words) / seconds:.1f} sentences/s")
    for name in CONTEXTS:
        report = classification_report(gold, tags[name])
        seconds = statistics.median(times[name])
        results[name] = {"f1": report["f1"], "precision": report["precision"], "recall": report["recall"],
                         "per_type_f1": {t: v["f1"] for t, v in report["per_type"].items()},
                         "sentences_per_s": len(words) / seconds, "seconds": seconds, "passes_s": times[name]}
    cost = results["sentence"]["sentences_per_s"] / results["document"]["sentences_per_s"]
    return {"model_dir": str(model_dir), "input_file": str(input_file), "sentences": len(words),
            "batching": policy.describe(),
            "documents": len(documents), "graph": str(graph),
            "windows": {"sentence": sentence_seq_len, "document": seq_len, "document_overlap": window_overlap},
            "contexts": results, "document_time_per_sentence_vs_sentence": cost,
            "within_budget_1_5x": cost <= 1.5}


@click.command(context_settings=CONTEXT_SETTINGS)
@model_dir_option(default=DEFAULT_MODEL_DIR)
@click.option("--input_file", type=click.Path(path_type=Path), default=None,
              help="CoNLL file [default: CoNLL-2003 test.txt].")
@click.option("--onnx", type=click.Path(path_type=Path), default=None, help="The graph [default: the export cache].")
@click.option("--seq_len", type=click.IntRange(16, 512), default=256, show_default=True, help="Document windows.")
@click.option("--window_overlap", type=click.IntRange(0), default=64, show_default=True)
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True, help="Timed passes per context.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the result here.")
@handle_errors
def main(model_dir, input_file, onnx, seq_len, window_overlap, repeats, json_path):
    """Sentence vs document context: F1 and sentences/s of both, side by side."""
    result = compare_contexts(model_dir=model_dir, input_file=input_file or conll_dir() / "test.txt", onnx=onnx,
                              seq_len=seq_len, window_overlap=window_overlap, repeats=repeats,
                              log=lambda msg: click.echo(msg, err=True))
    for name, row in result["contexts"].items():
        click.echo(f"{name:9s} F1 {100 * row['f1']:.2f}  {row['sentences_per_s']:.1f} sentences/s")
    click.echo(f"document context costs {result['document_time_per_sentence_vs_sentence']:.2f}x the time per "
               f"sentence ({'within' if result['within_budget_1_5x'] else 'over'} the 1.5x budget)")
    if json_path:
        write_json(json_path, result)


if __name__ == "__main__":
    sys.exit(main())
