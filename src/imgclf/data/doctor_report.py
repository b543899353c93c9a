"""The data doctor's findings as one terminal table: a row per kind of finding, its count, and a
few example paths, so a user sees at a glance what to fix and where to look."""

from __future__ import annotations

from imgclf.data.doctor import duplicate_kinds, example, short_path
from imgclf.data.doctor_classes import greyest

EXAMPLES = 3
_DUPLICATE_ROWS = {"conflicting_labels": "different labels", "within_class": "same class", "leakage": "across splits"}


def print_findings(findings: dict, console) -> None:
    """Print `findings` (from doctor.diagnose) to a rich Console."""
    from rich.markup import escape  # paths and class names are the user's text: "rosé [red]/photo [1].jpg"
    from rich.table import Table

    root = findings["root"]
    totals = {s: sum(c.values()) for s, c in findings["counts"].items()}
    console.print(
        f"checked {findings['images']:,} images in {len(findings['classes'])} classes "
        f"({findings['layout']}) in {findings['seconds']:.1f}s: {escape(root)}"
    )
    if findings.get("read_as"):
        console.print(f"  data: {escape(findings['read_as'])}")
    out = findings["outliers"]
    console.print(
        "  readable per split: "
        + ", ".join(f"{s} {n:,}" for s, n in totals.items())
        + f"; typical image: shorter side {out.get('median_short_side', 0):g} px, aspect "
        f"{out.get('median_aspect', 1):.2f}, mode {out.get('main_mode', '-')}; near-duplicates: "
        f"pHash within {findings['near_distance']} bits, then alike in detail and tone (in greyscale, with no ramp of light across the pair)"
    )
    table = Table("finding", "count", "examples")
    table.columns[0].no_wrap = table.columns[1].no_wrap = True
    table.columns[1].justify = "right"
    table.columns[2].overflow = "fold"
    for name, count, examples, problem in _rows(findings, root):
        style = "yellow" if problem and count not in ("0", "") else ("dim" if count == "0" else None)
        table.add_row(name, count, escape("\n".join(examples)), style=style)
    console.print(table)


def _rows(findings: dict, root: str):
    """(finding, count, example lines, is it a problem) for every check, clean ones included,
    so the table also shows what was checked and passed."""
    yield (
        "unreadable files",
        str(len(findings["unreadable"])),
        _some([f"{short_path(f['path'], root)}: {f['reason']}" for f in findings["unreadable"]]),
        True,
    )
    for key, what in (("exact_duplicates", "identical"), ("near_duplicates", "near-duplicate")):
        for kind, groups in duplicate_kinds(findings[key]).items():
            count = f"{len(groups)} ({sum(len(g['files']) for g in groups)} files)" if groups else "0"
            yield (f"{what}: {_DUPLICATE_ROWS[kind]}", count, _some([example(g, root) for g in groups]), True)
    mirror = [g for g in findings["near_duplicates"] if g.get("mirrored")]
    yield (
        "near-duplicate: mirrored",
        f"{len(mirror)} ({sum(len(g['files']) for g in mirror)} files)" if mirror else "0",
        _some([example(g, root) for g in mirror]),
        True,
    )
    if info := findings.get("groups"):
        from imgclf.data.groups import summary_line

        yield "split groups", f"{info['groups']:,}", [summary_line(info)], bool(info["straddling"])
    imb = findings["imbalance"]
    counts = imb["counts"]
    big, small = max(counts, key=counts.get), min(counts, key=counts.get)
    note = [
        f"largest {big} ({counts[big]:,}), smallest {small} ({counts[small]:,})"
        if counts[big] != counts[small]
        else f"every class has {counts[big]:,}"
    ]
    if imb["small_classes"]:
        note.append(f"below half the median class ({imb['median']:g}): {', '.join(imb['small_classes'])}")
    yield "class imbalance", f"{imb['ratio']}×" if imb["ratio"] else "∞", note, imb["flagged"]
    out = findings["outliers"]
    for key, what in (
        ("small", "much smaller images"),
        ("large", "much larger images"),
        ("aspect", "elongated images"),
    ):
        yield (
            what,
            str(len(out[key])),
            _some([f"{short_path(f['path'], root)} ({f['width']}×{f['height']})" for f in out[key]]),
            True,
        )
    # Said because a user reads a count of "not RGB" as a fault to fix: every mode is read the same way
    # (data.images.to_rgb); what is left to ask is whether another mode means another source.
    read = "each is read as RGB (transparency on white, 16-bit scaled to 8, CMYK converted): nothing to fix"
    yield (
        f"colour mode not {out.get('main_mode', 'RGB')}",
        str(len(out["mode"])),
        _some([f"{short_path(f['path'], root)} ({f['mode']})" for f in out["mode"]]) + [read] * bool(out["mode"]),
        True,
    )
    if grey := out.get("grey_by_class"):
        greyer = grey.get("greyer", [])
        said = [f"{c}: {v:.0%} greyscale" for c, v in greyest(grey, None)] if greyer else []
        tip = "the model can learn grey versus colour instead of the classes: unless that is what tells them apart, "
        tip += "add colour photos of the grey classes"
        yield "greyscale in some classes only", str(len(greyer)), _some(said) + [tip] * bool(greyer), True
    yield (
        "ignored (not images)",
        str(len(findings["ignored"])),
        _some([short_path(p, root) for p in findings["ignored"]]),
        False,
    )
    if unnamable := findings.get("unnamable"):  # images all the same, but splits.csv cannot hold the name
        yield ("left out (name not UTF-8)", str(len(unnamable)), _some([short_path(p, root) for p in unnamable]), True)


def _some(lines: list[str]) -> list[str]:
    """The first few example lines, and how many more the JSON report holds."""
    return lines[:EXAMPLES] + ([f"… and {len(lines) - EXAMPLES:,} more"] if len(lines) > EXAMPLES else [])
