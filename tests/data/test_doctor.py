"""The data doctor on small real datasets with planted problems: `imgclf check` finds each one."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgclf
from imgclf.api import check
from imgclf.data.discover import discover
from imgclf.data.doctor import dedupe, duplicate_warnings, quick_check
from imgclf.data.phash import components, hamming, near_pairs


def _photo(rng, w: int = 64, h: int = 48) -> Image.Image:
    """A smooth random picture: its own low frequencies, so its pHash differs from every other's."""
    grid = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC)
    noise = rng.integers(-8, 9, size=(h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img, int) + noise, 0, 255).astype(np.uint8))


def _save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


@pytest.fixture
def messy(tmp_path) -> Path:
    """cat 12 + dog 12 + bird 4 images, and one of each problem the doctor looks for."""
    rng = np.random.default_rng(0)
    root = tmp_path / "messy"
    for cls, n in (("cat", 12), ("dog", 12), ("bird", 4)):
        for i in range(n):
            _save(_photo(rng), root / cls / f"{cls}_{i:02d}.png")
    shutil.copy(root / "cat/cat_00.png", root / "dog/copy_of_cat.png")  # conflicting labels
    _save(Image.open(root / "cat/cat_01.png"), root / "cat/nested/again.png")  # same class, other name
    # A near-duplicate: resized and re-encoded as JPEG, so not one byte is the same.
    _save(Image.open(root / "cat/cat_02.png").resize((48, 36)), root / "cat/cat_02_small.jpg", quality=80)
    jpeg = io.BytesIO()
    _photo(rng).save(jpeg, "JPEG")
    (root / "dog/broken.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (root / "dog/empty.png").write_bytes(b"")
    _save(_photo(rng, 8, 6), root / "cat/tiny.png")  # 8 px shorter side, median 48
    _save(_photo(rng, 240, 48), root / "dog/wide.png")  # 5:1 among 4:3
    _save(_photo(rng).convert("L"), root / "bird/grey.png")
    _save(_photo(rng).convert("CMYK"), root / "bird/print.jpg")
    (root / "README.txt").write_text("collected in 2024")
    (root / "cat/notes.md").write_text("to do")
    return root


def _names(files) -> set[str]:
    return {Path(f["path"]).name for f in files}


def test_check_finds_each_planted_problem(messy, tmp_path):
    findings = check(messy, json_path=tmp_path / "doctor.json", verbose=False)
    assert json.loads((tmp_path / "doctor.json").read_text()) == findings
    assert findings["images"] == 37 and findings["readable"] == 35

    bad = {Path(f["path"]).name: f["reason"] for f in findings["unreadable"]}
    assert set(bad) == {"broken.jpg", "empty.png"}
    assert "empty" in bad["empty.png"] and "truncated" in bad["broken.jpg"]
    assert {Path(p).name for p in findings["ignored"]} == {"README.txt", "notes.md"}

    exact = {frozenset(_names(g["files"])): g for g in findings["exact_duplicates"]}
    assert set(exact) == {frozenset({"cat_00.png", "copy_of_cat.png"}), frozenset({"cat_01.png", "again.png"})}
    conflict = exact[frozenset({"cat_00.png", "copy_of_cat.png"})]
    assert conflict["conflicting_labels"] and conflict["labels"] == ["cat", "dog"]
    assert not exact[frozenset({"cat_01.png", "again.png"})]["conflicting_labels"]

    # Exact copies are near-duplicates too, but only a group holding different files is listed here.
    near = findings["near_duplicates"]
    assert [_names(g["files"]) for g in near] == [{"cat_02.png", "cat_02_small.jpg"}]
    assert not near[0]["conflicting_labels"] and max(f["distance"] for f in near[0]["files"]) <= 4

    imbalance = findings["imbalance"]
    assert imbalance["small_classes"] == ["bird"] and imbalance["flagged"]
    out = findings["outliers"]
    assert _names(out["small"]) == {"tiny.png"} and _names(out["aspect"]) == {"wide.png"}
    assert out["large"] == [] and out["main_mode"] == "RGB"
    assert {Path(f["path"]).name: f["mode"] for f in out["mode"]} == {"grey.png": "L", "print.jpg": "CMYK"}
    # The table says other modes are read fine: a count of "not RGB" alone reads as a fault to fix
    from imgclf.data.doctor_report import _rows

    mode_row = next(r for r in _rows(findings, str(messy)) if r[0] == "colour mode not RGB")
    assert mode_row[1] == "2" and mode_row[2][-1].startswith("each is read as RGB")
    summary = findings["summary"]
    assert summary["unreadable"] == 2 and summary["outliers"] == {"small": 1, "large": 0, "aspect": 1, "mode": 2}
    assert {k: summary["exact_duplicates"][k] for k in ("groups", "files", "conflicting_labels", "within_class")} == {
        "groups": 2,
        "files": 4,
        "conflicting_labels": 1,
        "within_class": 1,
    }


def test_duplicate_splits_are_the_ones_train_would_use(messy):
    # group_by none: the plain split (test_groups checks the grouped one against a real train).
    findings = check(messy, val_frac=0.3, test_frac=0.3, seed=5, verbose=False, group_by="none")
    spec = discover(messy, 0.3, 0.3, seed=5)
    for group in findings["exact_duplicates"] + findings["near_duplicates"]:
        for f in group["files"]:
            assert spec.paths[f["index"]] == f["path"] and spec.splits[f["index"]] == f["split"]
        assert group["leakage"] == (len({f["split"] for f in group["files"]}) > 1)


@pytest.fixture
def leaky(tmp_path) -> Path:
    """Given train/test folders where one training image was also put in test, and one image
    sits in both classes of train."""
    rng = np.random.default_rng(1)
    root = tmp_path / "leaky"
    for split, n in (("train", 8), ("test", 3)):
        for cls in ("a", "b"):
            for i in range(n):
                _save(_photo(rng), root / split / cls / f"{i}.png")
    shutil.copy(root / "train/a/0.png", root / "test/a/leaked.png")
    shutil.copy(root / "train/a/1.png", root / "train/b/mislabeled.png")
    # Failed downloads, identical in both classes: unreadable files, not a label conflict.
    for cls in ("a", "b"):
        (root / "train" / cls / "empty.jpg").write_bytes(b"")
        (root / "train" / cls / "error.jpg").write_text("<html><body>429 Too Many Requests</body></html>")
    return root


def test_quick_check_warns_about_leakage_and_conflicts_and_dedupe_resolves_them(leaky):
    spec = discover(leaky)
    quick = quick_check(spec)
    full = check(leaky, verbose=False)
    assert quick["exact_duplicates"] == full["exact_duplicates"]
    groups = {frozenset(_names(g["files"])): g for g in quick["exact_duplicates"]}
    leak = groups[frozenset({"0.png", "leaked.png"})]
    assert leak["leakage"] and not leak["conflicting_labels"] and leak["splits"][-1] == "test"
    assert groups[frozenset({"1.png", "mislabeled.png"})]["conflicting_labels"]

    warnings = duplicate_warnings(quick)
    assert len(warnings) == 2 and "different labels" in warnings[0] and "more than one split" in warnings[1]

    # The leaked test copy goes, the training copy stays; both copies with conflicting labels go.
    dropped = {spec.paths[i].removeprefix(str(leaky) + os.sep) for i in dedupe(spec, quick)}
    assert dropped == {
        os.path.join("test", "a", "leaked.png"),
        os.path.join("train", "a", "1.png"),
        os.path.join("train", "b", "mislabeled.png"),
    }
    assert dedupe(spec, {"exact_duplicates": []}).tolist() == []


def test_near_pairs_and_components_match_brute_force():
    rng = np.random.default_rng(2)
    base = rng.integers(0, 2**63, size=400, dtype=np.int64).astype(np.uint64)
    # Plant copies 1..6 bits away from some hashes.
    flips = [
        np.bitwise_or.reduce(np.uint64(1) << rng.choice(64, k, replace=False).astype(np.uint64))
        for k in rng.integers(1, 7, size=100)
    ]
    hashes = np.unique(np.concatenate([base, base[:100] ^ np.array(flips, dtype=np.uint64)]))
    ii, jj = np.triu_indices(len(hashes), 1)
    dist = hamming(hashes[ii], hashes[jj])
    for d in (0, 2, 4, 6):
        i, j = near_pairs(hashes, d)
        assert set(zip(i.tolist(), j.tolist())) == set(zip(ii[dist <= d].tolist(), jj[dist <= d].tolist()))
    comp = components(6, np.array([0, 4, 2]), np.array([3, 2, 5]))
    assert comp.tolist() == [0, 1, 2, 0, 2, 2]


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(Path(imgclf.__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "imgclf.cli", "check", *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env
    )


def test_cli_prints_table_and_writes_json(messy, tmp_path):
    p = _cli(messy, "--json", "report.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "identical: different labels" in p.stdout and "copy_of_cat.png" in p.stdout
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["unreadable"] == 2


def test_greyscale_gathered_in_one_class_is_a_finding(tmp_path):
    """A class photographed (or scanned) in greyscale while the others are colour: the network can
    learn the colour mode instead of the class. One grey file among colour ones, or a set all grey
    (ORL's faces), is no finding."""
    rng = np.random.default_rng(1)
    root = tmp_path / "photos"
    for i in range(8):
        _save(_photo(rng).convert("L") if i < 6 else _photo(rng), root / "rose" / f"{i}.png")
        _save(_photo(rng), root / "daisy" / f"{i}.png")
    p = _cli(root, "--json", "report.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    grey = json.loads((tmp_path / "report.json").read_text())["outliers"]["grey_by_class"]
    assert grey == {"shares": {"daisy": 0.0, "rose": 0.75}, "flagged": True, "greyer": ["rose"]}
    row = next(line for line in p.stdout.splitlines() if "greyscale in some classes only" in line)
    assert row.split("│")[2].strip() == "1" and "rose: 75% greyscale" in row
    assert "the model can learn grey versus colour instead of the classes" in re.sub(r"[│\s]+", " ", p.stdout)
    for f in root.rglob("*.png"):  # all grey: nothing to tell the classes apart by
        Image.open(f).convert("L").save(f)
    p = _cli(root, "--json", "report.json", cwd=tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["outliers"]["grey_by_class"]["flagged"] is False


def test_cli_missing_folder_is_one_error_line(tmp_path):
    p = _cli(tmp_path / "nope", cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith("error: data not found") and len(p.stderr.strip().splitlines()) == 1
    # A folder given as --json was a traceback after the whole check; --folds 0 was taken without --labels.
    for args, said in (
        (
            ["--json", tmp_path],
            f"error: --json {tmp_path} is a folder; give a file name, e.g. {tmp_path / 'check.json'}",
        ),
        (["--folds", "0"], "error: --folds must be a whole number, at least 2, not 0"),
    ):
        p = _cli(tmp_path, *args, cwd=tmp_path)
        assert p.returncode == 2 and p.stderr.startswith(said) and p.stderr.count("\n") == 1, p.stderr


def test_training_warns_of_greyscale_gathered_in_a_class_from_its_pixels(tmp_path):
    """Training looks at the decoded pixels (the images' prints), so grey photos saved as RGB count too
    (no file mode shows them); a set all grey says nothing."""
    from rich.console import Console

    from imgclf.data.cache import build_cache
    from imgclf.data.groups import usable_prints
    from imgclf.training.prepare import class_warnings

    rng = np.random.default_rng(2)
    root = tmp_path / "photos"
    for i in range(30):
        grey = _photo(rng).convert("L").convert("RGB")  # grey content in an RGB file
        _save(grey if i < 24 else _photo(rng), root / "rose" / f"{i}.png")
        _save(_photo(rng), root / "daisy" / f"{i}.png")
    spec = discover(root)
    images = build_cache(spec.paths, 32, "squash", progress=False).images
    console = Console(record=True, width=400)
    class_warnings(spec, usable_prints(spec, images), console)
    text = console.export_text()
    assert re.search(
        r"warning: greyscale photos gather in some classes \(rose [78]\d%, daisy 0% of their training photos\)", text
    )
    assert text.rstrip().endswith("unless that is what tells them apart, add colour photos of rose")
    console = Console(record=True, width=400)
    class_warnings(spec, usable_prints(spec, np.repeat(images[..., :1], 3, axis=3)), console)  # every photo grey
    assert "greyscale" not in console.export_text()


def test_the_report_keeps_the_greyscale_warning(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")  # the shared run is read, never written into
    data = json.loads((run / "data_report.json").read_text())
    data["greyscale_by_class"] = {"shares": {"disc": 0.9, "square": 0.0}, "flagged": True, "greyer": ["disc"]}
    (run / "data_report.json").write_text(json.dumps(data))
    text = imgclf.report(run, verbose=False).read_text(encoding="utf-8")
    assert "<b>Greyscale gathers in some classes</b> of the training photos (disc 90%, square 0%)" in text
