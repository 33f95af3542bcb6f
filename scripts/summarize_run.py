"""The closing summary of scripts/run_all.sh: scores, speed and file sizes of one run."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _mb(path: Path) -> str:
    size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{size / 1e6:.1f} MB"


@click.command()
@click.option("--result_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--work_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--infer_seconds", required=True, type=float)
@click.option("--total_seconds", required=True, type=float)
def main(result_dir, work_dir, infer_seconds, total_seconds):
    result = json.loads((result_dir / "result.json").read_text())
    summary = json.loads(Path(str(result_dir).rstrip("/") + "_summary.json").read_text())
    sentences = result["num_sentences"]
    click.echo("\n== summary ==")
    click.echo(f"entity F1 {result['f1']:.4f}  precision {result['precision']:.4f}  recall {result['recall']:.4f}  "
               f"word accuracy {result['accuracy']:.4f}")
    click.echo("per type F1: " + ", ".join(f"{t} {m['f1']:.4f}" for t, m in sorted(result["per_type"].items())))
    click.echo(f"{sentences} sentences, {result['num_words']} words scored, {len(result['missing']) if isinstance(result['missing'], list) else result['missing']} samples missing")
    click.echo(f"inference: {sentences / infer_seconds:.1f} sentences/s end to end "
               f"(ais_bench throughput {summary['throughput']:.1f} samples/s); whole flow {total_seconds:.0f} s")
    for name in ("model.onnx", "model_fix.onnx", "bert_bin", "result", "predictions.txt"):
        path = work_dir / name
        if path.exists():
            click.echo(f"  {name:<18} {_mb(path)}")
    click.echo(f"result: {result_dir / 'result.json'}")


if __name__ == "__main__":
    main()
