"""What several test modules share: small real datasets, the tiny training settings, the command line
in a subprocess, hand-made run folders, a served run, headless Chromium and a prediction log.

A plain module (no tests, no fixtures: those live in conftest.py), importable from every folder under
tests/ because pyproject.toml puts tests/ on the path: `from helpers import cli, make_shapes_dataset`.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import http.server
import io
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgclf
import imgclf.workflows
from imgclf.core.files import write_json

# The real report function, kept before conftest's session fixture replaces it (conftest imports this
# module first).
REPORT_AFTER_TRAINING = imgclf.workflows._report_after_training
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"

# ---- training settings ------------------------------------------------------------------------------

# The smallest real training: conftest's session fixture `tiny_run` trains it once on
# make_shapes_dataset(..., **TINY_DATA); tests that need *a* model use that run.
TINY = {"model": "simple_cnn", "img_size": 16, "epochs": 1}
TINY_DATA = {"per_class": 10, "size": 16}
# A tune's search space, tiny but real: 16 px images, a narrow simple_cnn, 1-3 epochs per trial (about a second each).
TINY_SPACE = """
model: simple_cnn
width: {type: categorical, choices: [0.25, 0.5]}
lr: {type: float, low: 1e-3, high: 3e-2, log: true}
batch_size: 16
weight_decay: null
label_smoothing: {type: float, low: 0.0, high: 0.2}
augment_strength: {type: float, low: 0, high: 1}
epochs: {type: int, low: 1, high: 3}
img_size: 16
"""
# A narrow simple_cnn.
SMALL_CNN = {"model": "simple_cnn", "model_kwargs": {"width": 8, "depth": 2}}
# A narrow simple_cnn at 16 px, reproducible and without mixed precision: the lifecycle tests' runs.
FAST = {**SMALL_CNN, "img_size": 16, "amp": "off", "seed": 0}


# ---- data -------------------------------------------------------------------------------------------


def make_shapes_dataset(root: Path, per_class: int = 30, size: int = 24, seed: int = 0) -> Path:
    """Three visually distinct classes a small CNN learns in a few epochs:
    a bright square, a dark disc, horizontal stripes — on noisy backgrounds, random positions."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for cls in ("square", "disc", "stripes"):
        d = root / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(60, 120, size=(size, size, 3)).astype(np.float64)
            cx, cy, r = rng.integers(7, size - 7), rng.integers(7, size - 7), rng.integers(4, 7)
            if cls == "square":
                img[cy - r : cy + r, cx - r : cx + r] = [250, 240, 60]
            elif cls == "disc":
                img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = [10, 20, 200]
            else:
                img[(yy // 3) % 2 == 0] = [230, 230, 230]
            Image.fromarray(img.astype(np.uint8)).save(d / f"{cls}_{i:03d}.png")
    return root


def shared_archive(name: str, tmp_root: Path) -> Path:
    """Unpack ../shared/datasets/<name>.tar.gz once per session, or skip when it is absent."""
    import tarfile

    archive = SHARED / f"{name}.tar.gz"
    if not archive.exists():
        pytest.skip(f"{archive} not available")
    dest = tmp_root / name
    if not dest.exists():
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(dest)
    return dest


@contextmanager
def web_server(folder: Path):
    """http://127.0.0.1:PORT serving `folder`, a real HTTP server in a thread, for as long as the block runs."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Camera:
    """A stand-in for cv2.VideoCapture(0) (no camera here): the given BGR frames as a camera delivers
    them, in real time (`gap` seconds apart), reporting no frame rate or size, as many do; then nothing."""

    def __init__(self, frames: list[np.ndarray], gap: float = 0.02):
        self.frames, self.gap = list(frames), gap

    def get(self, prop) -> float:
        return 0.0

    def read(self):
        if not self.frames:
            return False, None
        time.sleep(self.gap)
        return True, self.frames.pop(0)

    def grab(self) -> bool:
        return self.read()[0]

    def release(self) -> None:
        self.frames = []


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk (valid CRC) claiming width x height pixels, and no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


# ---- training and runs ------------------------------------------------------------------------------


@contextmanager
def reporting():
    """Trainings inside write their report again: for module fixtures whose run's report a test
    reads (a marker cannot reach them)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(imgclf.workflows, "_report_after_training", REPORT_AFTER_TRAINING)
        yield


def make_run(root: Path, name: str, accuracy: float, images: list[tuple[Path, str, str]]) -> Path:
    """A run folder written by hand (model.json, metrics.json, splits.csv over real small files) for
    the registry, which never loads a network: no training needed."""
    run = root / "runs" / name
    run.mkdir(parents=True)
    write_json(run / "model.json", {"format": 1, "classes": ["cat", "dog"], "architecture": {"name": "resnet_fast"}})
    (run / "model.safetensors").write_bytes(b"not loaded by the registry")
    write_json(
        run / "metrics.json",
        {"accuracy": accuracy, "n": 2, "log_loss": 0.3, "macro_avg": {"f1-score": accuracy - 0.01}},
    )
    with open(run / "splits.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows([(str(p), label, split) for p, label, split in images])
    return run


def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, dataset) of a small simple_cnn on the shapes images that answers them right,
    trained once per test session: the serving tests all serve this run."""
    tmp = tmp_path_factory.getbasetemp() / "serve-run"
    if (tmp / "run" / "model.json").is_file():
        return tmp / "run", tmp / "shapes"
    data = make_shapes_dataset(tmp / "shapes", per_class=30)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGCLF_CACHE_DIR", str(tmp / "cache"))
        # The report is half the time of so small a run, and the service never reads it.
        mp.setattr(imgclf.workflows, "_report_after_training", lambda model, console: None)
        run = imgclf.train(data, out=tmp / "run", model="simple_cnn", epochs=6, img_size=24, verbose=False)
    return run.path, data


# ---- the command line -------------------------------------------------------------------------------

CLI = [sys.executable, "-m", "imgclf.cli"]


def cli_env() -> dict:
    """The environment a CLI subprocess runs in: the source tree first on its path, then whatever the
    caller's path holds (a GPU machine's packages in /tmp/site, bench/gpu_session.sh)."""
    path = [str(Path(imgclf.__file__).parents[1]), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def ctrl_c(args, ready, timeout: float = 180, cwd=None) -> subprocess.CompletedProcess:
    """`imgclf ARGS...` (in `cwd`) interrupted as a terminal's Ctrl-C does it: SIGINT to its whole
    process group (its own session here) once `ready()` holds. Returns its exit status and output."""
    env = cli_env()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:  # files: no pipe fills up
        proc = subprocess.Popen(
            [*CLI, *map(str, args)],
            stdout=out,
            stderr=err,
            text=True,
            env=env,
            cwd=cwd,
            start_new_session=True,
            # A shell that started the tests in the background ignores SIGINT, and its children with it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.05)
        assert proc.poll() is None, "the command ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())


@contextmanager
def another_writer(lock: Path, target: Path):
    """Another process holding imgclf's sole_writer lock on `target` (as a second `imgclf predict
    --out` or `scan --out` still running would) until the block ends; it is then killed, as a
    process stopped hard is, leaving its lock file behind."""
    code = (
        "import sys, time; from imgclf.core.files import sole_writer\n"
        "w = sole_writer(sys.argv[1], sys.argv[2], '--out'); print('held', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(lock), str(target)], stdout=subprocess.PIPE, text=True, env=cli_env()
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def cli(*args, check=True, **kw):
    """`imgclf ARGS...` in a new process; with `check`, a non-zero exit fails the test with its output.
    The process is forked from one that has imported torch and timm already (Zygote), which saves the
    ~4 s each fresh interpreter spends importing them; IMGCLF_TEST_FORK=0 runs `python -m imgclf.cli`."""
    env = cli_env()
    argv = [*CLI, *map(str, args)]
    p = Zygote.run(argv, env, **kw) if set(kw) <= {"cwd", "timeout"} else None
    if p is None:
        p = subprocess.run(argv, capture_output=True, text=True, env=env, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


# The forked child runs the CLI as `python -m imgclf.cli` would: its own working folder, environment,
# argv, stdin from /dev/null and stdout/stderr into files; an uncaught exception prints its traceback
# and exits 1; the exit handlers run. The parent imports only what the child would import anyway, and
# runs no torch op: no OpenMP pool exists at the fork.
_ZYGOTE = r"""
import atexit, json, os, sys, traceback
import numpy, PIL.Image, torch, timm, sklearn.linear_model, imgclf.cli, imgclf.api, imgclf.workflows
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, req["out"], os.O_WRONLY), (2, req["err"], os.O_WRONLY)):
                os.dup2(os.open(path, mode), fd)
            sys.argv = ["imgclf", *req["args"]]
            if not req.get("report", True):
                imgclf.workflows._report_after_training = lambda model, console: None
            try:
                imgclf.cli.main()
                code = 0
            except SystemExit as e:
                if e.code is None or isinstance(e.code, int):
                    code = e.code or 0
                else:
                    print(e.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            atexit._run_exitfuncs()
        finally:
            for f in (sys.stdout, sys.stderr):
                try:
                    f.flush()
                except Exception:
                    pass
            os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    print(json.dumps({"code": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}), flush=True)
"""
# What a process reads once, at start or as its libraries load: a call whose environment differs
# here from the zygote's own gets a fresh interpreter instead.
_AT_START = ("PYTHON", "OMP_", "MKL_", "OPENBLAS_", "CUDA_", "LD_", "KMP_", "TORCH")


class Zygote:
    proc: subprocess.Popen | None = None
    env: dict = {}
    lock = threading.Lock()  # one command at a time; a second thread's call gets a fresh interpreter

    @classmethod
    def run(cls, argv: list[str], env: dict, cwd=None, timeout: float | None = None):
        """The CLI's CompletedProcess, or None where a fresh interpreter must run it."""
        if os.environ.get("IMGCLF_TEST_FORK") == "0" or argv[:3] != CLI or not cls.lock.acquire(blocking=False):
            return None
        try:
            started = {k: v for k, v in env.items() if k.startswith(_AT_START)}
            if cls.proc is not None and (cls.proc.poll() is not None or started != cls.env):
                cls.stop()
            if cls.proc is None:
                # Unbuffered bytes: select() on the pipe then sees every reply line (a text wrapper's
                # read-ahead could hold the second line while select waits for it on the pipe).
                cls.proc = subprocess.Popen(
                    [sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0
                )
                cls.env = started
            with tempfile.NamedTemporaryFile("w+") as out, tempfile.NamedTemporaryFile("w+") as err:
                req = {"args": argv[3:], "env": env, "cwd": str(cwd or os.getcwd()), "out": out.name, "err": err.name}
                # The child writes the report after training where this test would (conftest): unmarked
                # tests skip its 2-4 s of plotting in the CLI too.
                req["report"] = imgclf.workflows._report_after_training is REPORT_AFTER_TRAINING
                cls.proc.stdin.write(json.dumps(req).encode() + b"\n")
                pid = cls._reply(None)["pid"]
                reply = cls._reply(timeout)
                if reply is None:
                    os.kill(pid, signal.SIGKILL)
                    cls._reply(None)
                    raise subprocess.TimeoutExpired(argv, timeout)
                return subprocess.CompletedProcess(argv, reply["code"], out.read(), err.read())
        finally:
            cls.lock.release()

    @classmethod
    def _reply(cls, timeout: float | None) -> dict | None:
        """The zygote's next reply line, or None when `timeout` seconds pass first."""
        import select

        deadline = None if timeout is None else time.monotonic() + timeout
        fd, line = cls.proc.stdout.fileno(), b""
        while not line.endswith(b"\n"):
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], wait)[0]:
                return None
            byte = os.read(fd, 1)
            if not byte:
                raise RuntimeError("the CLI zygote ended; run with IMGCLF_TEST_FORK=0 to see the command on its own")
            line += byte
        return json.loads(line)

    @classmethod
    def stop(cls) -> None:
        if cls.proc is not None:
            cls.proc.stdin.close()
            cls.proc.wait(timeout=60)
            cls.proc = None


# ---- headless Chromium ------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# What the page looks like to a reader: each section's height, and images that failed to decode.
PAGE_FACTS = """() => ({
  sections: Object.fromEntries([...document.querySelectorAll('section[id]')].map(s => [s.id, s.offsetHeight])),
  images: document.images.length,
  broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt || i.src.slice(0, 40)),
  height: document.body.scrollHeight,
})"""
# The API key the service's browser page is opened with.
PAGE_KEY = "page-key"


def render(html: Path, screenshot: Path) -> tuple[dict, list[str]]:
    """Open `html` in headless Chromium, take a full-page screenshot; (page facts, requests
    that left the file: any URL other than file: or data:)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (Debian package 'chromium'; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto(html.as_uri(), wait_until="load")
            facts = page.evaluate(PAGE_FACTS)
            full_screenshot(page, screenshot)
        finally:
            browser.close()
    return facts, outside


def full_screenshot(page, path: Path) -> None:
    """A full-page screenshot of `page` into `path`. Chromium now and then refuses one capture with
    "Unable to capture screenshot" and takes the same picture when asked again (a known transient,
    seen once in this suite's CI with both test processes busy): asked once more, after 250 ms."""
    try:
        page.screenshot(path=str(path), full_page=True)
    except Exception as e:  # playwright's Error; any other failure is raised as it came
        if "Unable to capture screenshot" not in str(e):
            raise
        page.wait_for_timeout(250)
        page.screenshot(path=str(path), full_page=True)


@contextlib.contextmanager
def chromium():
    """Headless Chromium through Playwright, or the test skipped saying what to install."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (Debian package 'chromium'; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str, width: int = 1100, height: int = 800, loaded: str = "3 classes"):
    """The service's page with the API key entered, as a user does at the prompt; `loaded`: what the
    model line says once /model has answered."""
    # The page's Content-Security-Policy forbids eval, which Playwright's wait_for_function needs.
    page = browser.new_page(viewport={"width": width, "height": height}, bypass_csp=True)
    page.goto(url)
    page.wait_for_selector("#key-input", state="visible")
    page.fill("#key-input", PAGE_KEY)
    page.press("#key-input", "Enter")
    page.wait_for_function(f"document.querySelector('#model-classes').textContent.includes('{loaded}')")
    return page


# ---- prediction logs --------------------------------------------------------------------------------


def serve_log(model, uploads: list[bytes], folder, spread_hours: float = 0.0):
    """Predict each upload and log it through imgclf.store.predlog exactly as `imgclf serve --log-predictions`
    does (record fields, image kept by hash, brightness of the model input); optionally spread the
    records' times over the last `spread_hours`."""
    from imgclf.store import predlog

    pixels = np.stack([model.preprocess(Image.open(io.BytesIO(b))) for b in uploads])
    probs = model.predict_proba(pixels)
    log = predlog.PredictionLog(folder)
    log.start()
    for data, x, p, a in zip(uploads, pixels, probs, model.answers(probs, 5)):
        rec = predlog.record(
            sha256=hashlib.sha256(data).hexdigest(),
            model=model.path.name,
            version=None,
            answer=a,
            probs=p,
            classes=model.classes,
            decision="argmax",
        )
        log.write(rec, data, x)
    log.close()
    if spread_hours:
        f = folder / "predictions.jsonl"
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        t0 = datetime.now(timezone.utc) - timedelta(hours=spread_hours)
        for i, r in enumerate(rows):
            t = t0 + timedelta(hours=spread_hours) * i / len(rows)
            r["time"] = t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def from_tests(tests: list[str], n: int, seed: int = 0, scale: float = 1.0) -> list[bytes]:
    """n uploads drawn (with replacement) from the test images, their pixels times `scale`."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(tests), size=n, replace=True)
    return [png(np.asarray(Image.open(tests[i]).convert("RGB"), float) * scale) for i in picks]
