"""The closing summary of scripts/run_all.sh: scores, speed and file sizes of one run.

Each speed figure has one meaning and says it:
- "inference": sentences/s of `python -m infer`, model load to last output (read from the run record
  `.infer_run.json` it leaves in the result folder); samples/s when that run resumed and computed
  only some; none when every output was reused from an earlier run;
- "model compute": ais_bench's throughput from the summary JSON, `session.run` time only;
- "in process": with --model_file, --model_dir and --input_file, the same graph on the same backend (ONNX
  Runtime) labelling the same sentences in one process (`engine.Engine`, in the same context, under the same
  token budget as infer's `--max_tokens`), model
  loaded and warmed up before timing, tokenising to labels timed; beside it, the share of it that the
  file flow's inference reaches, so the cost of going through files is in plain sight;
- "whole flow": seconds of run_all.sh, every stage, reused ones included.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.model_spec import CONTEXTS, read_model_spec  # noqa: E402
from engine.core import Engine  # noqa: E402
from infer.outputs import RUN_RECORD_NAME, read_run_record  # noqa: E402
from preprocess.conll import read_conll_file  # noqa: E402
from preprocess.plan import BatchPolicy  # noqa: E402
from preprocess.tokenizer import load_tokenizer  # noqa: E402
from runners.onnxrt import OrtRunner  # noqa: E402

# the benchmark's in-process batching (bench.paths.DEFAULT_POLICY): sorted by length, <= 512 padded tokens
IN_PROCESS_ROWS, IN_PROCESS_TOKENS = 256, 512
WARMUP_SENTENCES = 200


def _mb(path: Path) -> str:
    size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{size / 1e6:.1f} MB"


def speed_lines(record, summary: dict, total_seconds: float, sentences: int) -> list[str]:
    """The labelled speed figures; none for inference work that was not done in this run."""
    measured = "python -m infer, model load to last output"
    compute_note = ""
    if record is None:
        inference = f"inference: speed unknown (no {RUN_RECORD_NAME} in the result folder)"
    elif not record.get("computed"):
        inference = (f"inference: not run; all {record.get('reused')} outputs reused from an earlier run "
                     "(no speed measured)")
        compute_note = ", measured by the earlier run that computed the outputs"
    elif not record.get("reused"):
        # every sample computed in this run: the data's sentences (a long one may span several samples)
        inference = (f"inference: {sentences / record['seconds']:.1f} sentences/s ({measured}; {sentences} "
                     f"sentences as {record['computed']} samples in {record['seconds']:.1f} s)")
    else:
        inference = (f"inference: {record['samples_per_s']:.1f} samples/s ({measured}; {record['computed']} of "
                     f"{record['total']} samples computed in {record['seconds']:.1f} s, {record['reused']} reused)")
    compute = (f"model compute: {summary['throughput']:.1f} samples/s (ais_bench throughput, session.run only"
               f"{compute_note})")
    flow = f"whole flow: {total_seconds:.0f} s (scripts/run_all.sh, all 6 stages, reused ones included)"
    return [inference, compute, flow]


def in_process_speed(model_file: Path, model_dir: Path, input_file: Path, policy: BatchPolicy,
                     context: str = "sentence", seq_len: Optional[int] = None,
                     window_overlap: Optional[int] = None) -> tuple[float, int]:
    """Sentences/s of the graph in `model_file` on ONNX Runtime, in process, on every sentence of `input_file`
    (tokenising, batching, inference and decoding timed; the load and a warm-up are not)."""
    conll = read_conll_file(input_file)
    sentences = [list(s.words) for s in conll.sentences]
    documents = conll.documents() if context == "document" else None
    spec = read_model_spec(model_dir)
    with OrtRunner.from_path(model_file) as runner:
        engine = Engine(runner, tokenizer=load_tokenizer(model_dir), input_names=spec.input_names,
                        id2label=spec.id2label, policy=policy, max_len=seq_len or spec.max_positions,
                        output_name=runner.get_output_metadata()[0].name, check_inputs=False,
                        context=context, window_overlap=window_overlap)
        engine.label(sentences[:WARMUP_SENTENCES])
        started = time.perf_counter()
        engine.label(sentences, documents=documents)
        seconds = time.perf_counter() - started
    return len(sentences) / seconds, len(sentences)


def in_process_line(speed: float, count: int, record: Optional[dict], sentences: int, policy: BatchPolicy,
                    context: str) -> str:
    line = (f"in process: {speed:.1f} sentences/s (same graph on ONNX Runtime, engine.Engine on the same {count} "
            f"sentences, {context} context, {policy.describe()}; tokenising to labels, load and warm-up untimed)")
    if record and record.get("computed") and not record.get("reused") and count == sentences:
        line += f"; python -m infer reaches {sentences / record['seconds'] / speed:.2f}x of it"
    return line


@click.command()
@click.option("--result_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--work_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--total_seconds", required=True, type=float)
@click.option("--model_file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="With --model_dir and --input_file: also measure this graph in process, for comparison.")
@click.option("--model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None)
@click.option("--input_file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None)
@click.option("--context", type=click.Choice(CONTEXTS), default="sentence", show_default=True)
@click.option("--seq_len", type=int, default=None, help="Window length (default: the model's positions).")
@click.option("--window_overlap", type=int, default=None)
@click.option("--max_tokens", type=int, default=IN_PROCESS_TOKENS, show_default=True,
              help="Padded tokens per batch in process (infer's --max_tokens).")
def main(result_dir, work_dir, total_seconds, model_file, model_dir, input_file, context, seq_len, window_overlap,
         max_tokens):
    result = json.loads((result_dir / "result.json").read_text())
    summary = json.loads(Path(str(result_dir).rstrip("/") + "_summary.json").read_text())
    sentences = result["num_sentences"]
    click.echo("\n== summary ==")
    click.echo(f"entity F1 {result['f1']:.4f}  precision {result['precision']:.4f}  recall {result['recall']:.4f}  "
               f"word accuracy {result['accuracy']:.4f}")
    click.echo("per type F1: " + ", ".join(f"{t} {m['f1']:.4f}" for t, m in sorted(result["per_type"].items())))
    click.echo(f"{sentences} sentences, {result['num_words']} words scored, {len(result['missing']) if isinstance(result['missing'], list) else result['missing']} samples missing")
    record = read_run_record(result_dir)
    lines = speed_lines(record, summary, total_seconds, sentences)
    if model_file and model_dir and input_file:  # beside the inference figure it is compared with
        policy = BatchPolicy(max_rows=IN_PROCESS_ROWS, max_tokens=max_tokens or None)
        speed = in_process_speed(model_file, model_dir, input_file, policy, context, seq_len, window_overlap)
        lines.insert(1, in_process_line(*speed, record, sentences, policy, context))
    for line in lines:
        click.echo(line)
    for name in ("model.onnx", "model_fix.onnx", "bert_bin", "result", "predictions.txt"):
        path = work_dir / name
        if path.exists():
            click.echo(f"  {name:<18} {_mb(path)}")
    click.echo(f"result: {result_dir / 'result.json'}")


if __name__ == "__main__":
    main()
