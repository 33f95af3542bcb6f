"""Export + fix + compare on a full-size architecture with random weights (no checkpoint needed).

python scripts/check_fix_large.py --config_dir ../shared/models/bert-large-NER-shape [--work_dir DIR]

Builds a token classifier of exactly the config's shape with random weights (stored float16,
as the project's default checkpoint is, so the exporter's float32 cast is exercised), exports it
(checked against PyTorch), runs fix_onnx (checked against the exported graph), and prints the
numbers: layers, constants changed, Softmax nodes covered, largest differences and times.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.errors import InputFileError, handle_errors  # noqa: E402


def build_random_checkpoint(config_dir: Path, target: Path, seed: int = 0) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(str(config_dir))
    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_config(config).eval()
    model.half().save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(config_dir)).save_pretrained(str(target))
    return {"layers": config.num_hidden_layers, "hidden": config.hidden_size, "heads": config.num_attention_heads,
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}


@click.command()
@click.option("--config_dir", required=True, type=click.Path(path_type=Path),
              help="Folder with config.json and tokenizer files (weights not needed).")
@click.option("--work_dir", default=None, type=click.Path(path_type=Path),
              help="Where the checkpoint and ONNX files go (default: a temporary folder, removed after).")
@click.option("--num_sentences", default=16, show_default=True, type=int)
@handle_errors
def main(config_dir, work_dir, num_sentences):
    from common.quiet import quiet_transformers
    from convert.export import export_onnx
    from convert.fix import fix_onnx

    if not (config_dir / "config.json").is_file():
        raise InputFileError(config_dir, "no config.json")
    quiet_transformers()
    keep = work_dir is not None
    work = Path(work_dir or tempfile.mkdtemp(prefix="check_fix_large."))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        shape = build_random_checkpoint(config_dir, work / "checkpoint")
        click.echo(f"model: {shape['layers']} layers, hidden {shape['hidden']}, {shape['heads']} heads, "
                   f"{shape['params_m']} M parameters (random, stored float16) [{time.perf_counter() - t:.1f} s]")

        exported = export_onnx(model_dir=work / "checkpoint", output=work / "model.onnx",
                               num_sentences=num_sentences)
        size = sum(os.path.getsize(f) for f in exported.files) / 2**20
        click.echo(f"export: {size:.0f} MiB, opset {exported.opset}; vs PyTorch {exported.check.summary()} "
                   f"[{exported.seconds:.1f} s]")

        fixed = fix_onnx(input=exported.output, output=work / "model_fix.onnx", num_sentences=num_sentences)
        for report in fixed.reports:
            click.echo(f"fix [{report.name}]: {report.changed} changed")
            for line in report.lines:
                click.echo(f"    {line}")
        click.echo(f"fix: vs exported graph {fixed.check.summary() if fixed.check else 'nothing changed'} "
                   f"[{fixed.seconds:.1f} s]")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
