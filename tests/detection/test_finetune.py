"""Fine-tuning the pretrained detector on a small YOLO folder built from real photos (the portrait
pasted into landscapes at known boxes, and person-free crops): the run folder, its metrics against
the pretrained start, scanning and exporting with it, and resuming an interrupted training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
from helpers import cli
from PIL import Image
from sklearn.datasets import load_sample_images

import imgclf
from imgclf.core.errors import UserError
from imgclf.detection import finetune

pytestmark = pytest.mark.slow  # trains
PORTRAIT = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def make_yolo_set(root: Path, n: int = 12) -> Path:
    """n photos 320x240: two in three hold the portrait (one box each), the rest nobody."""
    rng = np.random.default_rng(0)
    scenes = [Image.open(p).convert("RGB") for p in load_sample_images().filenames]
    person = Image.open(PORTRAIT).convert("RGB")
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("person\n")
    for i in range(n):
        scene = scenes[i % 2]
        x, y = int(rng.integers(0, scene.width - 320)), int(rng.integers(0, scene.height - 240))
        photo = scene.crop((x, y, x + 320, y + 240))
        lines = []
        if i % 3:
            h = int(rng.integers(90, 200))
            w = int(h * 512 / 600)
            px, py = int(rng.integers(0, 320 - w)), int(rng.integers(0, 240 - h))
            photo.paste(person.resize((w, h)), (px, py))
            lines.append(f"0 {(px + w / 2) / 320:.5f} {(py + h / 2) / 240:.5f} {w / 320:.5f} {h / 240:.5f}")
        photo.save(root / "images" / f"photo{i:02d}.jpg", quality=92)
        (root / "labels" / f"photo{i:02d}.txt").write_text("\n".join(lines))
    return root


@pytest.fixture(scope="module")
def boxes_folder(tmp_path_factory) -> Path:
    return make_yolo_set(tmp_path_factory.mktemp("det") / "boxes")


@pytest.fixture(scope="module")
def run(boxes_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("det-run") / "run"
    result = imgclf.train(boxes_folder, out=out, epochs=1, batch_size=4, verbose=False)
    return Path(result.path)


def test_train_on_boxes_writes_a_detector_run(run, boxes_folder):
    meta = json.loads((run / "detector.json").read_text())
    assert meta["kind"] == "detector" and meta["classes"] == ["person"] and meta["annotations"] == "yolo"
    assert 0 < meta["threshold"] <= 1
    assert meta["flip"] is True and imgclf.detection.load_detector(run).flip  # its threshold is for those views
    m = meta["metrics"]
    for key in ("test", "pretrained_test"):
        assert 0 <= m[key]["ap50"] <= 1 and 0 <= m[key]["map"] <= 1 and "ap50_at_threshold" in m[key]
    # The best epoch by validation (AP@0.5 + mAP) / 2 is kept, the pretrained start (epoch 0) included,
    # though the start only where validation is clearly for it (below); which one is recorded.
    with open(run / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in history] == [0, 1]
    scores = [(float(r["val_ap50"]) + float(r["val_map"])) / 2 for r in history]
    assert m["kept_epoch"]["epoch"] in ((1,) if scores[1] > scores[0] else (0, 1))
    assert m["kept_epoch"]["val_map"] == float(history[m["kept_epoch"]["epoch"]]["val_map"])
    assert "Validation, epoch by epoch" in (run / "report.html").read_text()
    assert {p.name for p in run.iterdir()} >= {"detector.safetensors", "report.html", "pr_curve.png", "splits.csv"}
    assert not (run / "train_state.safetensors").exists()
    assert "AP@0.5" in (run / "report.html").read_text() and any((run / "test_photos").iterdir())
    # The run scans as the pretrained detector does, from Python and the command line.
    photo = boxes_folder / "images" / "photo01.jpg"  # holds the portrait
    r = imgclf.scan(run, [photo], verbose=False)[0]
    assert r["boxes"] and r["boxes"][0]["label"] == "person"
    p = cli("scan", run, photo)
    assert "photo01.jpg  present" in p.stdout
    exported = imgclf.export(run, verbose=False)
    assert exported["max_score_diff"] < 1e-4 and Path(exported["path"]).is_file()


def test_interrupted_detector_training_resumes(boxes_folder, tmp_path, monkeypatch):
    calls = []
    real = finetune.epoch

    def stop_in_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(finetune, "epoch", stop_in_second)
    with pytest.raises(KeyboardInterrupt, match="imgclf train --resume"):
        imgclf.train(boxes_folder, out=tmp_path / "r", epochs=2, batch_size=4, verbose=False)
    assert (tmp_path / "r" / "train_state.safetensors").exists() and not (tmp_path / "r" / "detector.json").exists()
    monkeypatch.setattr(finetune, "epoch", real)
    imgclf.train(resume=tmp_path / "r", verbose=False)  # the data folder is recorded in the run
    with open(tmp_path / "r" / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2]  # each epoch once


def test_early_stopping_waits_for_the_rate_to_fall(boxes_folder, tmp_path, monkeypatch):
    """Validation that dips while the one-cycle rate is high does not end the run: with patience 2 of
    10 epochs, a run whose best is epoch 1 goes on through epoch 5, and stops at epoch 6 (the rate is then
    under half its peak). With a few validation photos, which cannot rank epochs, all 10 run."""
    from imgclf.detection import training

    monkeypatch.setattr(finetune, "epoch", lambda *a: {"cls_loss": 1.0, "box_loss": 1.0})
    for few, epochs in ((False, [0, 1, 2, 3, 4, 5]), (True, list(range(11)))):
        val_map = iter([0.30, 0.31, 0.29, 0.28, 0.27, 0.26, 0.25, 0.24, 0.23, 0.22, 0.21])
        monkeypatch.setattr(training, "validate", lambda *a, it=val_map: {"val_map": next(it), "val_ap50": 0.5})
        monkeypatch.setattr(training, "FEW_VAL", 10_000 if few else 0)
        imgclf.train(boxes_folder, out=tmp_path / f"r{few}", epochs=10, patience=2, batch_size=4, verbose=False)
        with open(tmp_path / f"r{few}" / "history.csv") as f:
            assert [int(r["epoch"]) for r in csv.DictReader(f)] == epochs


def test_the_epoch_kept(boxes_folder, tmp_path, monkeypatch):
    """Many validation photos keep the best epoch by the mean of AP@0.5 and mAP: a validation mAP that
    falls a little while AP@0.5 rises more (the street scenes, seed 0) keeps the fine-tuned epoch, one
    that loses both the start. A few keep the last epoch, whatever they score, unless their resamples
    are clearly for the start (finetune.CLEARLY of them)."""
    from imgclf.detection import metrics, training

    monkeypatch.setattr(finetune, "epoch", lambda *a: {"cls_loss": 1.0, "box_loss": 1.0})
    for name, few, rows, sure, kept in (
        ("many, up", False, [(0.24, 0.44), (0.20, 0.50), (0.19, 0.49)], 0.0, 1),  # mean 0.34 -> 0.35
        ("many, down", False, [(0.24, 0.44), (0.20, 0.46), (0.19, 0.45)], 0.0, 0),  # mean 0.34 -> 0.33
        ("few, down, unclear", True, [(0.24, 0.44), (0.20, 0.50), (0.19, 0.45)], 0.6, 2),
        ("few, down, clearly", True, [(0.24, 0.44), (0.20, 0.50), (0.19, 0.45)], 0.95, 0),
    ):
        it = iter(rows)
        monkeypatch.setattr(training, "validate", lambda *a, it=it: dict(zip(("val_map", "val_ap50"), next(it))))
        monkeypatch.setattr(metrics, "share_better", lambda *a, sure=sure: sure)
        monkeypatch.setattr(training, "FEW_VAL", 10_000 if few else 0)
        imgclf.train(boxes_folder, out=tmp_path / name, epochs=2, batch_size=4, verbose=False)
        meta = json.loads((tmp_path / name / "detector.json").read_text())
        assert meta["metrics"]["kept_epoch"]["epoch"] == kept, name
        assert not (tmp_path / name / "best.safetensors").exists()


def test_share_better_says_how_sure_the_photos_are():
    """Bootstrap resamples of the photos: answers that find every box beat answers that find none on
    every resample; equal answers on none (a tie is no win); a mixed pair somewhere between."""
    from imgclf.detection.metrics import share_better

    truth = {
        "info": {},
        "licenses": [],
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in range(1, 7)],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "bbox": [10, 10, 40, 60], "area": 2400, "iscrowd": 0}
            for i in range(1, 7)
        ],
        "categories": [{"id": 1, "name": "person", "supercategory": ""}],
    }
    hit = {"boxes": [{"x1": 10, "y1": 10, "x2": 50, "y2": 70, "score": 0.9, "label": "person"}]}
    miss = {"boxes": [{"x1": 60, "y1": 60, "x2": 90, "y2": 90, "score": 0.9, "label": "person"}]}
    ap50 = lambda r: r["ap50"]  # noqa: E731
    assert share_better(truth, [hit] * 6, [miss] * 6, ["person"], ap50, draws=20) == 1.0
    assert share_better(truth, [hit] * 6, [hit] * 6, ["person"], ap50, draws=20) == 0.0
    half, other_half = [hit] * 3 + [miss] * 3, [miss] * 3 + [hit] * 3
    assert 0.0 < share_better(truth, half, other_half, ["person"], ap50, draws=40) < 1.0


def test_a_time_budget_sets_the_epochs_before_the_first_step(boxes_folder, tmp_path, monkeypatch, capsys):
    """`--time-budget`: the epochs that fit (a timed step, the start's validation) become the run's
    schedule, recorded for resume; a budget that fits none keeps the pretrained start."""
    monkeypatch.setattr(finetune, "step_seconds", lambda *a: 1000.0)  # two steps an epoch: ~2,000 s each
    imgclf.train(boxes_folder, out=tmp_path / "one", batch_size=4, time_budget="1h", verbose=True)
    out = capsys.readouterr().out
    assert "time budget 3600s: 1 of at most 30 epochs fit" in out
    assert "validation photos cannot rank epochs and place the presence threshold only roughly" in out  # 12 photos
    assert json.loads((tmp_path / "one" / "detector-training.json").read_text())["settings"]["epochs"] == 1
    with open(tmp_path / "one" / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]
    p = cli("train", boxes_folder, "--out", tmp_path / "none", "--batch-size", "4", "--time-budget", "1s")
    assert "0 of at most 30 epochs fit" in p.stdout and "the pretrained start is kept" in p.stdout
    meta = json.loads((tmp_path / "none" / "detector.json").read_text())
    assert meta["metrics"]["test"]["ap50"] == meta["metrics"]["pretrained_test"]["ap50"]


def test_a_resumed_budgeted_run_has_what_is_left_of_its_budget(boxes_folder, tmp_path, monkeypatch, capsys):
    """An interrupted `--time-budget` run resumes with the seconds its first process spent taken off,
    not the whole budget again: here the first process 'spent' 3,000 of 3,600 s, so the epoch planned
    (~2,000 s) no longer fits and the resumed run finishes with the pretrained start."""
    from imgclf.detection import training

    monkeypatch.setattr(finetune, "step_seconds", lambda *a: 1000.0)
    real_state = training.Clock.state
    monkeypatch.setattr(training.Clock, "state", lambda self: {**real_state(self), "spent": 3000.0})
    monkeypatch.setattr(finetune, "epoch", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        imgclf.train(boxes_folder, out=tmp_path / "r", batch_size=4, time_budget="1h", verbose=False)
    monkeypatch.undo()
    capsys.readouterr()
    imgclf.train(resume=tmp_path / "r", verbose=True)
    out = capsys.readouterr().out
    assert "3000s of the 3600s budget spent" in out and "no room for epoch 1" in out
    with open(tmp_path / "r" / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0]


def test_the_users_split_is_kept(boxes_folder, tmp_path):
    """Roboflow's export (train/, valid/, test/ with images/ and labels/ each): those photos validate and
    test the run, whatever the seed; the line printed says so."""
    import shutil

    rf = tmp_path / "rf"
    folder = {i: "test" if i < 2 else "valid" if i < 4 else "train" for i in range(12)}
    for i, split in folder.items():
        for sub, ext in (("images", "jpg"), ("labels", "txt")):
            (rf / split / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(boxes_folder / sub / f"photo{i:02d}.{ext}", rf / split / sub)
    (rf / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnames: [person]\n")
    p = cli("train", rf, "--out", tmp_path / "run", "--epochs", "1", "--batch-size", "4", "--seed", "3")
    assert "split 8/2/2 train/val/test (your val and test splits kept)" in p.stdout
    assert f"{rf} holds box annotations: training a detector (--task classify trains a classifier instead)" in p.stdout
    with open(tmp_path / "run" / "splits.csv") as f:
        got = {(Path(r["path"]).parent.parent.name, r["split"]) for r in csv.DictReader(f)}
    assert got == {("train", "train"), ("valid", "val"), ("test", "test")}
    assert json.loads((tmp_path / "run" / "detector.json").read_text())["split"] == "your val and test splits kept"
    assert "split: your val and test splits kept" in (tmp_path / "run" / "report.html").read_text()


def test_malformed_annotations_are_one_line(boxes_folder, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(boxes_folder, bad)
    (bad / "labels" / "photo01.txt").write_text("0 0.95 0.5 0.3 0.2\n")
    p = cli("train", bad, check=False)
    assert p.returncode == 2 and "photo01.txt line 1: box outside the image" in p.stderr and "Traceback" not in p.stderr
    (bad / "labels" / "photo01.txt").write_text("1 0.5 0.5 0.3 0.2\n")
    p = cli("train", bad, check=False)
    assert p.returncode == 2 and "unknown class" in p.stderr


def test_a_detector_run_serves_beside_a_classifier(run, boxes_folder, tmp_path_factory):
    """`imgclf serve RUN --detector DETECTOR_RUN`: POST /scan answers with the fine-tuned detector;
    the detector run alone loads as a presence classifier, and serves as the detector."""
    import httpx
    from helpers import trained_run

    serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
    classifier, _ = trained_run(tmp_path_factory)
    app = serving.create_app(imgclf.load(classifier), serving.ServeSettings(detector=str(run)))
    with serving.BackgroundServer(app) as url:
        photo = (boxes_folder / "images" / "photo01.jpg").read_bytes()
        r = httpx.post(f"{url}/scan", content=photo, headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert r.status_code == 200, r.text
        assert (
            r.json()["detector"] == run.name
            and r.json()["threshold"] == json.loads((run / "detector.json").read_text())["threshold"]
        )
    meta = json.loads((run / "detector.json").read_text())
    # imgclf.load(DETECTOR_RUN) (`imgclf predict DETECTOR_RUN PHOTOS`): present or not, as /predict answers
    assert imgclf.load(run).classes == [f"no {meta['positive']}", meta["positive"]]
    # `imgclf serve DETECTOR_RUN`: the fine-tuned detector alone, answering /predict and /scan alike.
    seen = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(serving.server, "run_server", lambda model, settings, *a, **kw: seen.update(m=model, s=settings))
        imgclf.serve(run, verbose=False)
    assert seen["s"].detector == str(run) and seen["m"].classes == [f"no {meta['positive']}", meta["positive"]]
    with serving.BackgroundServer(serving.create_app(seen["m"], seen["s"])) as url:
        headers = {"Content-Type": "image/jpeg"}
        scan = httpx.post(f"{url}/scan", content=photo, headers=headers, timeout=60).json()
        said = httpx.post(f"{url}/predict", content=photo, headers=headers, timeout=60).json()["results"][0]
        assert scan["detector"] == run.name and (said["label"] == meta["positive"]) == scan["present"]


def test_a_detector_trains_in_one_process_only(boxes_folder, tmp_path, monkeypatch):
    """--workers, or torchrun's ranks (each would train its own detector into the one run folder)."""
    with pytest.raises(UserError, match="training a detector .* runs in one process"):
        imgclf.train(boxes_folder, out=str(tmp_path / "w"), workers=2, verbose=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="training a detector .* runs in one process"):
        imgclf.train(boxes_folder, out=str(tmp_path / "t"), verbose=False)
    assert not (tmp_path / "w").exists() and not (tmp_path / "t").exists()
