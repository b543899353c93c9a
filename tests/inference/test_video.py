"""Video prediction: a video cut from held-out frames, with a person present at known times,
yields presence events at those times; per-frame CSV, annotated copy, every-Nth, bad sources."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import Camera, shared_archive, web_server
from PIL import Image

import imgclf
from imgclf.core.errors import UserError
from imgclf.inference.presence import Changes
from imgclf.inference.video import Presence, predict_video

cv2 = pytest.importorskip("cv2")

FPS = 10
# (person present?, seconds): the truth the events must match.
SCRIPT = [(False, 2), (True, 3), (False, 2), (True, 2)]
TRUE_EVENTS = [(2.0, 5.0), (7.0, 9.0)]
N_FRAMES = sum(s for _, s in SCRIPT) * FPS


def scene(rng: np.random.Generator, person: bool, size: int = 64) -> np.ndarray:
    """A noisy street-grey background; with `person`, a bright upright figure (head and body)."""
    img = rng.integers(40, 110, size=(size, size, 3)).astype(np.uint8)
    if person:
        cx, top = rng.integers(16, size - 16), rng.integers(6, 18)
        img[top + 12 : top + 40, cx - 5 : cx + 5] = [235, 225, 210]
        yy, xx = np.mgrid[:size, :size]
        img[(yy - (top + 6)) ** 2 + (xx - cx) ** 2 < 25] = [240, 220, 200]
    return img


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("video") / "frames"
    rng = np.random.default_rng(0)
    for cls, person in (("person", True), ("background", False)):
        (root / cls).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(scene(rng, person)).save(root / cls / f"{i:03d}.png")
    # group_by="none": pHash calls a few of these noise scenes near-duplicates, and the split is not
    # what this test is about; the model it trains must stay the same from one change to the next.
    run = imgclf.train(
        root, out=root.parent / "run", model="simple_cnn", img_size=32, epochs=8, group_by="none", verbose=False
    )
    return imgclf.load(run.path)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """Frames the model never saw (another seed), written as an mp4 at 10 fps."""
    path = tmp_path_factory.mktemp("video") / "street.mp4"
    rng = np.random.default_rng(123)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (64, 64))
    for person, seconds in SCRIPT:
        for _ in range(seconds * FPS):
            vw.write(cv2.cvtColor(scene(rng, person), cv2.COLOR_RGB2BGR))
    vw.release()
    return path


def assert_true_events(events: list[dict], tolerance: float = 0.5):
    assert len(events) == len(TRUE_EVENTS), events
    for e, (start, end) in zip(events, TRUE_EVENTS):
        assert abs(e["start_s"] - start) <= tolerance and abs(e["end_s"] - end) <= tolerance, events
        assert e["duration_s"] == pytest.approx(e["end_s"] - e["start_s"], abs=1e-3) and e["peak_confidence"] > 0.5


@pytest.mark.slow
def test_presence_events_csv_and_annotated_video(model, video, tmp_path):
    changes: list[dict] = []
    out = predict_video(
        model,
        video,
        out_csv=tmp_path / "frames.csv",
        out_video=tmp_path / "annotated.mp4",
        show_fps=False,
        on_change=changes.append,
    )
    assert out["frames"] == out["classified"] == N_FRAMES and out["source_fps"] == FPS and out["fps"] > 0
    assert_true_events(out["events"])
    # The callback heard each event open and close as the frames came, with the durations recorded.
    assert [c["kind"] for c in changes] == ["present", "gone"] * 2 and {c["label"] for c in changes} == {"person"}
    assert [c["duration_s"] for c in changes[1::2]] == pytest.approx([e["duration_s"] for e in out["events"]], abs=1e-3)
    saved = json.loads((tmp_path / "events.json").read_text())
    assert saved["events"] == out["events"] and saved["positive_class"] == "person"

    with open(tmp_path / "frames.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N_FRAMES and [int(r["frame"]) for r in rows] == list(range(N_FRAMES))
    assert set(rows[0]) >= {"time_s", "label", "confidence", "smoothed_label", "p_person", "p_background", "present"}
    assert float(rows[35]["time_s"]) == pytest.approx(3.5)
    assert rows[35]["label"] == "person" and rows[35]["present"] == "1" and rows[5]["present"] == "0"

    cap = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == N_FRAMES
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.slow
def test_every_second_frame_halves_the_work_and_keeps_the_events(model, video, tmp_path):
    out = predict_video(
        model, str(video), every=2, out_csv=tmp_path / "f.csv", events_path=tmp_path / "ev.json", show_fps=False
    )
    assert out["frames"] == N_FRAMES and out["classified"] == N_FRAMES // 2
    assert_true_events(out["events"])
    assert (tmp_path / "ev.json").is_file() and not (tmp_path / "events.json").exists()
    assert predict_video(model, video, max_frames=15, show_fps=False)["frames"] == 15


def test_single_noisy_frames_make_no_event():
    presence = Presence("person", 1, threshold=0.9, tau=0.5, min_event=0.5)
    p = [0.0] * 100
    for i in (10, 30, 31, 60):  # isolated false positives
        p[i] = 0.99
    for i in range(40, 55):  # a real 1.5 s presence with one dropped frame
        p[i] = 0.0 if i == 47 else 0.97
    for i, v in enumerate(p):
        presence.update(i / FPS, 1 / FPS, v)
    assert presence.finish() == [{"start_s": 4.0, "end_s": 5.5, "duration_s": 1.5, "peak_confidence": 0.97}]


def test_what_a_camera_announces_is_what_the_record_keeps():
    """A visit just under the shortest event (0.5 s) opened the track, so a camera said it came and went,
    and events.json left it out; now it opens only once its hits span 0.5 s."""
    from imgclf.inference.presence import Changes

    for seconds, recorded in ((0.45, 0), (0.8, 1)):
        presence, said = Presence("person", 1, threshold=0.5, tau=0.2, min_event=0.5), []
        changes = Changes(on_change=said.append)
        hits = round(seconds * FPS)
        for i in range(60):
            presence.update(i / FPS, 1 / FPS, 0.99 if 10 <= i < 10 + hits else 0.0)
            changes.track("person", presence, i / FPS)
        events = presence.finish()
        assert len(events) == recorded and [c["kind"] for c in said] == ["present", "gone"] * recorded


@pytest.mark.slow
def test_unusable_sources_are_user_errors(tiny_run, tmp_path):
    model = imgclf.load(tiny_run)  # any model: the source is refused before a frame is classified
    with pytest.raises(UserError, match="no such video file"):
        predict_video(model, tmp_path / "missing.mp4", show_fps=False)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(UserError, match="junk.mp4"):
        predict_video(model, junk, show_fps=False)
    with pytest.raises(UserError, match="camera 97"):
        predict_video(model, "97", show_fps=False)


@pytest.mark.slow
def test_an_av1_video_is_read_with_pyav_and_said_without_it(model, tmp_path, monkeypatch):
    """OpenCV's FFmpeg has no AV1 decoder: such a clip (a web download, a newer phone's) opened and gave
    no frame. PyAV (the video extra) reads it, with the frame times and events an mp4v clip gives;
    without PyAV, one line says what to install."""
    import sys

    av = pytest.importorskip("av")
    path = tmp_path / "street-av1.mp4"
    rng = np.random.default_rng(123)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libsvtav1", rate=FPS)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for person, seconds in SCRIPT:
            for _ in range(seconds * FPS):
                out.mux(stream.encode(av.VideoFrame.from_ndarray(scene(rng, person), format="rgb24")))
        out.mux(stream.encode())
    found = predict_video(model, path, show_fps=False)
    assert found["frames"] == found["classified"] == N_FRAMES and found["source_fps"] == FPS
    assert_true_events(found["events"])
    if cv2.VideoCapture(str(path)).read()[0]:
        return  # this OpenCV decodes AV1 itself: PyAV is not needed
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    with pytest.raises(UserError) as e:
        predict_video(model, path, show_fps=False)
    assert str(e.value) == (
        f"cannot decode {path}: OpenCV's FFmpeg has no decoder for its video (AV1); "
        "pip install 'imgclf[video]' (PyAV) reads it"
    )


def test_pyav_frames_are_turned_upright_as_the_file_says():
    """A phone's portrait clip is stored sideways with a display rotation: OpenCV turns its frames
    upright, and so does the PyAV reader (90: a quarter turn counter-clockwise)."""
    from imgclf.inference.video_av import AVCapture

    stored = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)  # 3 wide, 2 high

    class Frame:
        rotation = 90

        def to_ndarray(self, format):
            return stored

    class Stream:
        codec_context = type("Ctx", (), {"width": 3, "height": 2})
        average_rate, guessed_rate, thread_type = 10, 10, None

    class Container:
        streams = type("Streams", (), {"video": [Stream()]})

        def decode(self, stream):
            return iter([Frame(), Frame()])

        def close(self):
            pass

    cap = AVCapture(Container())
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT), cap.get(cv2.CAP_PROP_FPS)) == (
        2,
        3,
        10,
    )
    ok, frame = cap.read()
    assert ok and frame.shape == (3, 2, 3) and np.array_equal(frame, np.rot90(stored)) and frame.flags.c_contiguous
    assert frame[0, 0].tolist() == stored[0, 2].tolist()  # the top-right corner comes to the top left
    assert cap.grab() and not cap.grab() and cap.read() == (False, None)


@pytest.mark.slow
def test_cli_predicts_a_video(model, video, tmp_path):
    from typer.testing import CliRunner

    from imgclf.cli import app

    r = CliRunner().invoke(
        app,
        [
            "predict",
            str(model.path),
            str(video),
            "--every",
            "2",
            "--out",
            str(tmp_path / "frames.csv"),
            "--video-out",
            str(tmp_path / "a.mp4"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "fps processed" in r.stderr and "'person' event" in r.stderr
    assert len(json.loads((tmp_path / "events.json").read_text())["events"]) == 2
    assert (tmp_path / "a.mp4").is_file()


@pytest.mark.slow
def test_pedestrian_presence_on_real_daimler_crops(tmp_path_factory):
    """Real data: a model trained on Daimler pedestrian crops finds when pedestrians appear in a
    video cut from the held-out test crops (a different crop every frame)."""
    root = shared_archive("daimler-pedestrians", tmp_path_factory.mktemp("daimler")) / "daimler-pedestrians"
    subset = root.parent / "subset"  # 250 training crops per class keep the test quick
    for cls in ("human", "non-human"):
        (subset / cls).mkdir(parents=True)
        for f in sorted((root / "train" / cls).iterdir())[:250]:
            (subset / cls / f.name).symlink_to(f)
    # group_by="none": near-duplicate grouping of these small grey crops moves the split, and with it
    # this small model's false alarms (seeds 0 and 2 gave a spurious early event, 1-3 without it did not).
    run = imgclf.train(
        subset,
        out=root.parent / "run",
        model="simple_cnn",
        img_size=32,
        epochs=6,
        batch_size=32,
        group_by="none",
        verbose=False,
    )
    model = imgclf.load(run.path)
    assert model.meta.decision.positive_class == "human"
    crops = {cls: iter(sorted((root / "test" / cls).iterdir())) for cls in ("human", "non-human")}
    path = root.parent / "street.mp4"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (36, 72))
    for person, seconds in SCRIPT:
        for _ in range(seconds * FPS):
            crop = Image.open(next(crops["human" if person else "non-human"])).convert("RGB").resize((36, 72))
            vw.write(cv2.cvtColor(np.asarray(crop), cv2.COLOR_RGB2BGR))
    vw.release()
    assert_true_events(predict_video(model, path, show_fps=False)["events"])


def _segments(frames: list[tuple[str, float]], fps: float = FPS, min_segment: float = 0.5) -> list[tuple]:
    from imgclf.inference.presence import Segments

    seg = Segments(min_segment)
    for i, (label, conf) in enumerate(frames):
        seg.update(i / fps, 1 / fps, label, conf)
    return [(s["label"], s["start_s"], s["end_s"], s["mean_confidence"]) for s in seg.finish()]


def test_segments_absorb_flicker_and_keep_a_stretch_of_close_classes():
    a, b, c = ("cat", 0.9), ("dog", 0.6), ("fox", 0.5)
    # 2 s of cat, one odd frame, 2 s of cat: one segment; the odd frame's confidence is not cat's.
    assert _segments([a] * 20 + [b] + [a] * 20) == [("cat", 0.0, 4.1, 0.9)]
    # A second of dog and fox alternating (dog 0.6 s of it) is one dog segment, not ten rows.
    flicker = [b, b, c, b, c, b, c, b, c, b]
    assert _segments([a] * 20 + flicker + [a] * 20) == [
        ("cat", 0.0, 2.0, 0.9),
        ("dog", 2.0, 3.0, 0.6),
        ("cat", 3.0, 5.0, 0.9),
    ]
    # Short stretches at the start belong to the first segment; a short video is still one segment.
    assert _segments([b, c] + [a] * 10) == [("cat", 0.0, 1.2, 0.9)]
    assert _segments([b, c, b]) == [("dog", 0.0, 0.3, 0.6)]
    assert _segments([]) == []


class _ColourModel:
    """A stand-in with the model interface predict_video uses: a frame is red, green or blue by its
    mean colour (so the test is about the video path, not about training)."""

    classes = ["red", "green", "blue"]

    def preprocess(self, rgb):
        return rgb.reshape(-1, 3).mean(axis=0)

    def predict_proba(self, x):
        e = np.exp((x - x.max(axis=1, keepdims=True)) / 20.0)
        return e / e.sum(axis=1, keepdims=True)

    def answers(self, probs, top_k: int = 1):
        return [{"label": self.classes[int(p.argmax())], "confidence": float(p.max()), "top_k": []} for p in probs]


def test_a_video_of_many_classes_says_what_it_shows_and_when(tmp_path):
    path = tmp_path / "colours.mp4"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (32, 32))
    script = [((255, 0, 0), 20), ((0, 255, 0), 1), ((255, 0, 0), 5), ((0, 0, 255), 30), ((0, 255, 0), 10)]
    for rgb, n in script:
        for _ in range(n):
            vw.write(np.full((32, 32, 3), rgb[::-1], np.uint8))
    vw.release()
    changes: list[dict] = []
    out = predict_video(
        _ColourModel(), path, smooth=0, out_csv=tmp_path / "frames.csv", show_fps=False, on_change=changes.append
    )
    got = [(s["label"], s["start_s"], s["end_s"]) for s in out["segments"]]
    assert got == [("red", 0.0, 2.6), ("blue", 2.6, 5.6), ("green", 5.6, 6.6)]
    # A file's changes reach the callback too, in video time: each label once it has held half a second.
    assert [(c["label"], c["t_s"]) for c in changes] == [("red", 0.4), ("blue", 3.0), ("green", 6.0)]
    assert out["events"] is None and out["events_path"] == str(tmp_path / "events.json")
    saved = json.loads((tmp_path / "events.json").read_text())
    assert saved["segments"] == out["segments"] and saved["min_segment_s"] == 0.5
    # The same file at a web address is a file too, timed by its frame rate (not a live stream's clock).
    with web_server(tmp_path) as site:
        assert predict_video(_ColourModel(), f"{site}/colours.mp4", smooth=0)["segments"] == out["segments"]


@pytest.mark.slow
def test_cli_prints_the_segments_of_a_many_class_video(tiny_run, tmp_path):
    from helpers import cli

    path = tmp_path / "shapes.mp4"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (16, 16))
    for f in sorted((tiny_run.parent / "shapes" / "disc").iterdir())[:3]:
        for _ in range(FPS):
            vw.write(cv2.cvtColor(np.asarray(Image.open(f).convert("RGB")), cv2.COLOR_RGB2BGR))
    vw.release()
    r = cli("predict", tiny_run, path)
    assert r.returncode == 0, r.stderr
    assert "segment" in r.stderr and "mean confidence" in r.stderr and "30 frames" in r.stderr
    # Two videos: each in turn; but one --out cannot hold both, and videos do not mix with photos.
    (tmp_path / "again.mp4").write_bytes(path.read_bytes())
    r = cli("predict", tiny_run, path, tmp_path / "again.mp4")
    assert r.stderr.count("30 frames") == 2 and r.stderr.count("mean confidence") == 2
    r = cli("predict", tiny_run, path, tmp_path / "again.mp4", "--out", tmp_path / "f.csv", check=False)
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: --out, --video-out and --events name one video's files, and 2 videos were given: "
        "predict them one at a time"
    )
    r = cli("predict", tiny_run, path, tiny_run.parent / "shapes", check=False)
    assert r.returncode == 2 and r.stderr.strip().startswith(f"error: {path} is a video: predict videos apart")
    # A video's own outputs asked of images: said, not left unwritten without a word.
    r = cli("predict", tiny_run, tiny_run.parent / "shapes", "--video-out", tmp_path / "v.mp4", "--scan", check=False)
    assert r.returncode == 2 and r.stderr.startswith("error: --video-out and --scan are for a video (a file, camera")
    assert r.stderr.count("\n") == 1 and not (tmp_path / "v.mp4").exists()


def test_a_camera_says_each_change_as_it_happens(monkeypatch, capsys):
    import imgclf.inference.video as video

    script = [((255, 0, 0), 30), ((0, 255, 0), 2), ((0, 0, 255), 30)]  # red, a blink of green, blue
    frames = [np.full((32, 32, 3), rgb[::-1], np.uint8) for rgb, n in script for _ in range(n)]
    monkeypatch.setattr(video, "open_source", lambda source: (Camera(frames), True, "camera 0"))
    changes: list[dict] = []
    out = predict_video(_ColourModel(), 0, smooth=0, on_change=changes.append)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "now '" in ln]
    assert [(c["kind"], c["label"]) for c in changes] == [("label", "red"), ("label", "blue")]
    assert [c["t_s"] for c in changes] == pytest.approx([float(ln.split()[1].rstrip("s")) for ln in lines], abs=0.06)
    # One line a change, when the new label has held half a second (the blink is none), then the table.
    assert [ln.split("now ")[1].split()[0] for ln in lines] == ["'red'", "'blue'"], lines
    assert [s["label"] for s in out["segments"]] == ["red", "blue"]
    said = [float(ln.split()[1].rstrip("s")) for ln in lines]
    assert 0 < said[0] < said[1] and said[1] > out["segments"][1]["start_s"]  # each said once it had held


def test_presence_tracks_are_said_when_they_open_and_close():
    said: list[str] = []
    live, track = Changes(said.append), Presence("Grace", 0, 0.5, 0.3, 0.5)
    for i, p in enumerate([0.1] * 10 + [0.9] * 20 + [0.1] * 10):  # 10 fps: present from 1.0 s to 3.0 s
        t = i / 10
        track.update(t, 0.1, p)
        live.track("Grace", track, t)
    assert [ln.split(maxsplit=2)[2] for ln in said] == ["'Grace' present", "'Grace' gone after 2.0s"], said
    assert float(said[0].split()[1].rstrip("s")) >= 1.0  # said when the track opened, after its first frame


def test_a_damaged_video_is_one_line_without_ffmpeg_s_own(tmp_path):
    """FFmpeg logged "[mov,mp4,... @ 0x55..] moov atom not found" above imgclf's one-line error."""
    import subprocess
    import sys

    (tmp_path / "cut.mp4").write_bytes(b"")
    code = (
        "import sys\nfrom imgclf.core.errors import UserError\nfrom imgclf.inference.video_frames import open_source\n"
        "try:\n    open_source(sys.argv[1])\nexcept UserError as e:\n    print(e)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cut.mp4")], capture_output=True, text=True, env=env)
    assert r.stdout.startswith(f"cannot read {tmp_path / 'cut.mp4'} as a video") and r.stderr == "", r.stderr
