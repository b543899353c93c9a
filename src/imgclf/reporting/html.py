"""HTML building blocks for the run report: one inline stylesheet and small escaping helpers.

The page must open from a USB stick or an e-mail attachment years later, so it has no scripts,
no web fonts and no external requests: CSS inline, every image a data URI.
"""

from __future__ import annotations

from html import escape
from typing import Iterable

CSS = """
:root { --ink:#1f2328; --muted:#59636e; --line:#d8dee4; --soft:#f6f8fa; --good:#1a7f37; --bad:#cf222e;
        --accent:#4c72b0; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
       color:var(--ink); background:#fff; }
main { max-width:1180px; margin:0 auto; padding:24px 32px 64px; }
header h1 { margin:0 0 4px; font-size:26px; }
header p { margin:0; color:var(--muted); }
nav { margin:16px 0 8px; display:flex; flex-wrap:wrap; gap:6px 14px; font-size:13px; }
nav a { color:var(--accent); text-decoration:none; }
section { border-top:1px solid var(--line); padding:18px 0 8px; }
h2 { font-size:20px; margin:0 0 10px; }
h3 { font-size:15px; margin:18px 0 8px; }
p.note, .muted { color:var(--muted); font-size:13px; }
code { font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; background:var(--soft);
       padding:1px 4px; border-radius:4px; overflow-wrap:anywhere; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin:16px 0 4px; }
.card { border:1px solid var(--line); border-radius:8px; padding:10px 14px; min-width:130px; }
.card b { display:block; font-size:22px; }
.card span { color:var(--muted); font-size:12.5px; }
table { border-collapse:collapse; font-size:13.5px; margin:4px 0 8px; }
th, td { border-bottom:1px solid var(--line); padding:4px 10px; text-align:left; vertical-align:top; }
th { background:var(--soft); font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td:first-child > code:only-child { white-space:nowrap; overflow-wrap:normal; }  /* a name column: time_budget whole */
tr.total td { font-weight:600; background:var(--soft); }
td.path { font-size:12.5px; overflow-wrap:anywhere; max-width:640px; }
.scroll { max-height:640px; overflow:auto; border:1px solid var(--line); border-radius:6px; display:inline-block;
          max-width:100%; }
.scroll table { margin:0; }
.bar { background:linear-gradient(90deg,#c9d7ee var(--w),transparent var(--w)); }
.low { color:var(--bad); font-weight:600; }
figure { margin:8px 0 16px; }
figure img { max-width:100%; height:auto; display:block; }
figcaption { color:var(--muted); font-size:13px; margin-top:4px; }
.row { display:flex; flex-wrap:wrap; gap:8px 28px; align-items:flex-start; }
.row > div { flex:1 1 260px; min-width:240px; }
.pair { display:grid; grid-template-columns:1fr 1fr; gap:24px; align-items:start; }
.classes { display:grid; grid-template-columns:repeat(auto-fill,minmax(264px,1fr)); gap:10px; }
.cls { border:1px solid var(--line); border-radius:8px; padding:6px 8px; }
.cls div.name { font-size:13px; font-weight:600; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.cls div.name span { color:var(--muted); font-weight:400; }
.thumbs { display:flex; flex-wrap:wrap; gap:4px; margin-top:4px; }
.thumbs img, .pred img, td img { object-fit:contain; background:#eef1f4; border-radius:3px; }
.thumbs img { width:58px; height:58px; }
.gallery { display:grid; grid-template-columns:repeat(auto-fill,minmax(122px,1fr)); gap:10px; }
.pred { border:1px solid var(--line); border-radius:8px; padding:6px; font-size:12px; line-height:1.35;
        overflow:hidden; }
.pred img { width:110px; height:110px; display:block; margin:0 auto 4px; }
.pred div { overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.pred.ok { border-left:4px solid var(--good); }
.pred.wrong { border-left:4px solid var(--bad); }
.pred.unknown { border-left:4px solid #8c959f; }
.ok b { color:var(--good); } .wrong b { color:var(--bad); }
.edit { background:#fff8c5; border:1px dashed #d4a72c; padding:1px 5px; border-radius:4px; }
.modelcard h3 { margin-top:14px; }
.modelcard ul { margin:4px 0; padding-left:22px; }
footer { margin-top:32px; color:var(--muted); font-size:12.5px; }
"""


def esc(value) -> str:
    return escape(str(value), quote=True)


def num(value, digits: int = 4) -> str:
    """Numbers for tables: ints with thousands separators, floats to `digits` places, '–' for none."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:.{digits}f}"
    return esc(value)


def si(value: float | None, unit: str = "") -> str:
    """1.2 G, 345 M: large counts the way people read them."""
    if value is None:
        return "–"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:g} {unit}".strip()


def table(
    header: Iterable[str],
    rows: Iterable[Iterable[str]],
    numeric: Iterable[int] = (),
    classes: Iterable[str] | None = None,
    scroll_over: int = 40,
) -> str:
    """A table of already-escaped cells; `numeric` column indices are right-aligned; a row whose
    class (from `classes`) is "total" is set in bold. Long tables scroll inside a frame."""
    numeric = set(numeric)
    rows = list(rows)
    row_cls = list(classes) if classes is not None else [""] * len(rows)
    head = "".join(f'<th class="num">{h}</th>' if i in numeric else f"<th>{h}</th>" for i, h in enumerate(header))
    body = "".join(
        f'<tr class="{c}">' + "".join(_cell(v, i in numeric) for i, v in enumerate(r)) + "</tr>"
        for r, c in zip(rows, row_cls)
    )
    html = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{html}</div>' if len(rows) > scroll_over else html


def _cell(value: str, numeric: bool) -> str:
    # A cell given as ("html", "attrs") carries its own attributes (a bar, a highlight).
    if isinstance(value, tuple):
        value, attrs = value
        return f"<td {attrs}>{value}</td>"
    return f'<td class="num">{value}</td>' if numeric else f"<td>{value}</td>"


def kv(pairs: Iterable[tuple[str, str]]) -> str:
    """A two-column table of (escaped label, escaped value)."""
    return "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in pairs) + "</table>"


def figure(uri: str, alt: str, caption: str = "", width: int | None = None) -> str:
    style = f' style="width:{width}px"' if width else ""
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{esc(alt)}"{style}>{cap}</figure>'


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, header: str, nav: list[tuple[str, str]], body: str, footer: str) -> str:
    links = "".join(f'<a href="#{sid}">{esc(t)}</a>' for sid, t in nav)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
        f"<header>{header}</header><nav>{links}</nav>{body}<footer>{footer}</footer></main></body></html>"
    )


def edit(text: str) -> str:
    """A placeholder the user is meant to replace by hand, marked so it cannot be missed."""
    return f'<span class="edit">[EDIT: {esc(text)}]</span>'
