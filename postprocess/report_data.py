"""The data behind the report: the word-level confusion matrix, and the files it reads
(result.json, a `word gold pred` predictions file, a benchmark JSON) turned into rows.

>>> labels, m = confusion_matrix([["B-PER", "I-PER", "O"]], [["B-PER", "O", "B-LOC"]])
>>> labels, m
(['LOC', 'PER', 'O'], [[0, 0, 0], [0, 1, 1], [1, 0, 0]])
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence

from common.errors import InputFileError
from common.tags import OUTSIDE, split_tag


def word_type(tag: str) -> str:
    return OUTSIDE if tag == OUTSIDE else tag.split("-", 1)[1]


def confusion_matrix(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> tuple[list[str], list[list[int]]]:
    """Word counts by (gold type, predicted type); labels are the sorted entity types, then O."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    pairs = []
    for s, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {s}: {len(g)} gold tags but {len(p)} predicted")
        pairs.extend((word_type(a), word_type(b)) for a, b in zip(g, p))
    labels = sorted({t for pair in pairs for t in pair} - {OUTSIDE}) + [OUTSIDE]
    at = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for a, b in pairs:
        matrix[at[a]][at[b]] += 1
    return labels, matrix


def read_predictions(path) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tags per sentence from `word gold pred` lines (blank line between sentences)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "predictions file does not exist" if not path.exists() else "is not a file")
    gold, pred, g, p = [], [], [], []
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, 1):
                parts = line.split()
                if not parts:
                    if g:
                        gold.append(g)
                        pred.append(p)
                        g, p = [], []
                    continue
                if len(parts) < 3:
                    raise InputFileError(path, f"expected `word gold pred`, got {line.strip()!r}", line=number)
                for tag in parts[-2:]:
                    try:
                        split_tag(tag)
                    except ValueError:
                        raise InputFileError(path, f"tag {tag!r} is not O, B-TYPE or I-TYPE", line=number) from None
                g.append(parts[-2])
                p.append(parts[-1])
    except UnicodeDecodeError as err:
        raise InputFileError(path, f"is not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise InputFileError(path, f"cannot read ({err.strerror})") from None
    if g:
        gold.append(g)
        pred.append(p)
    if not gold:
        raise InputFileError(path, "holds no predictions")
    return gold, pred


def _read_json(path: Path, what: str):
    """A JSON file the report reads; missing, unreadable or invalid is an InputFileError naming it."""
    if not path.is_file():
        raise InputFileError(path, f"{what} does not exist" if not path.exists() else "is not a file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise InputFileError(path, f"not valid JSON ({err})") from None
    except OSError as err:
        raise InputFileError(path, f"cannot read ({err.strerror})") from None


def read_result(path) -> dict:
    path = Path(path)
    result = _read_json(path, "result.json")
    if not isinstance(result, dict):
        raise InputFileError(path, "not a bert_metric.py result.json (not a JSON object)")
    missing = [k for k in ("precision", "recall", "f1", "per_type") if k not in result]
    if missing or not isinstance(result["per_type"], dict):
        raise InputFileError(path, f"not a bert_metric.py result.json (no {', '.join(missing) or 'per_type object'})")
    return result


def read_benchmark(path) -> dict:
    """A benchmark JSON as {path, meta, tables}: `python -m bench`'s (runs, batch_table, acceptance,
    machine facts), an ais_bench / `python -m infer` summary, or any list of flat objects."""
    path = Path(path)
    data = _read_json(path, "benchmark JSON")
    tables = benchmark_tables(data)
    if not tables:
        raise InputFileError(path, "holds no benchmark rows (a list of objects, or an object with one)")
    return {"path": str(path), "meta": benchmark_meta(data), "tables": tables}


# Lists of rows, in the order they are shown; other lists of objects follow in file order.
_TABLE_KEYS = ("runs", "rows", "results", "configs", "table", "batch_table", "acceptance")
_METRIC_HINTS = ("sentences_per_s", "sent_per_s", "sentences/s", "throughput", "per_s", "/s")
# Columns shown first (and the only ones, where a row has many): what `python -m bench`'s table shows.
_PREFERRED = ("name", "id", "criterion", "description", "batch_size", "seq_len", "sentences_per_s", "throughput",
              "gflops", "f1", "f1_on", "label_agreement_vs_torch", "model_mb", "peak_rss_mb", "value", "pass")
_MAX_COLUMNS = 10


def benchmark_tables(data) -> list[tuple[str, list[dict]]]:
    """(name, flat rows) for every list of objects in the JSON (a bare list is one table)."""
    if isinstance(data, list):
        rows = [_flat(r) for r in data if isinstance(r, dict)]
        return [("results", rows)] if rows else []
    if not isinstance(data, dict):
        return []
    lists = [(k, v) for k, v in data.items() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
    lists.sort(key=lambda kv: _TABLE_KEYS.index(kv[0]) if kv[0] in _TABLE_KEYS else len(_TABLE_KEYS))
    if not lists and ("throughput" in data or "NPU_compute_time" in data):  # an ais_bench summary
        row = {"throughput": data.get("throughput")}
        row.update({f"compute_ms_{k}": v for k, v in (data.get("NPU_compute_time") or {}).items()})
        return [("summary", [row])]
    return [(k, [_flat(r) for r in v]) for k, v in lists]


def benchmark_rows(data) -> tuple[dict, list[dict]]:
    """(scalar facts, the first table's rows)."""
    tables = benchmark_tables(data)
    return benchmark_meta(data), (tables[0][1] if tables else [])


def benchmark_meta(data) -> dict:
    """Top-level facts and those one object down (`machine.cpu`), scalars only."""
    if not isinstance(data, dict):
        return {}
    meta = {}
    for k, v in data.items():
        if _is_scalar(v) and v not in (None, ""):
            meta[k] = v
        elif isinstance(v, dict) and k not in ("file_flow", "build"):
            meta.update({f"{k}.{k2}": v2 for k2, v2 in v.items() if _is_scalar(v2) and v2 not in (None, "")})
    return meta


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _flat(row: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in row.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif _is_scalar(v):
            out[f"{prefix}{k}"] = v
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def benchmark_metric(rows: Sequence[dict]) -> Optional[str]:
    """The column to plot: the first throughput-like numeric column, else None."""
    numeric = [c for c in _columns(rows) if any(_number(r.get(c)) for r in rows)]
    for hint in _METRIC_HINTS:
        for c in numeric:
            if hint in c.lower():
                return c
    return None


def _columns(rows: Sequence[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        seen.update(dict.fromkeys(r))
    columns = list(seen)
    if len(columns) <= _MAX_COLUMNS:
        return [c for c in _PREFERRED if c in seen] + [c for c in columns if c not in _PREFERRED]
    preferred = [c for c in _PREFERRED if c in seen]
    return preferred if len(preferred) >= 3 else columns[:_MAX_COLUMNS]
