"""result.json as a self-contained HTML page: scores as bars, a confusion matrix, entity counts,
and the benchmark's plot and table when its JSON is given.

    python bert_metric.py --result_dir OUT/<ts> --anno_file X.anno --report report.html [--benchmark B.json]
    python -m postprocess.report --result OUT/<ts>/result.json --output report.html \
        [--predictions preds.txt] [--benchmark B.json]

The confusion matrix is word-level over entity types with O (a word's type is its tag without the
B-/I- prefix): rows gold, columns predicted. It needs each word's gold and predicted tag, which
result.json does not hold: `bert_metric.py --report` has them in memory; the standalone command
reads them from a `--predictions` file (`word gold pred` lines, as bert_metric.py writes them) or,
without one, scores the run again from the result folder, anno and index that result.json names.

The page has no scripts and loads nothing: charts are inline SVG, styles inline CSS.

>>> labels, m = confusion_matrix([["B-PER", "I-PER", "O"]], [["B-PER", "O", "B-LOC"]])
>>> labels, m
(['LOC', 'PER', 'O'], [[0, 0, 0], [0, 1, 1], [1, 0, 0]])
"""
from __future__ import annotations

import html
import json
import math
import sys
from pathlib import Path
from typing import Optional, Sequence

import click

from common.atomic import write_text
from common.errors import InputFileError, UserError, handle_errors
from preprocess.tags import OUTSIDE, split_tag

METRICS = ("precision", "recall", "f1")
METRIC_COLOURS = {"precision": "#4c78a8", "recall": "#f58518", "f1": "#54a24b"}
COUNT_COLOURS = {"gold": "#9d9d9d", "predicted": "#4c78a8", "correct": "#54a24b"}


# -- data ------------------------------------------------------------------------------------------------
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
    if g:
        gold.append(g)
        pred.append(p)
    if not gold:
        raise InputFileError(path, "holds no predictions")
    return gold, pred


def read_result(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "result.json does not exist" if not path.exists() else "is not a file")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise InputFileError(path, f"not valid JSON ({err})") from None
    missing = [k for k in ("precision", "recall", "f1", "per_type") if k not in result]
    if not isinstance(result, dict) or missing:
        raise InputFileError(path, f"not a bert_metric.py result.json (no {', '.join(missing) or 'object'})")
    return result


def labels_from_run(result: dict, result_path) -> tuple[list[list[str]], list[list[str]]]:
    """Score the run that result.json names again, for its per-word gold and predicted tags."""
    from .score import score_run

    needed = [k for k in ("result_dir", "anno_file") if not result.get(k)]
    if needed:
        raise UserError(f"{result_path} names no {' or '.join(needed)}: pass --predictions FILE for the "
                        "confusion matrix")
    for key in ("result_dir", "anno_file"):
        if not Path(result[key]).exists():
            raise UserError(f"the run's {key} {result[key]} (named in {result_path}) is gone: pass "
                            "--predictions FILE (written by bert_metric.py --predictions) for the confusion matrix")
    run = score_run(result["result_dir"], result["anno_file"], result.get("index_file"),
                    allow_missing=bool(result.get("missing")))
    return run.gold, run.pred


