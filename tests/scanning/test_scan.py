"""Scanning whole photos with a crop classifier: generated scenes with a distinctive object pasted
at known places, a tiny crop model trained once for the module, and the real CLI / service."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgclf
import imgclf.scanning
from imgclf.scanning import Scanner, scan

pytestmark = pytest.mark.slow  # every test here trains a model, itself or through a fixture

OBJ_W, OBJ_H = 24, 40  # the object: tall, as people are
CROP_W, CROP_H = 30, 50  # training crops frame it with 3 / 5 px of context (margin 0.1)
MARGIN = 0.1
SCENE_W, SCENE_H = 160, 120
FAST = dict(
    model="simple_cnn",
    model_kwargs={"width": 8, "depth": 3},
    img_size=32,
    epochs=5,
    lr=0.003,
    amp="off",
    verbose=False,
    tta="none",
)


def background(rng, w, h):
    """Smooth colour gradient plus noise: no object-like structure."""
    yy, xx = np.mgrid[:h, :w] / max(w, h)
    base = rng.uniform(60, 160, 3) + rng.uniform(-60, 60, 3) * xx[..., None] + rng.uniform(-60, 60, 3) * yy[..., None]
    return np.clip(base + rng.normal(0, 18, (h, w, 3)), 0, 255)


def paste(img, x, y, scale=1.0):
    """The object (red body, white band, blue head) with its top-left at (x, y); returns its box."""
    w, h = round(OBJ_W * scale), round(OBJ_H * scale)
    img[y : y + h, x : x + w] = [200, 30, 30]
    img[y + h // 2 - h // 10 : y + h // 2 + h // 10, x : x + w] = [245, 245, 245]
    img[y : y + h // 4, x + w // 4 : x + w - w // 4] = [30, 40, 220]
    return (x, y, x + w, y + h)


def make_crops(root: Path, rng, n=60):
    """Object crops (jittered by a pixel or two, as real crops are) and background crops; a third of
    the background crops hold an object shifted half a window off-centre, as a detector's training
    negatives do, so the model peaks on centred objects and NMS has one peak per object to keep."""
    for cls in ("object", "background"):
        (root / cls).mkdir(parents=True)
    for i in range(n):
        img = background(rng, CROP_W, CROP_H)
        paste(img, 3 + rng.integers(-2, 3), 5 + rng.integers(-2, 3))
        Image.fromarray(img.astype(np.uint8)).save(root / "object" / f"o{i:03d}.png")
        img = background(rng, CROP_W + 2 * OBJ_W, CROP_H + 2 * OBJ_H)
        if i % 3 == 0:
            dx, dy = [(0, 1), (1, 0), (1, 1), (-1, 0), (0, -1)][i % 5]
            paste(img, OBJ_W + 3 + dx * CROP_W // 2, OBJ_H + 5 + dy * CROP_H // 2)
        crop = img[OBJ_H : OBJ_H + CROP_H, OBJ_W : OBJ_W + CROP_W]
        Image.fromarray(crop.astype(np.uint8)).save(root / "background" / f"b{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A crop model, scenes with objects at known boxes, and object-free scenes."""
    tmp = tmp_path_factory.mktemp("scan")
    rng = np.random.default_rng(0)
    crops = make_crops(tmp / "crops", rng)
    with pytest.MonkeyPatch.context() as mp:
        # The HTML report is another module's concern and a third of the training time here.
        mp.setattr("imgclf.workflows._report_after_training", lambda model, console: None)
        run = imgclf.train(crops, out=tmp / "run", **FAST)
    scenes, truth = tmp / "scenes", {}
    (scenes / "with").mkdir(parents=True)
    (scenes / "without").mkdir(parents=True)
    for i in range(6):
        img = background(rng, SCENE_W, SCENE_H)
        boxes = [paste(img, int(rng.integers(4, 50)), int(rng.integers(4, 70)))]
        boxes.append(paste(img, int(rng.integers(90, 130)), int(rng.integers(4, 70))))
        path = scenes / "with" / f"s{i}.png"
        Image.fromarray(img.astype(np.uint8)).save(path)
        truth[str(path)] = boxes
    for i in range(6):
        Image.fromarray(background(rng, SCENE_W, SCENE_H).astype(np.uint8)).save(scenes / "without" / f"n{i}.png")
    return {"tmp": tmp, "run": run.path, "model": imgclf.load(run.path), "scenes": scenes, "truth": truth}


