"""The closing summary of scripts/run_all.sh: scores, speed and file sizes of one run.

Each speed figure has one meaning and says it:
- "inference": sentences/s of `python -m infer`, model load to last output (read from the run record
  `.infer_run.json` it leaves in the result folder); samples/s when that run resumed and computed
  only some; none when every output was reused from an earlier run;
- "model compute": ais_bench's throughput from the summary JSON, `session.run` time only;
- "whole flow": seconds of run_all.sh, every stage, reused ones included.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infer.outputs import RUN_RECORD_NAME, read_run_record  # noqa: E402


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


@click.command()
@click.option("--result_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--work_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--total_seconds", required=True, type=float)
def main(result_dir, work_dir, total_seconds):
    result = json.loads((result_dir / "result.json").read_text())
    summary = json.loads(Path(str(result_dir).rstrip("/") + "_summary.json").read_text())
    sentences = result["num_sentences"]
    click.echo("\n== summary ==")
    click.echo(f"entity F1 {result['f1']:.4f}  precision {result['precision']:.4f}  recall {result['recall']:.4f}  "
               f"word accuracy {result['accuracy']:.4f}")
    click.echo("per type F1: " + ", ".join(f"{t} {m['f1']:.4f}" for t, m in sorted(result["per_type"].items())))
    click.echo(f"{sentences} sentences, {result['num_words']} words scored, {len(result['missing']) if isinstance(result['missing'], list) else result['missing']} samples missing")
    for line in speed_lines(read_run_record(result_dir), summary, total_seconds, sentences):
        click.echo(line)
    for name in ("model.onnx", "model_fix.onnx", "bert_bin", "result", "predictions.txt"):
        path = work_dir / name
        if path.exists():
            click.echo(f"  {name:<18} {_mb(path)}")
    click.echo(f"result: {result_dir / 'result.json'}")


if __name__ == "__main__":
    main()
