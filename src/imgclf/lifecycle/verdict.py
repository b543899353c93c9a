"""What `imgclf monitor` concludes: live traffic's statistics against the test split's (PSI and
two-sample tests, evaluation.drift), the findings in words and the verdict."""

from __future__ import annotations

import math

import numpy as np

from imgclf.evaluation import drift
from imgclf.evaluation.operating_point import OperatingPoint
from imgclf.evaluation.rejection import UNKNOWN

DEFAULT_LOW = 0.5
DEFAULT_LOW_TWO_CLASSES = 0.75


def low_line(model) -> tuple[float, str]:
    op = OperatingPoint.of(model.meta)
    if op.rule == "rejection":
        return op.threshold, "the run's rejection threshold"
    if len(model.classes) == 2:
        return DEFAULT_LOW_TWO_CLASSES, "default for two classes (the top probability is never below 0.5)"
    return DEFAULT_LOW, "default"


def _column(rows: list[dict], key: str) -> list:
    return [r.get(key) for r in rows]


def as_numbers(values) -> np.ndarray:
    return np.array([v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)], dtype=float)


def _log_area(ws, hs) -> np.ndarray:
    return np.array(
        [math.log2(w * h) for w, h in zip(ws, hs) if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0],
        dtype=float,
    )


def _median_size(ws, hs) -> list[float] | None:
    w, h = as_numbers(ws), as_numbers(hs)
    return [float(np.median(w)), float(np.median(h))] if len(w) and len(h) else None


def statistics(ref: dict, live: list[dict], classes: list[str], low: float) -> dict:
    """Every comparison of reference and live, by name (see evaluation.drift for each one)."""
    r_conf, l_conf = as_numbers(ref["confidence"]), as_numbers(_column(live, "confidence"))
    l_label = [str(x) for x in _column(live, "label")]
    with_unknown = UNKNOWN in ref["label"] or UNKNOWN in l_label
    cats = list(classes) + ([UNKNOWN] if with_unknown else [])
    l_w, l_h = _column(live, "width"), _column(live, "height")
    s = {
        "predicted_class": drift.compare_categorical(ref["label"], l_label, cats),
        "confidence": drift.compare_numeric(r_conf, l_conf),
        "margin": drift.compare_numeric(as_numbers(ref["margin"]), as_numbers(_column(live, "margin"))),
        "low_confidence": {
            "threshold": low,
            **drift.compare_rate(int((r_conf < low).sum()), len(r_conf), int((l_conf < low).sum()), len(l_conf)),
        },
        "brightness": drift.compare_numeric(as_numbers(ref["brightness"]), as_numbers(_column(live, "brightness"))),
        "image_area": {
            **drift.compare_numeric(_log_area(ref["width"], ref["height"]), _log_area(l_w, l_h)),
            "size": {"ref": _median_size(ref["width"], ref["height"]), "live": _median_size(l_w, l_h)},
        },
        "colour_mode": drift.compare_categorical(
            [m for m in ref["mode"] if m], [m for m in _column(live, "mode") if m]
        ),
    }
    if with_unknown:
        s["unknown"] = drift.compare_rate(
            ref["label"].count(UNKNOWN), len(ref["label"]), l_label.count(UNKNOWN), len(l_label)
        )
    return s


def _pct(x: float) -> str:
    return f"{x:.0%}" if x >= 0.01 or x == 0 else f"{x:.1%}"


def findings(s: dict) -> list[str]:
    """One plain phrase per statistic that shifted, in the order a reader cares about: what the model
    sees, then how it answers."""
    out = []
    b = s["brightness"]
    if b["shifted"]:
        word = "darker" if b["live"]["mean"] < b["ref"]["mean"] else "brighter"
        out.append(
            f"the model sees {word} images (mean brightness {b['live']['mean']:.0f} vs {b['ref']['mean']:.0f} "
            f"on its test set, PSI {b['psi']:.2g})"
        )
    a = s["image_area"]
    if a["shifted"] and a["size"]["ref"] and a["size"]["live"]:
        (rw, rh), (lw, lh) = a["size"]["ref"], a["size"]["live"]
        word = "smaller" if a["live"]["median"] < a["ref"]["median"] else "larger"
        out.append(f"{word} images (median {lw:.0f}x{lh:.0f} px vs {rw:.0f}x{rh:.0f}, PSI {a['psi']:.2g})")
    m = s["colour_mode"]
    if m["shifted"]:
        mode = max(m["categories"], key=lambda c: abs(m["live"][c] - m["ref"][c]))
        out.append(f"another colour-mode mix ({mode}: {_pct(m['live'][mode])} vs {_pct(m['ref'][mode])})")
    c = s["confidence"]
    if c["shifted"]:
        word = "lower" if c["live"]["median"] < c["ref"]["median"] else "higher"
        out.append(
            f"answers with {word} confidence (median {c['live']['median']:.2f} vs {c['ref']['median']:.2f}, "
            f"PSI {c['psi']:.2g})"
        )
    low = s["low_confidence"]
    if low["shifted"]:
        out.append(f"{_pct(low['live'])} of answers are below {low['threshold']:.2g} (test: {_pct(low['ref'])})")
    u = s.get("unknown")
    if u and u["shifted"]:
        out.append(f"{_pct(u['live'])} of answers are '{UNKNOWN}' (test: {_pct(u['ref'])})")
    p = s["predicted_class"]
    if p["shifted"]:
        cls = max(p["categories"], key=lambda k: abs(p["live"][k] - p["ref"][k]))
        out.append(
            f"the predicted classes changed (PSI {p['psi']:.2g}; '{cls}' {_pct(p['live'][cls])} of answers "
            f"vs {_pct(p['ref'][cls])})"
        )
    return out


def join_phrases(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else "; ".join(phrases[:-1]) + "; and " + phrases[-1]


def verdict(s: dict, n_live: int, n_ref: int, labelling: str) -> tuple[str, str]:
    """(status: drift | no_drift | too_few, one paragraph in plain words)."""
    if n_live < drift.MIN_LIVE:
        return "too_few", (
            f"Too few logged predictions to tell: {n_live} (at least {drift.MIN_LIVE} are needed "
            f"to compare with the {n_ref} test images). Keep logging and run imgclf monitor again."
        )
    found = findings(s)
    if found:
        return "drift", f"Drift: {join_phrases(found)}. {labelling}"
    c, b, p, low = s["confidence"], s["brightness"], s["predicted_class"], s["low_confidence"]
    parts = []
    if c["psi"] is not None:
        parts.append(f"confidence median {c['live']['median']:.2f} vs {c['ref']['median']:.2f} (PSI {c['psi']:.2g})")
    if b["psi"] is not None:
        parts.append(f"brightness {b['live']['mean']:.0f} vs {b['ref']['mean']:.0f} (PSI {b['psi']:.2g})")
    if p["psi"] is not None:
        parts.append(f"predicted classes PSI {p['psi']:.2g}")
    parts.append(f"{_pct(low['live'])} of answers below {low['threshold']:.2g} (test: {_pct(low['ref'])})")
    return "no_drift", f"No drift: {n_live} logged predictions look like the {n_ref} test images: {', '.join(parts)}."