def iou(a, b):
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def box(b):
    return (b["x1"], b["y1"], b["x2"], b["y2"])


def test_scan_finds_objects_one_box_each(world, tmp_path):
    results = scan(
        world["model"], world["scenes"], min_size=45, margin=MARGIN, threshold=0.5, out=tmp_path / "out", verbose=False
    )
    by_path = {r["path"]: r for r in results}
    matched = total = dup = 0
    for path, gts in world["truth"].items():
        r = by_path[path]
        assert r["present"] and (r["width"], r["height"]) == (SCENE_W, SCENE_H) and r["windows"] > 100
        for gt in gts:
            hits = [b for b in r["boxes"] if iou(box(b), gt) >= 0.5]
            matched += bool(hits)
            dup += max(0, len(hits) - 1)
            total += 1
    assert matched >= 0.8 * total and dup <= 1
    empty = [r for r in results if "without" in r["path"]]
    assert sum(r["present"] for r in empty) <= 1
    # Outputs: one CSV row per box, the JSON answer, an annotated copy per photo.
    with open(tmp_path / "out" / "boxes.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(r["boxes"]) for r in results) and set(rows[0]) == {
        "image",
        "x1",
        "y1",
        "x2",
        "y2",
        "score",
        "label",
    }
    saved = json.loads((tmp_path / "out" / "scan.json").read_text())
    assert saved["settings"]["positive"] == "object" and len(saved["images"]) == len(results)
    assert len(list((tmp_path / "out" / "annotated").glob("*.jpg"))) == len(results)


