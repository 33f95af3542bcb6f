"""Entities shown to people: coloured spans in a terminal, displaCy-style marks in HTML.

Pure string functions over `apps.text.Prediction`; the demo page uses the same markup and CSS,
so `python -m apps.predict --html` and the demo highlight alike. Pages are self-contained
(inline CSS, no scripts, no external fonts or files).
"""
from __future__ import annotations

import hashlib
import html
from typing import Iterable, Sequence

import click

# displaCy's colours where its types match ours; other types get a stable colour from PALETTE.
COLOURS = {"PER": "#aa9cfc", "ORG": "#7aecec", "LOC": "#feca74", "MISC": "#c887fb"}
PALETTE = ("#bfe1d9", "#e4e7d2", "#ff8197", "#ffeb80", "#bfeeb7", "#9cc9cc", "#ff9561", "#f0d0ff")
# Terminal background colours (8-colour ANSI, readable with black text).
TERMINAL = {"PER": "magenta", "ORG": "cyan", "LOC": "yellow", "MISC": "green"}
_TERMINAL_PALETTE = ("blue", "red", "white")

ENTITY_CSS = """
.entities { line-height: 2.5; white-space: pre-wrap; font-size: 16px; }
mark.entity { padding: 0.25em 0.45em; margin: 0 0.15em; border-radius: 0.35em; line-height: 1;
  box-decoration-break: clone; -webkit-box-decoration-break: clone; }
mark.entity .label { font-size: 0.75em; font-weight: bold; text-transform: uppercase;
  vertical-align: middle; margin-left: 0.5em; }
"""


def _stable_index(etype: str, n: int) -> int:
    return int(hashlib.sha1(etype.encode("utf-8")).hexdigest(), 16) % n


def colour(etype: str) -> str:
    return COLOURS.get(etype) or PALETTE[_stable_index(etype, len(PALETTE))]


def pretty(prediction) -> str:
    """The text with each entity as `[text TYPE]`, the text on a coloured background (ANSI codes)."""
    text, out, at = prediction.text, [], 0
    for ent in prediction.entities:
        out.append(text[at:ent.start])
        bg = TERMINAL.get(ent.type) or _TERMINAL_PALETTE[_stable_index(ent.type, len(_TERMINAL_PALETTE))]
        # brackets keep the spans readable where colours are stripped (a pipe, a file)
        out.append(click.style("[", fg=bg, bold=True) + click.style(ent.text, bg=bg, fg="black")
                   + click.style(f" {ent.type}]", fg=bg, bold=True))
        at = ent.end
    out.append(text[at:])
    return "".join(out)


def marked_html(text: str, entities: Sequence) -> str:
    """`text` as escaped HTML with every entity in a `<mark class="entity" data-type=...>`."""
    out, at = [], 0
    for ent in entities:
        out.append(html.escape(text[at:ent.start]))
        title = f"{ent.type} {ent.score:.2f}"
        out.append(f'<mark class="entity" data-type="{html.escape(ent.type)}" data-start="{ent.start}" '
                   f'data-end="{ent.end}" title="{html.escape(title)}" style="background: {colour(ent.type)}">'
                   f'{html.escape(ent.text)}<span class="label">{html.escape(ent.type)}</span></mark>')
        at = ent.end
    out.append(html.escape(text[at:]))
    return "".join(out)


def legend_html(types: Iterable[str]) -> str:
    return " ".join(f'<mark class="entity" style="background: {colour(t)}">{html.escape(t)}</mark>'
                    for t in sorted(set(types)))


def page(predictions: Sequence, title: str = "Named entities") -> str:
    """A self-contained page: one block of highlighted text per prediction, numbered."""
    blocks = []
    for i, pred in enumerate(predictions, 1):
        n = len(pred.entities)
        blocks.append(f'<section class="text" id="text-{i}"><h2>#{i} <small>{n} entit{"y" if n == 1 else "ies"}'
                      f'</small></h2><div class="entities">{marked_html(pred.text, pred.entities)}</div></section>')
    types = {e.type for p in predictions for e in p.entities}
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 60em;
  padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 0.9em; color: #888; margin: 1.5em 0 0.3em; }}
section.text {{ border-bottom: 1px solid #eee; padding-bottom: 0.8em; }}
{ENTITY_CSS}
</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="legend">{legend_html(types) or "no entities found"}</p>
{"".join(blocks)}
</body></html>
"""
