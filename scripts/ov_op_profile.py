"""Where an OpenVINO model's time goes, per operator type, on one batch shape, one thread.

Why the fastest fp32 path stops short of the MatMul peak (the benchmark's row 6): one stream of one
thread runs `--rows x --length` tokens (random word pieces, full attention mask) with OpenVINO's
per-node counters on, and this prints each operator type's share of the time; the dense layers'
(FullyConnected) and the attention products' GFLOP/s from the model's shape (`bench.flops`). Compare
them with half the benchmark's 2-thread fp32 MatMul peak.

    python scripts/ov_op_profile.py --model /tmp/ner_bench/model.onnx --model_dir models/minilm-l6-conll03 \
        --rows 4 --length 256 --precision f32
"""
from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.flops import EncoderShape  # noqa: E402
from common.errors import handle_errors  # noqa: E402
from common.feeds import build_feed_flat  # noqa: E402
from common.model_spec import read_model_spec  # noqa: E402
from runners.openvino import OpenVinoRunner  # noqa: E402


def profile(model: Path, model_dir: Path, rows: int, length: int, precision: str, passes: int) -> dict:
    spec = read_model_spec(model_dir)
    shape = EncoderShape.from_config(json.loads((model_dir / "config.json").read_text(encoding="utf-8")))
    # random word pieces in full rows, through the project's one feed builder (the spec's inputs, in order)
    ids = np.random.default_rng(0).integers(1000, 20000, rows * length)
    feed = build_feed_flat(ids, np.arange(rows) * length, np.full(rows, length), length, spec.input_names, pad_id=0)
    runner = OpenVinoRunner.from_path(model, precision=precision, threads=1, config={"PERF_COUNT": "YES"})
    with runner:
        for _ in range(3):  # warm up: kernels built, buffers at size
            runner.infer(feed)
        per_type: collections.Counter = collections.Counter()
        for _ in range(passes):
            runner.infer(feed)
            for node in runner.request.profiling_info:
                per_type[(node.node_type, node.exec_type)] += node.real_time.total_seconds() / passes
    lengths = np.full(rows, length)
    dense_flops = int(lengths.sum()) * shape.flops_per_token()
    attention_flops = shape.flops(lengths) - dense_flops
    total = sum(per_type.values())
    dense_s = sum(t for (kind, _), t in per_type.items() if kind.startswith("FullyConnected"))
    attention_s = sum(t for (kind, _), t in per_type.items() if kind == "Subgraph")
    return {"total_ms": 1e3 * total, "per_type": per_type, "dense_share": dense_s / total,
            "dense_gflops": dense_flops / dense_s / 1e9 if dense_s else None,
            "attention_share": attention_s / total,
            "attention_gflops": attention_flops / attention_s / 1e9 if attention_s else None,
            "model_gflops": (dense_flops + attention_flops) / total / 1e9}


@click.command()
@click.option("--model", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True,
              help="An .onnx or an OpenVINO IR .xml.")
@click.option("--model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="The checkpoint folder (config.json: the sizes the FLOPs come from).")
@click.option("--rows", type=click.IntRange(1), default=4, show_default=True)
@click.option("--length", type=click.IntRange(2), default=256, show_default=True)
@click.option("--precision", type=click.Choice(["f32", "bf16", "auto"]), default="f32", show_default=True)
@click.option("--passes", type=click.IntRange(1), default=5, show_default=True)
@click.option("--top", type=click.IntRange(1), default=10, show_default=True)
@handle_errors
def main(model, model_dir, rows, length, precision, passes, top):
    found = profile(model, model_dir, rows, length, precision, passes)
    click.echo(f"{rows} x {length} tokens, 1 thread, {precision}: {found['total_ms']:.1f} ms a batch, "
               f"{found['model_gflops']:.1f} GFLOP/s for the whole model")
    for (kind, kernel), seconds in found["per_type"].most_common(top):
        click.echo(f"  {1e3 * seconds:8.2f} ms {100 * seconds / (found['total_ms'] / 1e3):5.1f}%  {kind} ({kernel})")
    if found["dense_gflops"]:
        click.echo(f"dense layers (FullyConnected): {100 * found['dense_share']:.1f}% of the time, "
                   f"{found['dense_gflops']:.1f} GFLOP/s")
    if found["attention_gflops"]:
        click.echo(f"attention (Subgraph: QK^T, softmax, PV): {100 * found['attention_share']:.1f}% of the time, "
                   f"{found['attention_gflops']:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
