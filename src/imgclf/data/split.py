"""Which images train, which validate, which test: stratified by class, seeded, and with groups
(near-duplicates, a file-name pattern: see data.groups) kept whole in one split."""

from __future__ import annotations

import numpy as np

from imgclf.core.errors import UserError

SPLITS = ("train", "val", "test")
VAL_AS_TEST = (
    "your val split is the test split, as there is no test split: scored once after training, the accuracy "
    "Keras and Ultralytics report on it; validation (which picks the epoch and the model) is carved from train"
)


def val_as_test(spec) -> str:
    """A given val split with no test split becomes the test split, and what it did (or "").

    `train/` + `val/` is how Ultralytics and Keras tutorials lay data out, and their users read the
    accuracy on val/. Validating on it and carving the test from train/ would report on a few
    images from the training folder (24 of a 300-photo set) and never score the user's own held-out
    folder; carving validation from train/ instead costs the same images and scores val/ honestly:
    it picks nothing."""
    val, test = spec.splits == "val", spec.splits == "test"
    if not val.any() or test.any() or val.all():
        return ""
    spec.splits[val] = "test"
    return VAL_AS_TEST


def fill_missing_splits(
    spec, val_frac: float, test_frac: float, seed: int, groups: np.ndarray | None = None, skip: np.ndarray | None = None
) -> None:
    """Assign a split to every unassigned sample, stratified by class and seeded.

    With a user-given test split we only carve val from train; otherwise both. With `groups` (a
    group id per sample) whole groups go to one split (see data.groups); `skip` marks samples
    left out of that.
    """
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise UserError("val and test fractions must be in [0, 1) and sum to less than 1")
    has_test = (spec.splits == "test").any()
    has_val = (spec.splits == "val").any()
    todo = spec.splits == ""
    if not has_test and not todo.any():  # split folders with train only: carve test too
        todo = spec.splits == "train"
    elif has_test and not has_val:
        todo = todo | (spec.splits == "train")
    if groups is not None:
        held_out = lambda n: _held_out(n, has_val, has_test, val_frac, test_frac)  # noqa: E731
        todo = todo if skip is None else todo & ~skip
        split_groups(spec, todo, groups, held_out, seed)
    else:
        rng = np.random.default_rng(seed)
        for c in range(len(spec.classes)):
            idx = np.flatnonzero(todo & (spec.labels == c))
            rng.shuffle(idx)
            n_test, n_val = _held_out(len(idx), has_val, has_test, val_frac, test_frac)
            spec.splits[idx[:n_test]] = "test"
            spec.splits[idx[n_test : n_test + n_val]] = "val"
            spec.splits[idx[n_test + n_val :]] = "train"
    wanted = [] if has_test else [("test", test_frac)]
    wanted += [] if has_val else [("val", val_frac / (1 - (0 if has_test else test_frac)))]
    _fill_shortfall(spec, todo, groups, wanted, seed)


def _fill_shortfall(spec, todo: np.ndarray, groups: np.ndarray | None, wanted: list, seed: int) -> None:
    """A split the fractions ask for that the per-class rule left empty because no class could
    spare an image (40 people with 3 photos each: each gives one to test, none to val) gets its
    share of all the images anyway: one group (an image where nothing is grouped) from each of
    that many classes (at least one), at random, and only where the class keeps a training image.
    Without it the default would stop for want of a validation split on a small but usable folder."""
    rng = np.random.default_rng(seed + 1)
    unit = np.arange(len(spec.paths)) if groups is None else groups
    for split, frac in wanted:
        pool = todo & (spec.splits == "train")
        # At least one: six photos (3 a class) still get a validation photo, and train (keep=last
        # ships the last epoch where validation is too small to rank epochs) rather than stop.
        need = max(1, round(int(pool.sum()) * frac))
        if frac <= 0 or (todo & (spec.splits == split)).any():
            continue
        units: dict = {}
        for i in np.flatnonzero(pool):
            units.setdefault(unit[i], []).append(i)
        train_count = np.bincount(spec.labels[pool], minlength=len(spec.classes))
        by_class: dict[int, list] = {}
        for members in units.values():
            labels = set(spec.labels[members].tolist())
            if len(labels) == 1 and train_count[(c := labels.pop())] > len(members):
                by_class.setdefault(c, []).append(members)
        classes = list(by_class)
        rng.shuffle(classes)
        for c in classes:
            if need < 1:
                break
            members = by_class[c][rng.integers(len(by_class[c]))]
            spec.splits[members] = split
            need -= len(members)


def _held_out(n: int, has_val: bool, has_test: bool, val_frac: float, test_frac: float) -> tuple[int, int]:
    """(test, val) images to hold out of a class's `n` unassigned ones."""
    n_test = 0 if has_test else _share(n, test_frac)
    return n_test, 0 if has_val else _share(n - n_test, val_frac / (1 - (0 if has_test else test_frac)))


def _share(n: int, frac: float) -> int:
    """Images of one class for a held-out split: at least one when the class can spare it."""
    if frac <= 0 or n < 3:
        return 0
    return min(n - 1, max(1, round(n * frac)))


def split_groups(spec, todo: np.ndarray, groups: np.ndarray, held_out, seed: int) -> None:
    """Give every `todo` sample of `spec` a split so that each group lands whole in one split,
    stratified by class: a group counts for its majority label (ties: the first class), and each
    class's groups fill its test and val shares (`held_out(n) -> (n_test, n_val)`, as without
    groups), largest group first, each to the split furthest below its share. Singleton groups
    therefore give the per-class counts of the plain split exactly."""
    idx = np.flatnonzero(todo)
    if not len(idx):
        return
    keys, member_of = np.unique(groups[idx], return_inverse=True)
    member_of = member_of.ravel()
    k = len(spec.classes)
    votes = np.zeros((len(keys), k), np.int64)
    np.add.at(votes, (member_of, spec.labels[idx]), 1)
    label, size = votes.argmax(1), votes.sum(1)
    rng = np.random.default_rng(seed)
    choice = np.empty(len(keys), dtype=object)
    for c in range(k):
        mine = np.flatnonzero(label == c)
        rng.shuffle(mine)
        mine = mine[np.argsort(-size[mine], kind="stable")]  # largest first, ties in random order
        n = int(size[mine].sum())
        n_test, n_val = held_out(n)
        want = np.array([n - n_test - n_val, n_val, n_test])  # train, val, test
        have = np.zeros(3, np.int64)
        for g in mine:
            s = int(np.argmax(want - have))  # first of the most lacking
            choice[g] = SPLITS[s]
            have[s] += size[g]
    spec.splits[idx] = choice[member_of]
