"""The report page itself: inline SVG bar charts, the confusion matrix and benchmark tables, inline CSS.

`render_report` is pure: it reads nothing and returns the page as a string. The page has no
scripts and loads nothing.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Optional, Sequence

from .report_data import _columns, _number, benchmark_metric, confusion_matrix

METRICS = ("precision", "recall", "f1")
METRIC_COLOURS = {"precision": "#4c78a8", "recall": "#f58518", "f1": "#54a24b"}
COUNT_COLOURS = {"gold": "#9d9d9d", "predicted": "#4c78a8", "correct": "#54a24b"}

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
