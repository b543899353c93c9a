"""What predict takes besides files and folders. Images named by their web address
(https://.../photo.jpg): predict and batch prediction fetch them from a real HTTP server on
localhost; a missing one or an unreachable host is that image's error row, never a crash; a
stream's address is still a video. A zip of photos: its images, unpacked once into the cache."""

from __future__ import annotations

import csv
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from helpers import CLI, cli_env, web_server
from PIL import Image

import imgclf
from imgclf.core.errors import UserError
from imgclf.inference.video import is_video_source

pytestmark = pytest.mark.slow  # the shared tiny run trains once a session


@pytest.fixture()
def site(tiny_run):
    """http://127.0.0.1:PORT/ serving the tiny run's training shapes."""
    with web_server(tiny_run.parent / "shapes") as url:
        yield url


def test_predict_and_batch_fetch_web_images_and_say_which_failed(tiny_run, site, tmp_path):
    disc = sorted((tiny_run.parent / "shapes" / "disc").iterdir())[0]
    url = f"{site}/disc/{disc.name}"
    model = imgclf.load(tiny_run)
    got = model.predict([url, f"{site}/disc/missing.png", "http://127.0.0.1:9/x.png", disc])
    assert got[0]["path"] == url and got[0]["label"] == got[3]["label"]
    assert got[0]["confidence"] == pytest.approx(got[3]["confidence"])  # the same bytes, the same answer
    assert got[1]["error"].startswith("cannot fetch: HTTP 404") and "label" not in got[1]
    assert got[2]["error"].startswith("cannot fetch:")

    summary = imgclf.predict_folder(model, [url, f"{site}/disc/missing.png"], tmp_path / "preds.csv", verbose=False)
    assert (summary["predicted"], summary["errors"]) == (1, 1)
    rows = list(csv.DictReader(open(tmp_path / "preds.csv", newline="")))
    assert [r["path"] for r in rows] == [url, f"{site}/disc/missing.png"] and rows[0]["label"] == got[0]["label"]


def test_an_image_address_is_a_photo_and_a_stream_address_a_video():
    assert not is_video_source("https://example.com/photos/cat.JPG?size=large")
    assert is_video_source("https://example.com/live/stream.m3u8") and is_video_source("rtsp://camera/1")
    assert is_video_source("http://example.com/cam") and is_video_source("0")


def test_a_zip_of_photos_is_predicted_image_by_image(tiny_run, tmp_path):
    shapes = tiny_run.parent / "shapes"
    archive = tmp_path / "new photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted((shapes / "disc").iterdir())[:2] + sorted((shapes / "square").iterdir())[:1]:
            z.write(f, f"batch/{f.parent.name}-{f.name}")
        z.writestr("batch/notes.txt", "not a photo")
    model = imgclf.load(tiny_run)
    got = model.predict(archive)
    names = [Path(r["path"]).name for r in got]
    assert names == sorted(names) and len(names) == 3 and all("label" in r for r in got)
    direct = model.predict(sorted((shapes / "disc").iterdir())[:1])[0]
    assert got[0]["label"] == direct["label"] and got[0]["confidence"] == pytest.approx(direct["confidence"])
    summary = imgclf.predict_folder(model, archive, tmp_path / "preds.csv", verbose=False)
    assert (summary["predicted"], summary["errors"]) == (3, 0)


def test_arrays_in_any_common_layout_get_the_files_answer_and_the_model_says_what_it_is(tiny_run):
    """A float image in [0, 1] or a torchvision 3xHxW tensor stopped in PIL ("Cannot handle this data
    type"); a loaded model printed as <...Model object at 0x...>."""
    import numpy as np
    import torch
    from PIL import Image

    disc = sorted((tiny_run.parent / "shapes" / "disc").iterdir())[0]
    model = imgclf.load(tiny_run)
    rgb = np.asarray(Image.open(disc).convert("RGB"))
    want = model.predict(disc)[0]
    for given in (rgb / 255.0, torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float() / 255):
        got = model.predict(given)[0]
        assert got["label"] == want["label"] and got["confidence"] == pytest.approx(want["confidence"], abs=0.02)
    assert repr(model).startswith(f"<imgclf model {str(tiny_run)!r}: disc, square, stripes; ")
    assert f"at {model.img_size} px, torch on cpu>" in repr(model)


