"""The feedback inbox: content-named images in label folders, an append-only history, safe labels."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.core.errors import UserError
from imgclf.store import inbox


def _image(seed: int, fmt: str = "PNG") -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, size=(12, 16, 3)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _lines(box: Path) -> list[dict]:
    return [json.loads(x) for x in (box / "feedback.jsonl").read_text().splitlines()]


def test_add_names_by_content_and_keeps_history(tmp_path):
    box = tmp_path / "inbox"
    png, jpg = _image(1), _image(2, "JPEG")
    r = inbox.add(
        box,
        png,
        " rose ",
        classes=["rose", "tulip"],
        who="ann",
        previous={"label": "tulip", "confidence": 0.6, "model": "m", "version": 2},
        source="serve",
        prediction_id="abc-1",
    )
    assert r["action"] == "added" and r["label"] == "rose" and r["known_class"] is True
    assert (box / r["path"]).read_bytes() == png and r["path"].endswith(".png")
    assert Path(r["path"]).stem == r["sha256"]
    assert inbox.add(box, jpg, "rose", classes=None)["path"].endswith(".jpg")
    # The same image with the same label: stored once, but the feedback is still recorded.
    assert inbox.add(box, png, "rose", classes=["rose"])["action"] == "already there"
    assert len(list((box / "rose").iterdir())) == 2
    lines = _lines(box)
    assert len(lines) == 3 and lines[0]["previous"]["label"] == "tulip" and lines[0]["prediction_id"] == "abc-1"
    assert lines[1]["known_class"] is None
    assert set(lines[0]) == {
        "sha256",
        "path",
        "label",
        "known_class",
        "time",
        "who",
        "source",
        "previous",
        "prediction_id",
    }


def test_relabel_moves_the_file_and_latest_wins(tmp_path):
    box = tmp_path / "inbox"
    png = _image(3)
    inbox.add(box, png, "rose", classes=["rose", "tulip"])
    r = inbox.add(box, png, "lily", classes=["rose", "tulip"])
    assert r["action"] == "relabelled" and r["known_class"] is False
    assert (box / "lily" / Path(r["path"]).name).is_file()
    assert not (box / "rose").exists()  # an empty label folder would break training on the inbox
    [latest] = inbox.records(box)
    assert latest["label"] == "lily" and len(_lines(box)) == 2
    s = inbox.summary(box, classes=["rose", "tulip"])
    assert s["labels"] == {"lily": 1} and s["proposed"] == ["lily"] and s["feedback"] == 2


@pytest.mark.parametrize(
    "label",
    [
        "",
        "  ",
        "../x",
        "a/b",
        "a\\b",
        "unknown",
        "Unknown",
        ".hidden",
        ".",
        "..",
        "a\x00b",
        "tab\there",
        "x" * 101,
        "\U0001f339" * 26,
        "feedback.jsonl",
        "COM1",
        "nul.txt",
        "rose\u200b",
        "ro\u202ese",
        "a\u00a0b",
        "\u3164",
        "r\u043ese",
        "\uff52\uff4f\uff53\uff45",
        "rose.",
    ],
)
def test_unsafe_labels_are_refused(tmp_path, label):
    with pytest.raises(UserError, match="cannot be used"):
        inbox.add(tmp_path / "inbox", _image(4), label, classes=None)
    assert not (tmp_path / "inbox" / "feedback.jsonl").exists()


def test_labels_are_stored_in_one_form(tmp_path):
    # Decomposed "é" (e + combining accent, as macOS names folders) and the composed one: one class.
    assert inbox.check_label(" cafe\u0301 ") == inbox.check_label("caf\u00e9") == "caf\u00e9"
    assert inbox.check_label("K\u00f6ln") == "K\u00f6ln" and inbox.check_label("comet") == "comet"


def test_cli_import_refuses_a_bad_label_in_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from imgclf.cli import app

    src = tmp_path / "corrections"
    for label, seed in (("rose", 1), ("rose\u200b", 2), ("r\u043ese", 3)):
        (src / label).mkdir(parents=True)
        (src / label / "a.png").write_bytes(_image(seed))
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["feedback", "import", "corrections", "--inbox", "inbox"])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    lines = r.output.splitlines()
    said = [x for x in lines if x.startswith("  skipped")]
    assert len(said) == 2 and "1 added" in lines[-1] and "2 skipped" in lines[-1], r.output
    assert any("label 'rose\\u200b' cannot be used: it contains invisible" in x for x in said)
    assert all("\u200b" not in x for x in said) and any("rose\\u200b" in x.split(":")[0] for x in said), said
    assert any("cannot be used: it mixes look-alike alphabets (CYRILLIC, LATIN)" in x for x in said)
    assert sorted(p.name for p in (tmp_path / "inbox").iterdir() if p.is_dir()) == ["rose"]
    for flag in ("--inbox", "--registry"):  # `--inbox "$UNSET"` imported into (and listed) the current folder
        r = CliRunner().invoke(app, ["feedback", "import", "corrections", flag, ""])
        assert r.exit_code != 0 and isinstance(r.exception, UserError), r.output
        assert str(r.exception) == f"{flag} is empty; give a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrections", "inbox"]


def test_unreadable_bytes_are_refused(tmp_path):
    with pytest.raises(UserError, match="empty"):
        inbox.add(tmp_path, b"", "rose", classes=None)
    with pytest.raises(UserError, match="not a readable image"):
        inbox.add(tmp_path, b"hello, not an image", "rose", classes=None)
    with pytest.raises(UserError, match="not a readable image"):
        inbox.add(tmp_path, _image(5, "JPEG")[:200], "rose", classes=None)  # truncated


def test_a_jpeg_over_the_pixel_limit_is_kept_and_a_png_refused(tmp_path, monkeypatch):
    """A 200 MP phone photo (here: under a lowered PIL limit) is kept as the JPEG it is, since training
    decodes it at reduced scale; a PNG that size is refused, saying its size."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # PIL's open() refuses over 2,000 pixels
    photo = Image.fromarray(np.random.default_rng(7).integers(0, 255, (300, 400, 3), np.uint8))
    jpeg, png = io.BytesIO(), io.BytesIO()
    photo.save(jpeg, "JPEG")
    photo.save(png, "PNG")
    r = inbox.add(tmp_path, jpeg.getvalue(), "rose", classes=None)
    assert r["action"] == "added" and r["path"].endswith(".jpg")
    assert (tmp_path / r["path"]).read_bytes() == jpeg.getvalue()
    with pytest.raises(UserError, match=r"^the image is too large: .*120000 pixels"):
        inbox.add(tmp_path, png.getvalue(), "rose", classes=None)


