"""The report's Tuning section, for a run that `imgclf tune` retrained: RUN/tuning.json holds the
study (every trial, the best and default configurations, parameter importances).

Shown: how the search went (validation accuracy per trial, pruned trials at the accuracy they
were stopped at, the best so far), which parameters mattered, and the trials table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgclf.core.files import read_json
from imgclf.reporting.data import png_uri
from imgclf.reporting.html import esc, figure, kv, num, section, table
from imgclf.reporting.plots import PALETTE, _figure

STATE_STYLE = {"COMPLETE": ("o", PALETTE[0]), "PRUNED": ("x", PALETTE[3]), "FAIL": ("s", "#8c959f")}


def tuning_section(run: Path) -> str:
    path = Path(run) / "tuning.json"
    if not path.is_file():
        return section(
            "tuning",
            "Tuning",
            "<p>This run was not tuned. <code>imgclf tune DATA --trials N</code> "
            "searches model, learning rate, regularisation, augmentation and epochs, and retrains the best "
            "configuration into a run whose report shows the search here.</p>",
        )
    t = read_json(path)
    best, default, c = t.get("best") or {}, t.get("default") or {}, t.get("counts", {})
    pairs = [
        ("study", f"<code>{esc(t.get('study'))}</code> in <code>{esc(t.get('storage'))}</code>"),
        (
            "trials",
            f"{c.get('complete', 0)} complete, {c.get('pruned', 0)} pruned, {c.get('fail', 0)} failed "
            f"(target {t.get('trials_target')}, pruner {esc(t.get('pruner'))})",
        ),
        ("objective", esc(t.get("metric", "validation accuracy"))),
        ("best", f"trial {best.get('number')}: {num(best.get('value'))}" if best else "–"),
    ]
    if default.get("value") is not None:
        diff = 100 * (best.get("value", 0) - default["value"])
        pairs.append(
            (
                "default configuration",
                f"trial {default['number']}: {num(default['value'])} "
                f"({'+' if diff >= 0 else ''}{diff:.1f} points for the best; same split and epochs budget)",
            )
        )
    if (b := t.get("budget")) and b.get("epochs"):
        pairs.append(("epochs per trial", esc(b["epochs"])))
    pairs.append(
        (
            "best parameters",
            ", ".join(f"{esc(k)}=<code>{esc(_short(v))}</code>" for k, v in best.get("params", {}).items()) or "–",
        )
    )
    body = kv(pairs) + figure(
        png_uri(history_plot(t["trials"], default.get("value"))),
        "optimisation history",
        "Validation accuracy of each trial (pruned ones where they were stopped), the best so "
        "far, and the default configuration's.",
    )
    if imp := t.get("importances"):
        body += "<h3>Parameter importance (fANOVA)</h3>" + figure(
            png_uri(importance_plot(imp)), "parameter importances"
        )
    return section("tuning", "Tuning", body + "<h3>Trials</h3>" + trials_table(t["trials"], best.get("number")))


def history_plot(trials: list[dict], default_value: float | None) -> bytes:
    """Validation accuracy per trial (pruned ones at their last report), the best so far, and the
    default configuration's as a level to beat."""
    from matplotlib.ticker import MaxNLocator

    with _figure(figsize=(8, 3.4)) as (fig, ax, out):
        for state, (marker, color) in STATE_STYLE.items():
            pts = [(r["number"], r["value"]) for r in trials if r["state"] == state and r["value"] is not None]
            if pts:
                x, y = zip(*pts)
                ax.scatter(x, y, marker=marker, color=color, label=state.lower(), zorder=3)
        done = sorted((r["number"], r["value"]) for r in trials if r["state"] == "COMPLETE" and r["value"] is not None)
        if done:
            x, y = zip(*done)
            ax.step(x, np.maximum.accumulate(y), where="post", color="#555", lw=1.2, label="best so far")
        if default_value is not None:
            ax.axhline(default_value, color="#999", ls="--", lw=1, label="default configuration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial")
        ax.set_ylabel("validation accuracy")
        ax.legend(loc="lower right")
    return out[0]


def importance_plot(importances: dict) -> bytes:
    names = list(importances)[::-1]
    with _figure(figsize=(6, 0.5 + 0.35 * len(names))) as (fig, ax, out):
        ax.barh(names, [importances[n] for n in names], color=PALETTE[0])
        ax.set_xlabel("share of the variance in validation accuracy")
        ax.grid(axis="y", alpha=0)
    return out[0]


def trials_table(trials: list[dict], best_number: int | None) -> str:
    rows, classes = [], []
    for r in trials:
        params = ", ".join(f"{esc(k)}=<code>{esc(_short(v))}</code>" for k, v in r["params"].items())
        rows.append(
            [
                str(r["number"]),
                esc(r["state"].lower()) + (" (default)" if r.get("default") else ""),
                num(r["value"]),
                num(r.get("epochs_run")),
                num(r.get("seconds"), 1),
                params,
                esc(r.get("note") or ""),
            ]
        )
        classes.append("total" if r["number"] == best_number else "")
    return table(
        ["#", "state", "val acc", "epochs run", "seconds", "parameters", "note"],
        rows,
        numeric=(0, 2, 3, 4),
        classes=classes,
    )


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
