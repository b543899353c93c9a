"""The whole job, end to end, on small real image files: train -> run folder -> predict/evaluate."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import CLI, cli, cli_env, ctrl_c

import imgclf

pytestmark = pytest.mark.slow  # every test here trains a model, itself or through a fixture

RUN_FILES = [
    "model.safetensors",
    "model.json",
    "reliability.png",
    "config.yaml",
    "history.csv",
    "metrics.json",
    "data_report.json",
    "splits.csv",
    "learning_curves.png",
    "confusion_matrix.png",
]


def test_train_writes_complete_run_and_predicts(shapes, tmp_path):
    run = imgclf.train(shapes, out=tmp_path / "run", epochs=8, verbose=False)
    for f in RUN_FILES:
        assert (run.path / f).is_file(), f
    assert run.metrics["accuracy"] >= 0.8
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["classes"] == ["disc", "square", "stripes"] and meta["input"]["size"] == 32
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert set(metrics["per_class"]) == set(meta["classes"]) and len(metrics["confusion_matrix"]) == 3
    t = meta["calibration"]["temperature"]
    assert 0.05 < t < 20 and metrics["calibration"]["temperature"] == t
    assert metrics["calibration"]["log_loss_after"] == pytest.approx(metrics["log_loss"], abs=1e-3)
    with open(run.path / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, 9))

    p = cli("predict", run.path, shapes / "disc", shapes / "square" / "square_000.png", "--format", "json")
    results = json.loads(p.stdout)
    assert len(results) == 31
    correct = sum(r["label"] == Path(r["path"]).parent.name for r in results)
    assert correct >= 28
    assert all(0 < r["confidence"] <= 1 for r in results)

    model = imgclf.load(run.path)
    from PIL import Image

    pil = Image.open(shapes / "stripes" / "stripes_001.png")
    assert model.predict(pil)[0]["label"] == "stripes"
    again = imgclf.evaluate(run.path, verbose=False)
    assert again["accuracy"] == pytest.approx(run.metrics["accuracy"])


def test_broken_files_are_skipped_and_reported(shapes, tmp_path):
    (shapes / "disc" / "empty.png").write_bytes(b"")
    good = (shapes / "disc" / "disc_000.png").read_bytes()
    jpg = tmp_path / "t.jpg"
    from PIL import Image

    Image.open(shapes / "disc" / "disc_000.png").convert("RGB").save(jpg, quality=90)
    (shapes / "square" / "truncated.jpg").write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    (shapes / "stripes" / "x.jpg").write_text("this is not a picture")
    (shapes / "README.md").write_text("stray file")
    assert good
    p = cli("train", shapes, "--epochs", "2", "--out", tmp_path / "run")
    run = Path(p.stdout.strip().splitlines()[-1])
    assert run == tmp_path / "run"
    report = json.loads((run / "data_report.json").read_text())
    assert sorted(Path(s["path"]).name for s in report["skipped"]) == ["empty.png", "truncated.jpg", "x.jpg"]
    assert all(s["reason"] for s in report["skipped"])
    assert report["totals"]["train"] + report["totals"]["val"] + report["totals"]["test"] == 90
    assert p.stderr.count("Traceback") == 0 and p.stdout.count("skipped") >= 3

    out = json.loads(cli("predict", run, shapes / "stripes", "--format", "json").stdout)
    assert sum("error" in r for r in out) == 1 and len(out) == 31


def test_a_kaggle_download_trains_as_it_came(shapes, tmp_path):
    """The zip of a Kaggle set: a wrapping folder, train/ of bare ids, labels.csv (id,shape) and an
    unlabelled test/. `imgclf train shapes.zip` reads it, says how, records it, and predicts."""
    import shutil

    kaggle = tmp_path / "src" / "shapes-data"
    rows = ["id,shape"]
    for i, png in enumerate(sorted(shapes.rglob("*.png"))):
        (kaggle / "train").mkdir(parents=True, exist_ok=True)
        shutil.copy(png, kaggle / "train" / f"{i:05d}.png")
        rows.append(f"{i:05d},{png.parent.name}")
    (kaggle / "labels.csv").write_text("\n".join(rows) + "\n")
    (kaggle / "test").mkdir()
    shutil.copy(png, kaggle / "test" / "99999.png")
    archive = shutil.make_archive(str(tmp_path / "shapes"), "zip", tmp_path / "src")
    p = cli("train", archive, "--epochs", "1", "--out", tmp_path / "run", "--group-by", "none")
    run = tmp_path / "run"
    assert "data: shapes.zip unpacked to " in p.stdout
    assert (
        "read from shapes-data/ inside it; test/ holds no class folders: left out as unlabelled; labels.csv: "
        in p.stdout
    )
    assert "images from column 'id', classes from column 'shape'" in p.stdout
    report = json.loads((run / "data_report.json").read_text())
    assert report["layout"] == "manifest" and report["read_as"].startswith("shapes.zip unpacked to ")
    assert sum(report["totals"].values()) == len(rows) - 1
    out = json.loads(cli("predict", run, kaggle / "test", "--format", "json").stdout)
    assert len(out) == 1 and out[0]["label"] in {"disc", "square", "stripes"}


def test_user_mistakes_give_one_clear_line(tmp_path, shapes):
    p = cli("train", tmp_path / "missing", check=False)
    assert p.returncode == 2 and "error: data not found" in p.stderr and "Traceback" not in p.stderr
    p = cli("predict", tmp_path, shapes, check=False)
    assert p.returncode == 2 and "not a finished run folder" in p.stderr
    p = cli("train", shapes, "--model", "no_such_net", "--epochs", "1", "--out", tmp_path / "r", check=False)
    assert p.returncode == 2 and "no_such_net" in p.stderr and "Traceback" not in p.stderr


def test_config_file_and_recorded_defaults(shapes, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: simple_cnn\nepochs: 2\nmodel_kwargs: {width: 8, depth: 2}\n")
    p = cli("train", shapes, "--config", cfg, "--lr", "0.003", "--out", tmp_path / "run")
    import yaml

    rec = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert rec["model"] == "simple_cnn" and rec["epochs"] == 2 and rec["lr"] == 0.003
    assert rec["model_kwargs"]["width"] == 8 and "dropout" in rec["model_kwargs"]  # defaults recorded too
    assert rec["img_size"] == 32 and rec["batch_size"] and isinstance(rec["augment"], dict)
    assert "default: img_size=32" in p.stdout


def test_kill_and_resume(shapes, tmp_path):
    """SIGKILL mid-training, then --resume: full epoch count, each epoch's row exactly once.
    The fast preset's extra state (weight average, SGD momentum) goes through the kill too."""
    run = tmp_path / "run"
    env = cli_env()
    args = [*CLI, "train", str(shapes), "--preset", "fast", "--epochs", "6", "--img-size", "48", "--out", str(run)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    hist = run / "history.csv"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if hist.exists() and len(hist.read_text().strip().splitlines()) >= 4:  # header + 3 epochs
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "metrics.json").exists()
    # Using the killed run says what happened and the command that goes on, in one line.
    p = cli("predict", run, shapes, check=False)
    assert p.returncode == 2 and p.stderr.strip() == (
        f"error: {run} is a training run that was interrupted before it finished; "
        f"resume it with: imgclf train --resume {run}"
    ), p.stderr

    # The same command again must not start over on top of the killed run's epochs.
    p = cli(*args[len(CLI) :], check=False)
    assert p.returncode == 2 and p.stderr.strip() == (
        f"error: {run} holds an unfinished training: add --resume {run} to continue it, "
        "or choose another --out (or delete that folder) to start over"
    ), p.stderr
    assert len(hist.read_text().strip().splitlines()) >= 4

    p = cli("train", "--resume", run)
    assert "resuming from epoch" in p.stdout
    with open(hist) as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    assert epochs == list(range(1, 7))
    assert (run / "metrics.json").is_file()