def test_phone_photos_are_stored_under_their_own_extension(tmp_path):
    """An iPhone's HEIC upload (pillow-heif, the heic extra) and an AVIF one: stored as .heic and
    .avif, which training reads."""
    import imgclf.data.images  # noqa: F401  (registers pillow-heif's opener, as every imgclf reader does)

    for fmt in ("HEIF", "AVIF"):
        inbox.add(tmp_path, _image(7, fmt), "rose", classes=None)
    assert sorted(p.suffix for p in (tmp_path / "rose").iterdir()) == [".avif", ".heic"]


def test_a_format_training_does_not_list_is_stored_as_png(tmp_path):
    """Feedback on an ICO or PCX upload (the service predicts on whatever Pillow decodes) is kept, as a
    lossless PNG named by its own hash, rather than refused when someone labels it; a TGA stays a .tga."""
    for seed, fmt in enumerate(("ICO", "PCX", "TGA")):
        r = inbox.add(tmp_path, _image(seed, fmt), "rose", classes=None)
        assert r["action"] == "added"
        assert inbox.add(tmp_path, _image(seed, fmt), "rose", classes=None)["action"] == "already there"
        with Image.open(tmp_path / r["path"]) as img:  # every pixel as sent
            assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(Image.open(io.BytesIO(_image(seed)))))
    assert sorted(p.suffix for p in (tmp_path / "rose").iterdir()) == [".png", ".png", ".tga"]


