"""What a time budget affords a stage that passes over every training photo (the linear probe, the
face and person candidates): its seconds a photo, timed on a few, and a class-stratified sample of
the photos it can handle in the time left (training.budget's StageClock says how much that is)."""

from __future__ import annotations

import time

MIN_PER_CLASS = 10  # the fewest images a class a budget-cut probe or candidate keeps (or all of a smaller class)


def seconds_each(fn, rows, warm: int, timed: int) -> float:
    """Seconds `fn(rows)` takes per row, timed on `timed` rows after `warm` rows warm it up (a
    session's first run, a model loaded on first use)."""
    fn(rows[:warm])
    t = time.perf_counter()
    fn(rows[:timed])
    return (time.perf_counter() - t) / max(1, len(rows[:timed]))


def afforded_rows(train, labels, seconds: float, per_row: float, seed: int):
    """The training rows (sorted) that a stage spending `per_row` seconds on each can handle in
    `seconds`: all of them, or a class-stratified random sample of at least MIN_PER_CLASS a class (a
    usable model even past the budget)."""
    import numpy as np

    n = int(seconds / per_row) if per_row > 0 else len(train)
    if n >= len(train):
        return train
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels[train]):
        rows = train[labels[train] == c]
        k = min(len(rows), max(MIN_PER_CLASS, round(n * len(rows) / len(train))))
        out.append(rng.choice(rows, size=k, replace=False))
    return np.sort(np.concatenate(out))


def candidate_rows(fn, train, labels, n_val: int, allowance, seed: int):
    """The training rows a candidate that costs `fn(rows)` can afford in a time budget's `allowance`
    (its seconds a photo -> the seconds it may take; None: no budget, every row), its validation
    photos counted first; the seconds a photo are timed on 16 after 2 warm it up."""
    if allowance is None or not len(train):
        return train
    each = seconds_each(fn, train, warm=2, timed=16)
    return afforded_rows(train, labels, allowance(each) - each * n_val, each, seed)


def sampled(rows, of) -> str:
    """' (on 1,570 of the 45,000 training images: what the time budget affords)', or '' for all."""
    if len(rows) >= len(of):
        return ""
    return f" (on {len(rows):,} of the {len(of):,} training images: what the time budget affords)"