def read_benchmark(path) -> dict:
    """A benchmark JSON as {path, meta, tables}: `infer.benchmark`'s (runs, batch_table, acceptance,
    machine facts), an ais_bench / `python -m infer` summary, or any list of flat objects."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "benchmark JSON does not exist" if not path.exists() else "is not a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise InputFileError(path, f"not valid JSON ({err})") from None
    tables = benchmark_tables(data)
    if not tables:
        raise InputFileError(path, "holds no benchmark rows (a list of objects, or an object with one)")
    return {"path": str(path), "meta": benchmark_meta(data), "tables": tables}


# Lists of rows, in the order they are shown; other lists of objects follow in file order.
_TABLE_KEYS = ("runs", "rows", "results", "configs", "table", "batch_table", "acceptance")
_METRIC_HINTS = ("sentences_per_s", "sent_per_s", "sentences/s", "throughput", "per_s", "/s")
# Columns shown first (and the only ones, where a row has many): what infer.benchmark's table shows.
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


# -- HTML pieces -------------------------------------------------------------------------------------------
def _e(x) -> str:
    return html.escape(str(x))


def _pct(x) -> str:
    return f"{100 * x:.2f}" if _number(x) else "–"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return "–" if v is None else str(v)


def _hbar_chart(chart_id: str, groups: Sequence[str], series: Sequence[str], values: dict, colours: dict,
                vmax: float, fmt, css_class: str) -> str:
    """Grouped horizontal bars: for each group a bar per series; `values[(group, series)]`."""
    bar_h, gap, width = 16, 14, 420
    label_w = min(280, max(70, 7 * max((len(g) for g in groups), default=4) + 16))
    legend_h = 26
    height = legend_h + len(groups) * (len(series) * bar_h + gap) + 10
    parts = [f'<svg id="{chart_id}" class="chart {css_class}" xmlns="http://www.w3.org/2000/svg" '
             f'width="{label_w + width + 90}" height="{height}" role="img">']
    x = label_w
    for s in series:
        parts.append(f'<rect x="{x}" y="6" width="12" height="12" fill="{colours[s]}"/>'
                     f'<text x="{x + 16}" y="16" class="legend">{_e(s)}</text>')
        x += 110
    y = legend_h
    for g in groups:
        parts.append(f'<text x="{label_w - 8}" y="{y + len(series) * bar_h / 2 + 4}" text-anchor="end" '
                     f'class="group">{_e(g if len(g) <= 38 else g[:37] + "…")}</text>')
        for s in series:
            v = values.get((g, s))
            w = 0 if not _number(v) or vmax <= 0 else max(0.0, v / vmax * width)
            parts.append(f'<rect class="bar" data-group="{_e(g)}" data-series="{_e(s)}" data-value="{_e(v)}" '
                         f'x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{colours[s]}">'
                         f'<title>{_e(g)} {_e(s)}: {_e(fmt(v))}</title></rect>'
                         f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 4}" class="value">{_e(fmt(v))}</text>')
            y += bar_h
        y += gap
    parts.append("</svg>")
    return "".join(parts)


def _scores_section(result: dict) -> str:
    types = list(result["per_type"])
    groups = types + ["overall"]
    values = {}
    for t in types:
        for m in METRICS:
            values[(t, m)] = result["per_type"][t].get(m)
    for m in METRICS:
        values[("overall", m)] = result.get(m)
    chart = _hbar_chart("per-type-chart", groups, METRICS, values, METRIC_COLOURS, 1.0, _pct, "scores")
    rows = "".join(
        f'<tr data-type="{_e(t)}"><th>{_e(t)}</th>' + "".join(f"<td>{_pct(s.get(m))}</td>" for m in METRICS)
        + f'<td>{_e(s.get("support", ""))}</td><td>{_e(s.get("predicted", ""))}</td></tr>'
        for t, s in result["per_type"].items())
    rows += ('<tr class="overall"><th>overall</th>' + "".join(f"<td>{_pct(result.get(m))}</td>" for m in METRICS)
             + f'<td>{_e(result.get("num_entities", ""))}</td><td>{_e(result.get("num_predicted", ""))}</td></tr>')
    table = ('<table id="per-type-table" class="numbers"><thead><tr><th>type</th><th>precision %</th>'
             f'<th>recall %</th><th>F1 %</th><th>gold</th><th>predicted</th></tr></thead><tbody>{rows}</tbody></table>')
    return (f'<section id="per-type"><h2>Precision, recall and F1 per entity type</h2>'
            f'<p class="note">Entity level, as conlleval counts (an entity is right when its type and both '
            f'boundaries are).</p><div class="pair">{chart}{table}</div></section>')


def _counts_section(result: dict) -> str:
    types = list(result["per_type"])
    series = ("gold", "predicted", "correct")
    keys = {"gold": "support", "predicted": "predicted", "correct": "correct"}
    values = {(t, s): result["per_type"][t].get(keys[s]) for t in types for s in series}
    vmax = max([v for v in values.values() if _number(v)] + [1])
    chart = _hbar_chart("counts-chart", types, series, values, COUNT_COLOURS, vmax, _fmt, "counts")
    return (f'<section id="counts"><h2>Entities: gold vs predicted</h2>'
            f'<p class="note">How many entities of each type the data holds, the model predicted, and got '
            f'right.</p>{chart}</section>')


def _confusion_section(labels: Optional[list[str]], matrix: Optional[list[list[int]]], source: str) -> str:
    if labels is None:
        return ""
    head = "".join(f'<th scope="col">{_e(label)}</th>' for label in labels)
    body = []
    for i, label in enumerate(labels):
        total = sum(matrix[i]) or 1
        cells = []
        for j, n in enumerate(matrix[i]):
            share = n / total
            # diagonal green, errors red; strength by the share of the gold row
            hue = 130 if i == j else 0
            bg = f"hsl({hue}, 60%, {100 - 45 * share:.0f}%)" if n else "#fff"
            cells.append(f'<td class="cell{" diag" if i == j else ""}" data-gold="{_e(label)}" '
                         f'data-pred="{_e(labels[j])}" data-count="{n}" style="background: {bg}" '
                         f'title="gold {_e(label)}, predicted {_e(labels[j])}: {n} words ({100 * share:.1f}% of '
                         f'gold {_e(label)})">{n}</td>')
        body.append(f'<tr><th scope="row">{_e(label)}</th>{"".join(cells)}<td class="total">{sum(matrix[i])}</td></tr>')
    totals = "".join(f'<td class="total">{sum(row[j] for row in matrix)}</td>' for j in range(len(labels)))
    return (f'<section id="confusion"><h2>Confusion matrix (words, by entity type)</h2>'
            f'<p class="note">Rows: gold type, columns: predicted type, of every word (B- and I- merged). '
            f'Colour: share of the gold row. Tags from {_e(source)}.</p>'
            f'<table id="confusion-matrix" class="matrix"><thead><tr><th>gold \\ predicted</th>{head}'
            f'<th>total</th></tr></thead><tbody>{"".join(body)}'
            f'<tr class="totals"><th>total</th>{totals}<td class="total">{sum(map(sum, matrix))}</td></tr>'
            f'</tbody></table></section>')


def _row_names(rows: Sequence[dict], metric: str) -> list[str]:
    """A short unique label per row: its name, else its text and size columns."""
    columns = _columns(rows)
    if "name" in columns:
        names = [str(r.get("name", f"row {i + 1}")) for i, r in enumerate(rows)]
    else:
        text = [c for c in columns if c != metric and not any(_number(r.get(c)) for r in rows)]
        sizes = [c for c in columns if any(k in c.lower() for k in ("batch", "seq", "len", "threads"))]
        names = [" ".join(f"{c}={r[c]}" if c in sizes else str(r[c]) for c in text[:1] + sizes[:2]
                          if r.get(c) not in (None, "")) or f"row {i + 1}" for i, r in enumerate(rows)]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return unique


def _benchmark_table(key: str, rows: Sequence[dict]) -> str:
    metric = benchmark_metric(rows)
    chart = ""
    if metric:
        names = _row_names(rows, metric)
        values = {(n, metric): r.get(metric) for n, r in zip(names, rows)}
        vmax = max([v for v in values.values() if _number(v)] + [1])
        chart = _hbar_chart(f"benchmark-chart-{key}", names, (metric,), values, {metric: "#4c78a8"}, vmax, _fmt,
                            "benchmark")
    columns = _columns(rows)
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td{'' if _number(r.get(c)) else ' class=text'}>{_e(_fmt(r.get(c)))}</td>"
                                    for c in columns) + "</tr>" for r in rows)
    return (f'<h3>{_e(key.replace("_", " "))}</h3>{chart}<div class="scroll">'
            f'<table id="benchmark-table-{_e(key)}" class="numbers benchmark-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table></div>')


def _benchmark_section(bench: Optional[dict]) -> str:
    if not bench:
        return ""
    meta = "".join(f"<li><b>{_e(k)}</b>: {_e(_fmt(v))}</li>" for k, v in list(bench["meta"].items())[:24])
    tables = "".join(_benchmark_table(key, rows) for key, rows in bench["tables"])
    return (f'<section id="benchmark"><h2>Benchmark</h2><p class="note">From {_e(bench["path"])}.</p>'
            f'{tables}{f"<ul class=meta>{meta}</ul>" if meta else ""}</section>')


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 72em;
  padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 2em; }
h3 { font-size: 1em; margin: 1.2em 0 0.4em; }
.sub { color: #666; margin-top: 0; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; margin: 1.2em 0; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: 0.6em 1.1em; min-width: 7em; }
.card .v { font-size: 1.6em; font-weight: 600; } .card .k { color: #666; font-size: 0.85em; }
.note { color: #666; font-size: 0.9em; }
.pair { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
svg.chart text { font-size: 12px; fill: #333; } svg.chart text.group { font-weight: 600; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.3em 0.6em; border: 1px solid #e3e3e3; }
table.numbers td { text-align: right; font-variant-numeric: tabular-nums; } table.numbers td.text { text-align: left; }
table.matrix td { text-align: center; min-width: 3.5em; font-variant-numeric: tabular-nums; }
table.matrix td.diag { font-weight: 700; } td.total { color: #666; background: #fafafa; }
tr.overall, tr.totals { font-weight: 600; background: #fafafa; }
.scroll { overflow-x: auto; } ul.meta { font-size: 0.9em; color: #444; columns: 2; }
"""


