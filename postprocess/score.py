"""One run scored end to end: read (results), decode, normalise to IOB2, count (metrics).

`score_run` is the library function behind `bert_metric.py`; it writes nothing, so a failure
at any step leaves no file behind. `predictions_text` and `format_table` render its result.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import InputFileError, ValidationError
from common.tags import OUTSIDE, to_iob2

from .decode import decode, missing_samples
from common.metrics import classification_report
from .outputs import Outputs, bin_dtype, find_outputs
from .results import index_path_for, read_anno, read_index, read_words

SCORING = ("conlleval: entity-level micro precision/recall/F1 over IOB2 chunks; "
           "accuracy = share of words whose IOB2 tag equals the gold tag")


@dataclass(frozen=True)
class Run:
    """What one scoring run produced: `result` is what result.json holds."""

    result: dict
    gold: list[list[str]]
    pred: list[list[str]]
    words: list[tuple[str, ...]] | None


def score_run(result_dir, anno_file, index_file=None, *, allow_missing: bool = False,
              with_words: bool = False, input_file=None, output_dtype: str | None = None) -> Run:
    """Score the outputs in `result_dir` against the gold labels of `anno_file`.

    `allow_missing`: samples without an output are scored as all-O and listed in the result,
    instead of being an error. `with_words`: also read the words (for `--predictions`) from
    `input_file` or the CoNLL source the index names. `output_dtype` ("float32"/"float16"): the
    dtype of `.bin` outputs [default: from their size, see `outputs.bin_dtype`].
    """
    result_dir, anno_file = Path(result_dir), Path(anno_file)
    paths = find_outputs(result_dir)
    if not anno_file.is_file():
        raise InputFileError(anno_file, "anno file does not exist" if not anno_file.exists() else "is not a file")
    index_path = Path(index_file) if index_file else index_path_for(anno_file)
    index = read_index(index_path)
    header = index.header
    gold_ids = read_anno(anno_file, header, index_path)

    known = {rec.sample for rec in index.samples}
    stray = sorted(set(paths) - known)
    if stray:
        raise ValidationError(
            f"{result_dir}: outputs for {len(stray)} samples that the index does not have (first: "
            f"{paths[stray[0]].name}; the index has {len(known)}): wrong --result_dir or --anno_file?")
    missing = missing_samples(index, paths)
    fill_label = None
    if missing:
        if not allow_missing:
            shown = ", ".join(str(i) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise ValidationError(f"{result_dir}: no output for {len(missing)} of {len(known)} samples "
                                  f"(sample ids {shown}); --allow-missing scores them as O")
        fill_label = _outside_id(header.id2label, index.path)

    dtype_of_bins = bin_dtype(paths, index, output_dtype)
    # Read the words before decoding: a missing source fails before the long part.
    words = read_words(index, gold_ids, anno_file, input_file) if with_words else None

    outputs = Outputs(paths, index, dtype_of_bins)
    pred_ids = decode(index, outputs, [len(s) for s in gold_ids], names=outputs.names(),
                      fill_label=fill_label, anno_name=str(anno_file))

    id2label = header.id2label
    gold = [to_iob2([id2label[i] for i in sentence]) for sentence in gold_ids]
    raw_pred = [[id2label[i] for i in sentence] for sentence in pred_ids]
    # A model may emit an I-X that starts a chunk; IOB2 writes it B-X. conlleval counts the same
    # chunks either way, and the predictions file (IOB2 by contract) then scores identically.
    pred = [to_iob2(sentence) for sentence in raw_pred]
    repaired = sum(a != b for raw, fixed in zip(raw_pred, pred) for a, b in zip(raw, fixed))

    report = classification_report(gold, pred)
    missing_set = set(missing)
    result = {
        "accuracy": report["accuracy"],
        "precision": report["precision"],
        "recall": report["recall"],
        "f1": report["f1"],
        "per_type": report["per_type"],
        "num_sentences": len(gold),
        "num_words": report["num_words"],
        "num_samples": len(index.samples),
        "num_entities": report["num_entities"],
        "num_predicted": report["num_predicted"],
        "num_correct": report["num_correct"],
        "missing": missing,
        "missing_words": sum(len(rec.words) for rec in index.samples if rec.sample in missing_set),
        "repaired_tags": repaired,
        "label_scheme": "IOB2",
        "scoring": SCORING,
        "output_format": sorted({p.suffix.lstrip(".") for p in paths.values()}),
        "bin_dtype": dtype_of_bins.name if dtype_of_bins is not None else None,
        "source": header.source,
        "model_dir": header.model_dir,
        "seq_len": header.seq_len,
        "buckets": list(header.buckets) if header.buckets else None,
        "id2label": {str(k): v for k, v in id2label.items()},
        "result_dir": str(result_dir),
        "anno_file": str(anno_file),
        "index_file": str(index_path),
    }
    return Run(result=result, gold=gold, pred=pred, words=words)


def _outside_id(id2label: dict[int, str], index_path: str) -> int:
    for label_id, label in id2label.items():
        if label == OUTSIDE:
            return label_id
    raise ValidationError(f"{index_path}: id2label has no 'O' label to give missing samples")


def predictions_text(words, gold, pred) -> str:
    """`word gold pred` per line, a blank line between sentences: what conlleval reads."""
    blocks = ["\n".join(f"{w} {g} {p}" for w, g, p in zip(ws, gs, ps)) for ws, gs, ps in zip(words, gold, pred)]
    return "\n\n".join(blocks) + "\n"


def format_table(result: dict) -> str:
    """Per-type and overall scores in percent, like conlleval's report, plus the run's counts."""
    rows = [("type", "precision", "recall", "f1", "support", "predicted")]
    for etype, s in result["per_type"].items():
        rows.append((etype, *(f"{100 * s[k]:.2f}" for k in ("precision", "recall", "f1")),
                     str(s["support"]), str(s["predicted"])))
    rows.append(("overall", *(f"{100 * result[k]:.2f}" for k in ("precision", "recall", "f1")),
                 str(result["num_entities"]), str(result["num_predicted"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    missing = len(result["missing"])
    lines.append(f"accuracy {100 * result['accuracy']:.2f}% over {result['num_words']} words, "
                 f"{result['num_sentences']} sentences, {result['num_samples']} samples"
                 + (f"; {missing} samples missing ({result['missing_words']} words scored as O)" if missing else ""))
    return "\n".join(lines)