def test_a_files_bytes_and_a_batch_array_are_images_too(tiny_run, tmp_path):
    """Bytes from a web request or an object store were refused ("cannot read an image from bytes"),
    and an N x H x W x 3 batch ("must be HxW, HxWx3 ...") although a list of the same images passed."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    disc, square = (sorted((tiny_run.parent / "shapes" / c).iterdir())[0] for c in ("disc", "square"))
    model = imgclf.load(tiny_run)
    want = [(r["label"], r["confidence"]) for r in model.predict([disc, square])]
    data = disc.read_bytes()
    with open(disc, "rb") as f:
        f.read(10)  # an open file read from its start, wherever it stands
        for given in (data, bytearray(data), io.BytesIO(data), f):
            (got,) = model.predict(given)
            assert got["label"] == want[0][0] and got["confidence"] == pytest.approx(want[0][1], abs=1e-6)
    batch = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in (disc, square)])
    for given in (batch, torch.from_numpy(batch).permute(0, 3, 1, 2)):  # N x H x W x 3 and N x 3 x H x W
        got = model.predict(given)
        assert [r["label"] for r in got] == [w[0] for w in want]
        assert [r["confidence"] for r in got] == pytest.approx([w[1] for w in want], abs=0.02)
    cut = model.predict([data[:200], b"", data])  # a broken upload is that image's error, not a crash
    assert [r.get("error", "").split(":")[0] for r in cut] == [
        "truncated or corrupt image",
        "not an image (cannot identify format)",
        "",
    ]
    assert imgclf.scan(data, verbose=False)[0]["present"] in (True, False)  # the detector reads bytes too


def test_a_list_file_names_the_images_as_with_ray(tiny_run, site, tmp_path):
    """`imgclf predict RUN todo.txt` answered "not an image" for the list, which `--ray` reads as
    one path a line: a .txt or .csv list is read the same way here, relative paths beside the list."""
    shapes = tiny_run.parent / "shapes"
    disc, square = (sorted((shapes / c).iterdir())[0] for c in ("disc", "square"))
    lists = shapes.parent / "lists"
    lists.mkdir(exist_ok=True)
    (lists / "todo.txt").write_text(
        f"# tonight's batch\n../shapes/disc/{disc.name}\n\n{square}\n{site}/disc/{disc.name}\n"
    )
    (lists / "todo.csv").write_text(f"id,path\n1,../shapes/disc/{disc.name}\n2,gone.png\n")
    model = imgclf.load(tiny_run)
    want = model.predict([disc, square])
    got = model.predict(lists / "todo.txt")
    assert [r["path"] for r in got] == [
        str(lists / ".." / "shapes" / "disc" / disc.name),
        str(square),
        f"{site}/disc/{disc.name}",
    ]
    assert [r["label"] for r in got] == [want[0]["label"], want[1]["label"], want[0]["label"]]
    out = tmp_path / "preds.csv"
    summary = imgclf.predict_folder(model, lists / "todo.csv", out, verbose=False)
    assert (summary["predicted"], summary["errors"]) == (1, 1)
    rows = list(csv.DictReader(open(out, newline="")))
    assert rows[0]["label"] == want[0]["label"] and rows[1]["path"].endswith("gone.png") and rows[1]["error"]


def test_an_image_on_standard_input_is_the_path_dash(tiny_run):
    """`curl URL | imgclf predict RUN -` reads the image's bytes from standard input."""
    from typer.testing import CliRunner

    from imgclf.cli import app

    disc = sorted((tiny_run.parent / "shapes" / "disc").iterdir())[0]
    want = imgclf.load(tiny_run).predict(disc)[0]
    r = CliRunner().invoke(app, ["predict", str(tiny_run), "-", "--format", "csv"], input=disc.read_bytes())
    assert r.exit_code == 0, r.output
    row = list(csv.DictReader(r.stdout.splitlines()))
    assert [(x["path"], x["label"]) for x in row] == [("-", want["label"])]
    r = CliRunner().invoke(app, ["predict", str(tiny_run), "-", "--out", "x.csv"], input=b"")
    assert "'-' reads one image from standard input, once, and not into --out" in str(r.exception)


def test_a_mistyped_path_among_several_is_said_before_any_image_is_worked_on(tmp_path):
    """faces identify and scan answered the photos before it, then stopped at the missing one."""
    from imgclf.inference.predictor import expand_inputs

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(UserError, match=f"no such file or folder: {tmp_path / 'typo.png'}"):
        next(iter(expand_inputs([tmp_path / "a.png", tmp_path / "typo.png"])))
    assert list(expand_inputs([tmp_path / "a.png", "https://example.com/b.jpg"])) == [
        str(tmp_path / "a.png"),
        "https://example.com/b.jpg",
    ]


def test_output_sent_to_a_file_in_a_legacy_code_page_is_written_not_a_traceback(tiny_run, tmp_path):
    """Windows encodes output sent to a file or pipe in its ANSI code page (cp1252): photos in a folder
    named 玫瑰 ended `imgclf predict RUN 玫瑰/ > out.csv` in a UnicodeEncodeError traceback."""
    folder = tmp_path / "玫瑰"
    folder.mkdir()
    shutil.copy(sorted((tiny_run.parent / "shapes" / "disc").iterdir())[0], folder / "ñ 1.png")
    env = {**cli_env(), "PYTHONIOENCODING": "cp1252"}
    argv = [*CLI, "predict", str(tiny_run), str(folder), "--format", "csv"]
    done = subprocess.run(argv, capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    rows = list(csv.DictReader(done.stdout.decode("utf-8").splitlines()))  # UTF-8: nothing lost
    assert rows[0]["path"] == str(folder / "ñ 1.png") and rows[0]["label"] and not rows[0]["error"]
