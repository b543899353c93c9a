"""`imgclf check`: the data doctor's findings on a dataset, the split `train` would make, and with
`labels` the images whose label is probably wrong (each fold a real training run)."""

from __future__ import annotations

from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.files import write_json
from imgclf.store.runs import find_run
from imgclf.workflows import report


def check_data(
    data: str | Path,
    *,
    json_path: str | Path | None,
    val_frac: float,
    test_frac: float,
    seed: int,
    near_distance: int | None,
    workers: int | None,
    labels: bool,
    folds: int,
    run: str | Path | None,
    device: str,
    group_by: str,
    console,
    progress: bool,
) -> dict:
    """See imgclf.check."""
    from rich.markup import escape  # the user's paths

    from imgclf.core.files import output_file
    from imgclf.data.discover import discover
    from imgclf.data.doctor import NEAR_DISTANCE, diagnose
    from imgclf.data.doctor_report import print_findings
    from imgclf.data.doctor_split import group_for_check
    from imgclf.settings.config import check_train_settings
    from imgclf.settings.examine import CheckSettings

    # The split settings mean what they mean in train, so they pass the same checks.
    check_train_settings(dict(val_frac=val_frac, test_frac=test_frac, seed=seed, group_by=group_by, workers=workers))

    near = NEAR_DISTANCE if near_distance is None else near_distance  # its range: imgclf.check's declaration
    if run is not None and not labels:
        raise UserError("--run stores the label check in a run: add --labels")
    # The label check's own options, given without it, would be passed over in silence.
    asked = (("--device", device != CheckSettings.device), ("--folds", folds != CheckSettings.folds))  # vs declared
    unused = [flag for flag, given in asked if given]
    if unused and not labels:
        raise UserError(f"{unused[0]} is an option of the label check: add --labels")
    run_dir = find_run(run) if run is not None else None  # before the long part, not after it
    if json_path:
        json_path = output_file(json_path, "--json", "check.json")
    spec = discover(data, val_frac, test_frac, seed)
    findings = diagnose(spec, near, workers=workers, progress=progress)
    findings["split_settings"] = {"val_frac": val_frac, "test_frac": test_frac, "seed": seed, "group_by": group_by}
    findings["groups"], group_ids = group_for_check(spec, findings, group_by, val_frac, test_frac, seed)
    print_findings(findings, console)
    if labels:
        from imgclf.lifecycle.label_issues import find_label_issues, print_label_issues

        findings["label_issues"] = find_label_issues(
            spec, folds, seed, device, workers, console, progress=progress, groups=group_ids
        )
        print_label_issues(findings["label_issues"], console, spec.root)
    if run_dir is not None:
        write_json(run_dir / "label_issues.json", findings["label_issues"])
        console.print(
            escape(f"label issues: {run_dir / 'label_issues.json'}; report: {report(run_dir, verbose=False)}")
        )
    if json_path:
        write_json(json_path, findings)
        console.print(f"report: {escape(str(json_path))}")
    return findings