def test_a_scan_cut_short_goes_on_from_where_it_stopped(world, tmp_path, monkeypatch):
    from imgclf.inference.box_files import ScanOutputs

    settings = dict(min_size=45, margin=MARGIN, threshold=0.5, verbose=False)
    whole = scan(world["model"], world["scenes"], out=tmp_path / "whole", **settings)
    out = tmp_path / "out"
    with monkeypatch.context() as m:  # killed after the last answer, before the files
        m.setattr(ScanOutputs, "close", lambda self, settings=None: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            scan(world["model"], world["scenes"], out=out, **settings)
    journal = out / "scan.partial.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:6]) + "\n")  # the settings and five answers
    with pytest.raises(imgclf.core.errors.UserError, match=r"unfinished run with other settings \(threshold\)"):
        scan(world["model"], world["scenes"], out=out, **{**settings, "threshold": 0.9})
    resumed = scan(world["model"], world["scenes"], out=out, **settings)
    assert [(r["path"], r["present"], len(r["boxes"])) for r in resumed] == [
        (r["path"], r["present"], len(r["boxes"])) for r in whole
    ]
    assert (out / "boxes.csv").read_text() == (tmp_path / "whole" / "boxes.csv").read_text()
    assert not journal.exists()


def test_four_sided_margin_places_boxes_in_the_window(world):
    """A margin per side (as bench/scan.py fits one to labelled boxes) moves each edge by its own
    fraction of the window; a negative one reaches past the window, clipped to the photo."""
    from PIL import Image

    img = Image.open(next(iter(world["truth"]))).convert("RGB")
    best = lambda r: max(r["boxes"], key=lambda b: b["score"])  # noqa: E731
    win = best(Scanner(world["model"], min_size=45, margin=0.0, threshold=0.5).scan(img))
    placed = best(Scanner(world["model"], min_size=45, margin=(-0.1, 0.2, 0.1, 0.0), threshold=0.5).scan(img))
    w, h = win["x2"] - win["x1"], win["y2"] - win["y1"]
    want = (max(0.0, win["x1"] - 0.1 * w), win["y1"] + 0.2 * h, win["x2"] - 0.1 * w, win["y2"])
    assert np.allclose(box(placed), want, atol=0.2)
    with pytest.raises(imgclf.core.errors.UserError):
        Scanner(world["model"], margin=(0.3, 0.0, 0.3))
    with pytest.raises(imgclf.core.errors.UserError):
        Scanner(world["model"], margin=0.5)


def test_box_voting_averages_neighbouring_windows(world):
    """Each hit's box moves to the score-weighted mean of the hits around it (IoU >= 0.5) before
    NMS; on the scenes voted boxes find the objects at least as often as the single best windows
    do, and still one box per object."""
    from imgclf.scanning.boxes import vote_boxes as _vote

    objects = np.array([[10.0, 10, 30, 50], [14, 10, 34, 50], [100, 10, 120, 50], [20, 10, 40, 50]])
    # The first two overlap by IoU 0.67 and meet in the middle; the third is alone; the fourth
    # overlaps the second by 0.54 and the first by 0.33 (too little to vote).
    voted = _vote(objects, np.array([0.9, 0.9, 0.8, 0.3]))
    assert np.allclose(
        voted[:3],
        [
            [12, 10, 32, 50],
            [(14 * 0.9 + 10 * 0.9 + 20 * 0.3) / 2.1, 10, (34 * 0.9 + 30 * 0.9 + 40 * 0.3) / 2.1, 50],
            [100, 10, 120, 50],
        ],
    )
    assert np.allclose(voted[3], [(20 * 0.3 + 14 * 0.9) / 1.2, 10, (40 * 0.3 + 34 * 0.9) / 1.2, 50])
    found = {}
    for vote in (False, True):
        results = scan(
            world["model"], world["scenes"], min_size=45, margin=MARGIN, threshold=0.5, vote=vote, verbose=False
        )
        by_path = {r["path"]: r for r in results}
        found[vote] = sum(
            any(iou(box(b), gt) >= 0.5 for b in by_path[p]["boxes"]) for p, gts in world["truth"].items() for gt in gts
        )
    assert found[True] >= found[False] >= 0.8 * sum(map(len, world["truth"].values()))


def test_window_has_the_training_crops_aspect(world):
    scanner = Scanner(world["model"])
    assert (scanner.window.width, scanner.window.height) == (CROP_W, CROP_H)
    assert scanner.positive == "object" and scanner.method == "fcn"
    assert (world["run"] / "scan_window.json").is_file()


def test_fcn_matches_window_scan(world):
    """The fully convolutional scan scores the same windows as the window-by-window scan; scores
    differ only where a window's border sees its neighbours instead of zero padding: stated
    tolerance: mean |dp| <= 0.08 over all windows, and the same objects found."""
    from imgclf.scanning.window import pyramid

    path, gts = next(iter(world["truth"].items()))
    img = Image.open(path).convert("RGB")
    fcn = Scanner(world["model"], min_size=45, method="fcn", stride=8, margin=MARGIN, threshold=0.5)
    win = Scanner(world["model"], min_size=45, method="windows", stride=8, margin=MARGIN, threshold=0.5)
    diffs = []
    for s in pyramid(fcn.window, SCENE_W, SCENE_H, None, 45):
        bf, pf = fcn._level(img, s)
        bw, pw = win._level(img, s)
        np.testing.assert_allclose(bf, bw)
        diffs.append(np.abs(pf - pw))
    assert np.concatenate(diffs).mean() <= 0.08
    a, b = fcn.scan(img), win.scan(img)
    assert a["present"] and b["present"]
    for gt in gts:  # the same objects found
        assert any(iou(box(x), gt) >= 0.5 for x in a["boxes"]) == any(iou(box(x), gt) >= 0.5 for x in b["boxes"])


def test_scan_trunk_folds_standardisation_and_reorders_relu_exactly(world):
    """The scan's trunk takes raw pixels (standardisation folded into its first conv, the padding
    moved outside as the mean colour) and pools before its ReLUs: the same logits as the model's
    own layers on the standardised photo, border windows included."""
    import torch

    from imgclf.models.forward import normalize
    from imgclf.scanning.fcn import fcn_parts, window_logits

    model = world["model"]
    norm = model.meta.normalization
    plain, raw = fcn_parts(model.net, model.img_size), fcn_parts(model.net, model.img_size, norm)
    assert raw.raw_input and not plain.raw_input
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in raw.trunk)
    img = np.array(Image.open(next(iter(world["truth"]))).convert("RGB"))
    size, r = model.img_size, raw.stride
    h, w = size + (img.shape[0] - size) // r * r, size + (img.shape[1] - size) // r * r
    x = torch.from_numpy(np.ascontiguousarray(img[:h, :w])).permute(2, 0, 1)[None]
    mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
    std = torch.tensor(norm.std).view(1, 3, 1, 1)
    want = window_logits(plain, normalize(x, mean, std), size)
    got = window_logits(raw, x, size)
    assert got.shape == want.shape and want.numel() > 4
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_one_or_two_threads_give_the_same_answer(world):
    """Resizing and the trunk run on every torch thread; the answer must not depend on how many."""
    import torch

    path = next(iter(world["truth"]))
    img = Image.open(path).convert("RGB")
    scanner = Scanner(world["model"], min_size=45, margin=MARGIN, threshold=0.5)
    before = torch.get_num_threads()
    try:
        answers = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            answers.append({k: v for k, v in scanner.scan(img).items() if k not in ("seconds", "_windows")})
    finally:
        torch.set_num_threads(before)
    assert answers[0] == answers[1] and answers[0]["boxes"]


