"""The split `train` would make, as `imgclf check` shows it: groups from the doctor's duplicate
findings (or a file-name pattern) kept whole, and the findings updated to that split."""

from __future__ import annotations

import numpy as np

from imgclf.data.doctor import _counts, _sorted_groups, summarize
from imgclf.data.groups import (
    _split_to_make,
    check_group_by,
    describe,
    ids_from_findings,
    regex_groups,
    regroup,
)
from imgclf.data.split import SPLITS


def group_for_check(
    spec, findings: dict, group_by: str, val_frac: float, test_frac: float, seed: int
) -> tuple[dict | None, np.ndarray | None]:
    """`imgclf check`'s view of the split `train` would make: groups from the doctor's findings
    (exact, near and mirrored duplicates) or from `group_by`'s pattern; when they regroup the
    split, the findings are updated to it. Returns the summary (its `straddling` counts groups
    that still sit in two splits: only the user's own splits can do that) and the group id per
    image (None for `none`), which the label check's folds keep whole too."""
    check_group_by(group_by)
    if group_by == "none":
        return None, None
    to_split = _split_to_make(spec)
    if group_by in ("auto", "near-duplicates"):
        by, ids = "near-duplicates", ids_from_findings(len(spec.paths), findings)
    else:
        by, ids = group_by, regex_groups(spec.paths, spec.root, group_by)
    if to_split and len(np.unique(ids)) < len(ids):
        regroup(spec, ids, val_frac, test_frac, seed)
        refresh_splits(findings, spec)
    return describe(spec, ids, by), ids


def refresh_splits(findings, spec) -> None:
    """After a regroup: every file entry of the doctor's findings gets its new split, and each
    duplicate group its `splits` and `leakage` again, so the findings describe the grouped split."""

    def walk(node):
        if isinstance(node, dict):
            if "index" in node and "split" in node:
                node["split"] = str(spec.splits[node["index"]])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(findings)
    for key in ("exact_duplicates", "near_duplicates"):
        for g in findings[key]:
            present = {f["split"] for f in g["files"]}
            g["splits"] = [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))
            g["leakage"] = len(present & set(SPLITS)) > 1
        findings[key] = _sorted_groups(findings[key])
    ok = np.ones(len(spec.paths), bool)
    ok[[f["index"] for f in findings["unreadable"]]] = False
    findings["counts"] = _counts(spec, ok)
    findings["summary"] = summarize(findings)
