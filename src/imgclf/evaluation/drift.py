"""Is live traffic still like the test set? Drift statistics on plain arrays (numpy + scipy only).

Each comparison gives a size (the population stability index, PSI) and a p-value (a two-sample
test). PSI reads by the credit-scoring industry's convention: < 0.1 no shift, 0.1-0.25 moderate,
> 0.25 major. A shift is *reported* only when it is both large enough (PSI >= 0.1, or a rate that
moved by >= 5 points) and unlikely to be sampling noise (p < alpha, 0.01 by default): on a few
dozen images PSI alone swings by tenths from noise (see `psi_noise`), and on many thousands a
test alone flags differences too small to matter.

    >>> s = compare_numeric(np.random.default_rng(0).normal(120, 20, 500), np.full(200, 50.0))
    >>> s["severity"], s["shifted"]
    ('major', True)
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2_contingency, fisher_exact, ks_2samp

PSI_MODERATE, PSI_MAJOR = 0.1, 0.25
ALPHA = 0.01
MIN_LIVE = 30  # fewer logged predictions than this: too few to tell
MIN_RATE_CHANGE = 0.05  # a rate must move at least this much (absolute) to count


def severity(psi: float) -> str:
    return "major" if psi > PSI_MAJOR else "moderate" if psi >= PSI_MODERATE else "none"


def psi(ref_counts, live_counts) -> float:
    """Population stability index sum((l - r) * ln(l / r)) over bins of shares. Every bin gets half
    a count first (the epsilon for empty bins): a bin empty on one side would otherwise be infinite,
    and a fixed 1e-4 floor makes one stray image in an empty bin look like a major shift."""
    r, q = np.asarray(ref_counts, float), np.asarray(live_counts, float)
    used = (r + q) > 0  # a bin neither side uses says nothing (and would tilt unequal samples)
    r, q = r[used] + 0.5, q[used] + 0.5
    r, q = r / r.sum(), q / q.sum()
    return float(np.sum((q - r) * np.log(q / r)))


def psi_noise(bins: int, n_ref: int, n_live: int) -> float:
    """The PSI two samples of these sizes show on average with no drift at all: PSI is about
    chi-square / n, whose expectation is (bins - 1) * (1/n_ref + 1/n_live)."""
    return (bins - 1) * (1 / max(n_ref, 1) + 1 / max(n_live, 1))


def quantile_bins(ref: np.ndarray, n_live: int, max_bins: int = 10) -> np.ndarray:
    """Inner bin edges at reference quantiles: up to `max_bins` equally filled bins, fewer for small
    samples (one per ~10 images of the smaller side) so the PSI noise floor stays low; ties (a
    confidence saturated at 1.0, identical image sizes) merge bins."""
    k = int(np.clip(min(len(ref), n_live) // 10, 2, max_bins))
    return np.unique(np.quantile(ref, np.linspace(0, 1, k + 1)[1:-1]))


def binned(values: np.ndarray, inner: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Counts per bin: below the reference's minimum, the quantile bins, above its maximum. The two
    outer bins hold no reference image, so live values outside the range the model was tested on
    (much darker, much bigger) show however the quantile bins fall."""
    v = np.asarray(values, float)
    idx = np.searchsorted(inner, v, side="right") + 1
    idx[v < lo], idx[v > hi] = 0, len(inner) + 2
    return np.bincount(idx, minlength=len(inner) + 3)