def test_nms_keeps_distinct_overlapping_objects(world, monkeypatch):
    """One box per object, but two objects whose boxes overlap less than --iou both stay."""
    scanner = Scanner(world["model"], iou=0.3, threshold=0.5, scales=[1.0], vote=False)
    a = [10, 10, 40, 60]
    windows = np.array(
        [
            a,
            [12, 10, 42, 60],
            [10, 13, 40, 63],  # the same object, shifted windows
            [30, 10, 60, 60],  # a second object: IoU 0.2 with the first
            [100, 50, 130, 100],
        ],
        dtype=float,
    )  # below the threshold: dropped
    scores = np.array([0.9, 0.8, 0.85, 0.7, 0.3])
    monkeypatch.setattr(scanner, "_level", lambda img, s, resized=None, stop=None: (windows, scores))
    r = scanner.scan(Image.new("RGB", (SCENE_W, SCENE_H)))
    assert [box(b) for b in r["boxes"]] == [tuple(a), (30, 10, 60, 60)]
    assert r["score"] == 0.9 and r["present"]


def test_unknown_positive_class_names_the_classes(world):
    with pytest.raises(imgclf.core.errors.UserError, match="background, object"):
        Scanner(world["model"], positive="person")


def test_cli_mines_hard_negatives_and_cuts_random_ones(world, tmp_path):
    from typer.testing import CliRunner

    from imgclf.cli import app

    mined = tmp_path / "mined"
    # Mining saves every window that fires; scenes with objects make sure some do (in real use
    # the photos are object-free, and whatever fires there is a false alarm).
    p = CliRunner().invoke(
        app,
        [
            "scan",
            str(world["run"]),
            str(next(iter(world["truth"]))),
            "--mine",
            str(mined),
            "--out",
            str(tmp_path / "out"),
            "--min-size",
            "45",
            "--margin",
            "0.1,0.1",
            "--no-vote",
        ],
    )
    assert p.exit_code == 0, p.output
    assert "scan: window 30x50" in p.output and "present" in p.output
    crops = sorted(mined.glob("*.png"))
    assert crops
    import hashlib

    for c in crops:
        assert c.stem == hashlib.sha256(c.read_bytes()).hexdigest()
        assert Image.open(c).size == (CROP_W, CROP_H)
    assert json.loads((tmp_path / "out" / "scan.json").read_text())["settings"]["vote"] is False

    neg = imgclf.negatives(world["scenes"] / "without", tmp_path / "neg", per_image=5, size="30x50", verbose=False)
    files = list((tmp_path / "neg").glob("*.png"))
    assert neg["crops"] == 30 and len(files) == 30
    assert {Image.open(f).size for f in files} == {(CROP_W, CROP_H)}