def test_import_folder_reports_every_file(tmp_path):
    src = tmp_path / "corrections"
    for label, seeds in {"rose": [1, 2], "lily": [3], "unknown": [4]}.items():
        (src / label).mkdir(parents=True)
        for s in seeds:
            (src / label / f"img{s}.png").write_bytes(_image(s))
    (src / "rose" / "notes.txt").write_text("not an image")
    (src / "rose" / "deeper").mkdir()
    (src / "loose.png").write_bytes(_image(9))
    box = tmp_path / "inbox"
    out = inbox.import_folder(src, box, classes=["rose", "tulip"], who="bob")
    assert (out["added"], out["already there"], out["relabelled"]) == (3, 0, 0)
    assert out["labels"]["rose"]["added"] == 2 and out["proposed"] == ["lily"]
    reasons = {Path(s["path"]).name: s["reason"] for s in out["skipped"]}
    assert set(reasons) == {"unknown", "notes.txt", "deeper", "loose.png"}
    assert "reserved" in reasons["unknown"] and "not a readable image" in reasons["notes.txt"]
    again = inbox.import_folder(src, box, classes=["rose", "tulip"])
    assert (again["added"], again["already there"]) == (0, 3)
    assert all(r["who"] == "bob" and r["source"] == "import" for r in _lines(box)[:3])
    # The inbox is a class-folder dataset: only images, only label folders.
    from imgclf.data.discover import discover

    assert sorted(discover(box).classes) == ["lily", "rose"]


def test_concurrent_adds_lose_nothing(tmp_path):
    box = tmp_path / "inbox"
    images = [_image(100 + i) for i in range(8)]
    errors = []

    def worker(k):
        try:
            for i, data in enumerate(images):
                inbox.add(box, data, ["a", "b"][(i + k) % 2], classes=["a", "b"], who=f"t{k}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    lines = _lines(box)  # every line whole JSON
    assert len(lines) == 32
    files = [p for p in box.rglob("*") if p.is_file() and not p.name.startswith(".") and p.suffix == ".png"]
    assert len(files) == 8  # each image in exactly one label folder
    latest = {r["sha256"]: r["label"] for r in inbox.records(box)}
    assert {p.stem: p.parent.name for p in files} == latest


def test_cli_import_and_list_use_the_registry_classes(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from imgclf.cli import app
    from imgclf.core.files import write_json
    from imgclf.store import registry

    run = tmp_path / "runs" / "r1"  # a registry reads model.json and splits.csv only; nothing is loaded
    run.mkdir(parents=True)
    write_json(run / "model.json", {"format": 1, "classes": ["rose", "tulip"], "architecture": {"name": "simple_cnn"}})
    (run / "model.safetensors").write_bytes(b"unused")
    (run / "splits.csv").write_text("path,label,split\n")
    registry.add(run, tmp_path / "registry", alias="production")
    src = tmp_path / "corrections"
    for label, seed in (("rose", 1), ("lily", 2)):
        (src / label).mkdir(parents=True)
        (src / label / "a.jpg").write_bytes(_image(seed, "JPEG"))
    monkeypatch.chdir(tmp_path)  # ./registry is found without --registry
    r = CliRunner().invoke(app, ["feedback", "import", "corrections", "--who", "ann"])
    assert r.exit_code == 0, r.output
    assert "lily: 1 added" in r.output and "proposed new class" in r.output
    assert "2 added, 0 already there, 0 relabelled, 0 skipped -> inbox registry/inbox" in r.output
    r = CliRunner().invoke(app, ["feedback", "list", "--format", "json"])
    s = json.loads(r.output)
    assert s["labels"] == {"lily": 1, "rose": 1} and s["proposed"] == ["lily"] and s["inbox"] == "registry/inbox"
    assert {x["who"] for x in _lines(tmp_path / "registry" / "inbox")} == {"ann"}


def test_the_service_and_feedback_list_agree_on_the_inbox_for_any_run_folder(tmp_path, monkeypatch):
    """`imgclf serve model` (a run given --out model, not in runs/) put feedback in the folder above
    the user's project, where `imgclf feedback list` and `update --from-inbox` never looked."""
    from typer.testing import CliRunner

    from imgclf.cli import app

    monkeypatch.chdir(tmp_path)
    assert inbox.default_inbox(run=tmp_path / "proj" / "runs" / "x") == tmp_path / "proj" / "inbox"
    assert inbox.default_inbox(run="model") == Path("inbox")  # not tmp_path.parent / "inbox"
    assert inbox.locate()[0] == inbox.default_inbox(run="model")
    r = CliRunner().invoke(app, ["feedback", "list"])
    assert r.exit_code == 0 and f"the inbox {tmp_path / 'inbox'} is empty" in " ".join(r.output.split())