def compare_numeric(ref, live, max_bins: int = 10) -> dict:
    """A numeric input or output (confidence, brightness, log image area): PSI over reference-quantile
    bins, the two-sample Kolmogorov-Smirnov test, and both sides' mean and median."""
    ref, live = np.asarray(ref, float), np.asarray(live, float)
    ref, live = ref[np.isfinite(ref)], live[np.isfinite(live)]
    out = {"n_ref": int(len(ref)), "n_live": int(len(live))}
    if len(ref) == 0 or len(live) == 0:
        return {**out, "psi": None, "p_value": None, "severity": "none", "shifted": False}
    inner = quantile_bins(ref, len(live), max_bins)
    rc = binned(ref, inner, ref.min(), ref.max())
    lc = binned(live, inner, ref.min(), ref.max())
    value = psi(rc, lc)
    p = float(ks_2samp(ref, live).pvalue)
    return {
        **out,
        "psi": value,
        "psi_noise": psi_noise(int(((rc + lc) > 0).sum()), len(ref), len(live)),
        "p_value": p,
        "test": "Kolmogorov-Smirnov",
        "severity": severity(value),
        "shifted": value >= PSI_MODERATE and p < ALPHA,
        "ref": {"mean": float(ref.mean()), "median": float(np.median(ref))},
        "live": {"mean": float(live.mean()), "median": float(np.median(live))},
        "bins": {"edges": inner.tolist(), "ref": rc.tolist(), "live": lc.tolist()},
    }


def compare_categorical(ref: list[str], live: list[str], categories: list[str] | None = None) -> dict:
    """A category (predicted class, colour mode): PSI over the categories, a chi-square test of the
    2 x K table, and each category's share on both sides."""
    cats = list(categories or [])
    cats += sorted({c for c in (*ref, *live) if c not in cats})
    index = {c: i for i, c in enumerate(cats)}
    rc = np.bincount([index[c] for c in ref], minlength=len(cats))
    lc = np.bincount([index[c] for c in live], minlength=len(cats))
    out = {"n_ref": int(len(ref)), "n_live": int(len(live)), "categories": cats}
    if len(ref) == 0 or len(live) == 0:
        return {**out, "psi": None, "p_value": None, "severity": "none", "shifted": False}
    used = (rc + lc) > 0
    # Categories neither side ever saw carry no information and would only inflate the noise floor.
    value = psi(rc[used], lc[used])
    table = np.stack([rc[used], lc[used]])
    p = float(chi2_contingency(table).pvalue) if used.sum() >= 2 else 1.0
    return {
        **out,
        "psi": value,
        "psi_noise": psi_noise(int(used.sum()), len(ref), len(live)),
        "p_value": p,
        "test": "chi-square",
        "severity": severity(value),
        "shifted": value >= PSI_MODERATE and p < ALPHA,
        "ref": {c: float(n / len(ref)) for c, n in zip(cats, rc)},
        "live": {c: float(n / len(live)) for c, n in zip(cats, lc)},
        "counts": {"ref": rc.tolist(), "live": lc.tolist()},
    }


def compare_rate(k_ref: int, n_ref: int, k_live: int, n_live: int) -> dict:
    """A rate (answers 'unknown', answers below the low-confidence line): both rates and Fisher's
    exact test of the 2 x 2 table; exact, so it stays honest when the test set has few or none."""
    r, q = k_ref / max(n_ref, 1), k_live / max(n_live, 1)
    p = float(fisher_exact([[k_ref, n_ref - k_ref], [k_live, n_live - k_live]]).pvalue) if n_ref and n_live else 1.0
    return {
        "ref": r,
        "live": q,
        "k_ref": int(k_ref),
        "n_ref": int(n_ref),
        "k_live": int(k_live),
        "n_live": int(n_live),
        "p_value": p,
        "test": "Fisher exact",
        "shifted": abs(q - r) >= MIN_RATE_CHANGE and p < ALPHA,
    }


def side_value(st: dict, how: str | None, side: str, counts: bool = False) -> str | None:
    """One side ("ref" or "live") of a compared statistic as text, for the CLI table and the HTML report
    alike: a rate (with k/n when `counts`), a median width x height, or the summary `how` names
    (median, mean). None when there is nothing to show."""
    if how is None or st.get(side) is None:
        return None
    if how == "rate":
        return f"{st[side]:.1%}" + (f" ({st['k_' + side]:,}/{st['n_' + side]:,})" if counts else "")
    if how == "size":
        wh = st.get("size", {}).get(side)
        return f"{wh[0]:.0f} x {wh[1]:.0f}" if wh else None
    return f"{st[side][how]:.3g}" if st[side] else None  # no summary when that side had no values