@pytest.mark.slow
def test_ctrl_c_names_the_command_that_continues(shapes, tmp_path):
    """Ctrl-C mid-training: exit 130 and one line naming the --resume command, which finishes the run
    with each epoch's row exactly once."""
    run = tmp_path / "run"
    hist = run / "history.csv"
    p = ctrl_c(
        ["train", shapes, "--preset", "fast", "--epochs", "6", "--img-size", "48", "--out", run],
        ready=lambda: hist.exists() and len(hist.read_text().strip().splitlines()) >= 3,
    )
    assert p.returncode == 130, p.stderr
    assert p.stderr.strip().splitlines()[-1] == f"interrupted. Continue the training with: imgclf train --resume {run}"
    assert "Traceback" not in p.stderr
    cli("train", "--resume", run)
    with open(hist) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, 7))


def test_timm_model_with_local_weights(shapes, tmp_path):
    """A timm architecture trained from a weight file we saved ourselves (the offline --weights path)."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    src = timm.create_model("resnet10t", num_classes=1000)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "resnet10t.safetensors"))
    p = cli(
        "train",
        shapes,
        "--model",
        "timm/resnet10t",
        "--weights",
        tmp_path / "resnet10t.safetensors",
        "--epochs",
        "2",
        "--img-size",
        "32",
        "--out",
        tmp_path / "run",
    )  # not the weights' own 176 px: fast
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["architecture"]["name"] == "timm/resnet10t"
    assert meta["normalization"]["mean"] == [0.485, 0.456, 0.406]  # pretrained: ImageNet statistics
    assert "fine-tuning" in p.stdout
    out = json.loads(cli("predict", tmp_path / "run", shapes / "disc" / "disc_001.png", "--format", "json").stdout)
    assert out[0]["label"] in meta["classes"]


def test_two_classes_threshold_chosen_stored_and_applied(shapes, tmp_path):
    import shutil

    shutil.rmtree(shapes / "stripes")
    (shapes / "square").rename(shapes / "no-disc")
    run = imgclf.train(shapes, out=tmp_path / "run", epochs=4, target_recall=0.9, verbose=False)
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["decision"]["positive_class"] == "disc"
    assert "recall >= 0.9" in meta["decision"]["rule"] and 0 <= meta["decision"]["threshold"] <= 1
    d = run.metrics["decision"]
    assert {"precision", "recall", "roc_auc", "pr_auc", "threshold"} <= set(d)
    # predict applies the stored threshold: at 0 every image is the positive class.
    meta["decision"]["threshold"] = 0.0
    (run.path / "model.json").write_text(json.dumps(meta))
    out = json.loads(cli("predict", run.path, shapes, "--format", "json").stdout)
    assert {r["label"] for r in out} == {"disc"}


def test_in_house_model_starts_from_an_earlier_run(shapes, tmp_path):
    """--weights RUN for simple_cnn: a model trained on other classes starts a new one (its head fresh),
    and the new run standardises inputs as the weights were learnt."""
    import shutil
    import warnings

    import torch
    from safetensors.torch import load_file

    from imgclf.models import create_model

    small = {"width": 8, "hidden": 32}
    parent = imgclf.train(
        shapes, out=tmp_path / "parent", model="simple_cnn", model_kwargs=small, img_size=24, epochs=1, verbose=False
    )
    sd = load_file(str(parent.path / "model.safetensors"))
    with pytest.warns(UserWarning, match=r"loaded \d+/\d+ tensors .*newly initialised: .*weight"):
        net = create_model("simple_cnn", 2, img_size=24, weights=str(parent.path), **small)
    own = net.state_dict()
    same = [k for k in sd if torch.equal(own[k], sd[k])]
    assert len(same) >= len(sd) - 2 and len(same) < len(sd)  # all but the 3-class head
    with pytest.raises(ValueError, match="does not look like weights for simple_cnn"):
        create_model("simple_cnn", 2, img_size=24, weights=str(parent.path), width=16, hidden=32)

    shutil.rmtree(shapes / "stripes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        child = imgclf.train(
            shapes,
            out=tmp_path / "child",
            model="simple_cnn",
            model_kwargs=small,
            img_size=24,
            epochs=1,
            weights=str(parent.path),
            verbose=False,
        )
    meta = json.loads((child.path / "model.json").read_text())
    parent_meta = json.loads((parent.path / "model.json").read_text())
    assert meta["classes"] == ["disc", "square"]
    assert meta["normalization"] == parent_meta["normalization"]
    assert meta["starting_weights"] == str(parent.path / "model.safetensors")