def render_report(result: dict, *, gold=None, pred=None, benchmark: Optional[dict] = None,
                  tags_source: str = "the scored run", title: Optional[str] = None) -> str:
    """The report page as a string (pure: reads nothing)."""
    labels = matrix = None
    if gold is not None and pred is not None:
        labels, matrix = confusion_matrix(gold, pred)
    model = result.get("model_dir") or ""
    title = title or f"NER report{f' - {Path(model).name}' if model else ''}"
    cards = [("F1", _pct(result.get("f1"))), ("precision", _pct(result.get("precision"))),
             ("recall", _pct(result.get("recall"))), ("word accuracy", _pct(result.get("accuracy"))),
             ("sentences", _fmt(result.get("num_sentences"))), ("words", _fmt(result.get("num_words")))]
    cards_html = "".join(f'<div class="card" data-key="{_e(k)}"><div class="v">{_e(v)}</div>'
                         f'<div class="k">{_e(k)}{" %" if k in ("F1", "precision", "recall", "word accuracy") else ""}'
                         f'</div></div>' for k, v in cards)
    missing = result.get("missing") or []
    warn = (f'<p class="note"><b>{len(missing)} samples had no output</b> and were scored as O '
            f'({result.get("missing_words", "?")} words).</p>' if missing else "")
    facts = " · ".join(_e(x) for x in (f"model {model}" if model else "", f"data {result.get('source')}"
                                       if result.get("source") else "", result.get("label_scheme") or "") if x)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1><p class="sub">{facts}</p>