def test_scan_route_over_http(world):
    import httpx

    from imgclf import serving

    path = next(iter(world["truth"]))
    with serving.BackgroundServer(serving.create_app(world["model"])) as url:
        assert httpx.get(f"{url}/model").json()["scan"] is True
        with open(path, "rb") as f:
            r = httpx.post(
                f"{url}/scan?min_size=45&threshold=0.5", files={"file": ("scene.png", f, "image/png")}, timeout=60
            )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["width"] == SCENE_W and body["positive"] == "object" and body["present"]
        assert body["boxes"] and {"x1", "y1", "x2", "y2", "score"} <= set(body["boxes"][0])
        bad = httpx.post(f"{url}/scan", content=b"not an image", headers={"Content-Type": "image/png"})
        assert bad.status_code == 415
        unknown = httpx.post(
            f"{url}/scan?positive=cat", content=open(path, "rb").read(), headers={"Content-Type": "image/png"}
        )
        assert unknown.status_code == 422 and "unknown positive 'cat'" in unknown.json()["detail"]


def test_video_presence_from_scanned_frames(world, tmp_path):
    """predict --scan: per-frame presence comes from the scan; the annotated video gets the boxes."""
    import cv2

    from imgclf.inference.video import predict_video

    clip = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5, (SCENE_W, SCENE_H))
    scenes = [np.array(Image.open(p).convert("RGB")) for p in sorted((world["scenes"] / "without").glob("*.png"))[:4]]
    scenes += [np.array(Image.open(p).convert("RGB")) for p in list(world["truth"])[:4]] * 2
    for frame in scenes:
        vw.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    vw.release()
    scanner = Scanner(world["model"], min_size=45, threshold=0.5, margin=MARGIN)
    out = predict_video(
        world["model"],
        str(clip),
        smooth=0.2,
        out_csv=tmp_path / "frames.csv",
        out_video=tmp_path / "boxes.mp4",
        show_fps=False,
        scanner=scanner,
    )
    assert out["frames"] == 12 and len(out["events"]) == 1
    assert 0.6 <= out["events"][0]["start_s"] <= 1.0 and (tmp_path / "boxes.mp4").stat().st_size > 0


def test_recorded_defaults_are_used(world):
    """Settings recorded with the run (scan_window.json) become the scan's defaults (last: it edits the run)."""
    imgclf.scanning.remember(world["run"], "object", margin=[MARGIN, MARGIN], min_size=45)
    scanner = Scanner(imgclf.load(world["run"]))
    assert scanner.margin == (MARGIN,) * 4 and scanner.min_size == 45
    assert Scanner(imgclf.load(world["run"]), margin=0.0).margin == (0.0,) * 4


def test_verifier_rescores_the_best_windows(world):
    """A second crop model looks only at each photo's best windows after NMS: its best answer is the
    photo's score and decides presence (an object-free photo's score is still its judgement, so
    photos rank by it); boxes are the scan's own detections in the photos it passes, scored scan
    score x photo score, and a photo it refuses has none."""
    from imgclf.core.errors import UserError
    from imgclf.scanning import Verifier

    model = world["model"]
    # top=1: the verifier sees the scan's best window, which is also the best-scored box.
    results = scan(model, world["scenes"], min_size=45, margin=0.0, verify=model, verify_top=1, verbose=False)
    # Compared with the scan alone without box voting, which a verified scan does not do either.
    plain = {r["path"]: r for r in scan(model, world["scenes"], min_size=45, margin=0.0, vote=False, verbose=False)}
    for r in results:
        assert r["present"] == (r["score"] >= r["threshold"]) and r["score"] < 1
        if not r["present"]:
            assert r["boxes"] == []
            continue
        assert r["boxes"] and all(b["score"] <= r["score"] + 1e-6 for b in r["boxes"])
        best = max(r["boxes"], key=lambda b: b["score"])
        crop = model.preprocess(Image.open(r["path"]).convert("RGB").crop(tuple(round(v) for v in box(best))))
        assert abs(model.predict_proba(crop[None])[0, model.classes.index("object")] - r["score"]) < 1e-4
        # The same windows as the scan alone finds (plus at most the verified one), rescaled.
        assert len(plain[r["path"]]["boxes"]) <= len(r["boxes"]) <= len(plain[r["path"]]["boxes"]) + 1
    with_objects = [r for r in results if "with" in Path(r["path"]).parent.name and "without" not in r["path"]]
    assert sum(r["present"] for r in with_objects) >= 5
    assert sum(r["present"] for r in results if "without" in r["path"]) <= 1
    scanner = Scanner(model, "object", verify=Verifier(model, "object", top=2, threshold=0.7))
    assert scanner.threshold == 0.7 and "best 2 windows" in scanner.describe()
    with pytest.raises(UserError, match="no class 'person'"):
        Verifier(model, "person")
    with pytest.raises(UserError, match="verifier-top"):
        Verifier(model, "object", top=0)


