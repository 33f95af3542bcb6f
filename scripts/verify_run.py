"""Check one finished run of scripts/run_all.sh against independent references.

- result.json's entity F1 equals seqeval's (default mode) on the predictions file, and the
  conlleval oracle (PyPI `conlleval`) reads that file as it is and gives the same numbers;
- every word of the data was scored;
- the ONNX outputs agree with the PyTorch checkpoint run on the very same .bin inputs:
  the share of words whose label agrees, and the largest logit difference over real tokens.

python scripts/verify_run.py --work_dir runs/minilm-l6-conll03-test-512 --model_dir models/minilm-l6-conll03
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runners.torchrt import TorchRunner  # noqa: E402
from postprocess.results import find_outputs, load_output, read_index  # noqa: E402


def read_predictions(path: Path):
    gold, pred, g, p = [], [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if g:
                gold.append(g), pred.append(p)
            g, p = [], []
            continue
        _, gt, pt = line.split(" ")
        g.append(gt), p.append(pt)
    if g:
        gold.append(g), pred.append(p)
    return gold, pred


@click.command()
@click.option("--work_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--model_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--batch_size", default=64, show_default=True)
def main(work_dir, model_dir, batch_size):
    import conlleval
    from seqeval.metrics import f1_score

    result_dir = sorted(p for p in (work_dir / "result").iterdir() if p.is_dir())[-1]
    result = json.loads((result_dir / "result.json").read_text())
    gold, pred = read_predictions(work_dir / "predictions.txt")
    words = sum(map(len, gold))
    seqeval_f1 = f1_score(gold, pred)
    oracle = conlleval.evaluate((work_dir / "predictions.txt").read_text().splitlines())
    click.echo(f"words in predictions file: {words} (result.json num_words {result['num_words']})")
    click.echo(f"entity F1: result.json {result['f1']:.6f}  seqeval {seqeval_f1:.6f}  "
               f"conlleval {oracle['overall']['chunks']['evals']['f1']:.6f}")

    anno = sorted(work_dir.glob("bert_bin/bert_bin_*.anno"))[-1]
    index = read_index(anno.with_suffix(".index.jsonl"))
    bin_dir = anno.with_suffix("")
    outputs = find_outputs(result_dir)
    by_length = defaultdict(list)
    for record in index.samples:
        by_length[record.length].append(record)
    agree = total = 0
    max_diff = 0.0
    with TorchRunner(model_dir) as torch_runner:
        for length, records in sorted(by_length.items()):
            for start in tqdm(range(0, len(records), batch_size), desc=f"PyTorch, length {length}", leave=False):
                batch = records[start:start + batch_size]
                feed = {name: np.concatenate([
                    np.fromfile(bin_dir / name / f"{name}_{r.sample}_{r.sample}.bin", dtype="<i8").reshape(1, -1)
                    for r in batch]) for name in index.header.input_names}
                reference = torch_runner.infer(feed)["logits"]
                for row, record in enumerate(batch):
                    onnx_logits = load_output(outputs[record.sample], record, index.header.num_labels)[0]
                    real = slice(0, record.tokens)
                    max_diff = max(max_diff, float(np.abs(onnx_logits[real] - reference[row, real]).max()))
                    positions = [pos for _, pos in record.words]
                    agree += int((onnx_logits[positions].argmax(-1) == reference[row, positions].argmax(-1)).sum())
                    total += len(positions)
    click.echo(f"ONNX vs PyTorch on the same inputs: {agree}/{total} word labels agree "
               f"({100 * agree / total:.4f}%), largest logit difference {max_diff:.3g}")
    ok = (words == result["num_words"] == total and abs(seqeval_f1 - result["f1"]) < 1e-9
          and abs(oracle["overall"]["chunks"]["evals"]["f1"] - result["f1"]) < 1e-9
          and agree / total >= 0.999)
    click.echo("all checks passed" if ok else "CHECK FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