<div class="cards" id="summary">{cards_html}</div>{warn}
{_scores_section(result)}
{_confusion_section(labels, matrix, tags_source)}
{_counts_section(result)}
{_benchmark_section(benchmark)}
<p class="note">Scoring: {_e(result.get("scoring", "conlleval"))}.</p>
</body></html>
"""


def write_report(*, result, output, predictions=None, benchmark=None) -> Path:
    """Read result.json (+ tags, + benchmark JSON) and write the page atomically; returns `output`."""
    result_path = Path(result)
    data = read_result(result_path)
    bench = read_benchmark(benchmark) if benchmark is not None else None
    if predictions is not None:
        gold, pred = read_predictions(predictions)
        source = str(predictions)
    else:
        gold, pred = labels_from_run(data, result_path)
        source = f"the run in {data['result_dir']}"
    if data.get("num_words") is not None and sum(map(len, gold)) != data["num_words"]:
        raise UserError(f"{predictions or source} has {sum(map(len, gold))} words, {result_path} scored "
                        f"{data['num_words']}: they are not the same run")
    write_text(output, render_report(data, gold=gold, pred=pred, benchmark=bench, tags_source=source))
    return Path(output)


@click.command(name="report", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--result", "result", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="result.json written by bert_metric.py.")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="HTML file to write.")
@click.option("--predictions", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="`word gold pred` file (bert_metric.py --predictions) for the confusion matrix "
                   "[default: score the run that result.json names again].")
@click.option("--benchmark", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Benchmark JSON: adds its plot and table.")
@handle_errors
def main(result, output, predictions, benchmark):
    """Render result.json as a self-contained HTML report."""
    write_report(result=result, output=output, predictions=predictions, benchmark=benchmark)
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    sys.exit(main())
