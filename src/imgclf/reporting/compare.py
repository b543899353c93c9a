"""The report's Comparison section, for a run that `imgclf update` made: RUN/compare.json holds the
champion/challenger comparison with the parent (evaluation.compare), RUN/update.json what the
update did (parent version, mode, new data, replay).

Shown: the verdict paragraph; per slice (the parent's frozen test split, the new data's test
slice) accuracy of both with bootstrap CIs, McNemar's test and ECE; per-class recall of both, the
classes that got worse marked; and the images whose prediction changed.
"""

from __future__ import annotations

from pathlib import Path

from imgclf.core.files import read_json
from imgclf.reporting.html import esc, kv, num, section, table

CHANGED_SHOWN = 30


def comparison_section(run: Path) -> str:
    path = Path(run) / "compare.json"
    if not path.is_file():
        return section(
            "comparison",
            "Comparison",
            "<p>No comparison with an earlier model. <code>imgclf update "
            "VERSION NEW_DATA</code> retrains a registered model and compares the result with it here; "
            "<code>imgclf compare A B --out B/compare.json</code> does the same for any two runs.</p>",
        )
    c = read_json(path)
    v = c["verdict"]
    word = "PROMOTE" if v["promote"] else "KEEP"
    body = (
        f'<p><b style="color:var(--{"good" if v["promote"] else "bad"})">{esc(word)}</b>. {esc(v["paragraph"])}</p>'
        + _update_facts(Path(run))
    )
    body += kv(
        [
            ("champion (A)", f"<code>{esc(c['a'])}</code>"),
            ("challenger (B)", f"<code>{esc(c['b'])}</code>"),
            ("rule", ", ".join(f"{esc(k)}={esc(val)}" for k, val in c.get("rule", {}).items())),
        ]
    )
    rows = []
    for where, s in c["slices"].items():
        acc, mc = s["accuracy"], s["mcnemar"]
        rows.append(
            [
                esc(where),
                num(s["n"]),
                _with_ci(acc["a"]),
                _with_ci(acc["b"]),
                f"{100 * acc['diff']['value']:+.1f} pts",
                f"{mc['b01']} / {mc['b10']}",
                num(mc["p_value"], 3),
                f"{s['ece']['a']:.3f} → {s['ece']['b']:.3f}" if "ece" in s else "–",
            ]
        )
    body += "<h3>Accuracy on the same images</h3>" + table(
        ["slice", "images", "A (95% CI)", "B (95% CI)", "B − A", "fixed / broken", "McNemar p", "ECE A → B"],
        rows,
        numeric=[1, 4, 6],
    )
    tol = c.get("rule", {}).get("tolerance", 0.02)
    rows, marks = [], []
    for where, s in c["slices"].items():
        for name, r in s["per_class"].items():
            rows.append(
                [esc(name), esc(where), num(r["n"]), f"{r['a']:.1%}", f"{r['b']:.1%}", f"{100 * r['diff']:+.1f} pts"]
            )
            marks.append("total" if r["diff"] < -tol else "")
    body += (
        "<h3>Recall per class</h3><p>Old classes are judged on the frozen test split (forgetting), new "
        f"classes on the new slice. Bold: a drop larger than the {tol:.1%} tolerance.</p>"
        + table(["class", "slice", "images", "A", "B", "B − A"], rows, numeric=[2, 3, 4, 5], classes=marks)
    )
    changed = [(where, ch) for where, s in c["slices"].items() for ch in s["changed"]]
    if changed:
        shown = sorted(changed, key=lambda t: t[1]["change"] != "broken")[:CHANGED_SHOWN]
        body += f"<h3>Images whose prediction changed ({len(changed)})</h3>" + table(
            ["slice", "image", "true", "A", "B", "change"],
            [
                [
                    esc(w),
                    f"<code>{esc(Path(str(ch['path'])).name)}</code>",
                    esc(ch["true"]),
                    esc(ch["a"]),
                    esc(ch["b"]),
                    esc(ch["change"]),
                ]
                for w, ch in shown
            ],
        )
    return section("comparison", "Comparison", body)


def _with_ci(e: dict) -> str:
    return f"{e['value']:.1%} ({e['ci'][0]:.1%}–{e['ci'][1]:.1%})"


def _update_facts(run: Path) -> str:
    p = run / "update.json"
    if not p.is_file():
        return ""
    u = read_json(p)
    parent, counts = u.get("parent", {}), u.get("counts", {})
    new, old = counts.get("new", {}), counts.get("old", {})
    pairs = [
        (
            "updated from",
            f"version {esc(parent.get('version'))} (<code>{esc(parent.get('run'))}</code>)"
            if parent.get("version") is not None
            else f"<code>{esc(parent.get('run'))}</code>",
        ),
        ("mode", esc(u.get("mode"))),
        (
            "new data",
            f"<code>{esc(u.get('source', {}).get('path'))}</code> ({esc(u.get('source', {}).get('kind'))}): "
            + ", ".join(f"{new.get(s, 0)} {s}" for s in ("train", "val", "test")),
        ),
        ("new classes", esc(", ".join(u.get("new_classes") or []) or "none")),
        (
            "old data",
            ", ".join(f"{old.get(s, 0)} {s}" for s in ("train", "val", "test"))
            + f"; {counts.get('replayed', 0)} of {counts.get('old_train', 0)} training images replayed; "
            "the test split is the parent's, frozen",
        ),
    ]
    d = u.get("duplicates") or {}
    if d.get("copies_dropped") or d.get("conflicts"):
        pairs.append(
            (
                "duplicates",
                f"{d.get('copies_dropped', 0)} copies of recorded images dropped, "
                f"{len(d.get('conflicts', []))} conflicting labels left out",
            )
        )
    return kv(pairs)