def test_recorded_verifier_travels_with_the_run(world, tmp_path):
    """remember(verify=RUN) copies the verifier into the run folder: `scan` uses it by default (with
    the recorded threshold and top), after the run folder moves; verify=False scans without it."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    imgclf.scanning.remember(
        run, "object", verify=world["run"], verify_top=1, threshold=0.6, box_threshold=0.99, min_size=45
    )
    moved = tmp_path / "elsewhere" / "run"
    shutil.move(str(run), moved)
    model = imgclf.load(moved)
    scanner = Scanner(model, "object")
    assert scanner.verify is not None and scanner.verify.top == 1 and scanner.threshold == 0.6
    assert scanner.box_threshold == 0.99
    assert (moved / "verifier" / "model.safetensors").is_file()
    # On a CPU it runs in ONNX Runtime (exported when recorded) with the run's own test-time flips.
    assert (moved / "verifier" / "model.onnx").is_file() and scanner.verify.model.tta == model.tta
    results = scan(model, world["scenes"] / "with", verbose=False)
    assert sum(r["present"] for r in results) >= 5
    assert all(bool(r["boxes"]) == r["present"] for r in results)
    # A stricter box threshold keeps fewer of the scan's windows, never the photo's answer.
    strict = scan(model, world["scenes"] / "with", box_threshold=0.5, verbose=False)
    loose = scan(model, world["scenes"] / "with", box_threshold=0.01, verbose=False)
    assert [r["present"] for r in strict] == [r["present"] for r in loose] == [r["present"] for r in results]
    assert sum(len(r["boxes"]) for r in strict) < sum(len(r["boxes"]) for r in loose)
    from imgclf.core.errors import UserError

    with pytest.raises(UserError, match="threshold"):
        scan(model, world["scenes"] / "with", box_threshold=1.5, verbose=False)
    plain = scan(model, world["scenes"] / "with", verify=False, verbose=False)
    assert Scanner(model, "object", verify=False).verify is None
    assert max(len(r["boxes"]) for r in plain) >= 2  # without it, both objects of a scene
    from typer.testing import CliRunner

    from imgclf.cli import app

    scene = str(next(iter(world["truth"])))
    p = CliRunner().invoke(
        app,
        ["scan", str(moved), scene, "--out", str(tmp_path / "out"), "--verifier-top", "2", "--box-threshold", "0.3"],
    )
    assert p.exit_code == 0, p.output
    settings = json.loads((tmp_path / "out" / "scan.json").read_text())["settings"]
    assert "re-scored by" in p.output and settings["verify_top"] == 2 and settings["box_threshold"] == 0.3
    p = CliRunner().invoke(app, ["scan", str(moved), scene, "--no-verifier"])
    assert p.exit_code == 0 and "re-scored" not in p.output
    p = CliRunner().invoke(
        app, ["scan", str(world["run"]), scene, "--verifier", str(moved / "verifier"), "--verifier-top", "0"]
    )
    assert isinstance(p.exception, imgclf.core.errors.UserError) and "--verifier-top must be 1 to 1000" in str(
        p.exception
    )
    shutil.rmtree(moved / "verifier")
    with pytest.raises(imgclf.core.errors.UserError, match="verifier"):
        Scanner(model, "object")
