"""Web service throughput: micro-batched `imgclf serve` versus the naive one-request-one-forward
endpoint (`imgclf serve --no-batching`), same model, same image, same machine, same run.

    python bench/service.py --run runs/flowers5-1                 # 1, 8, 32 clients, 20 s each
    python bench/service.py --run runs/flowers5-1 --long 60       # + 60 s at 32 clients: no 5xx, bad requests get 4xx

Each mode runs in its own `imgclf serve` subprocess on a free localhost port. The load generator is
wrk (a real HTTP benchmarking tool; `apt-get install wrk`) posting the image as raw JPEG bytes with
keep-alive connections; without wrk, an asyncio + httpx generator in this file (slower, so it
measures less precisely; the table says which ran). Without --run, flowers5 is unpacked from
../shared/datasets and trained with the defaults (resnet_fast, 96 px) for --epochs epochs: the
architecture and input size are what `imgclf train` picks, only the accuracy is lower.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from pathlib import Path

import httpx
import tables  # bench/tables.py: the table written as CSV

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "image/jpeg"
local f = assert(io.open(os.getenv("BENCH_IMAGE"), "rb"))
wrk.body = f:read("*all")
f:close()
if os.getenv("BENCH_KEY") ~= "" then wrk.headers["X-API-Key"] = os.getenv("BENCH_KEY") end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) n5xx = 0 end
function response(status, headers, body) if status >= 500 then n5xx = n5xx + 1 end end
function done(summary, latency, requests)
  local n5 = 0
  for _, t in ipairs(threads) do n5 = n5 + t:get("n5xx") end
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %f %f\\n", summary.requests, summary.duration, e.status, n5,
                         e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


# Two baselines, both one forward per request. "naive" is `imgclf serve --no-batching`, written
# well: everything else as the batched service, forwards in a pool of one thread per core with one
# torch thread each. "tutorial" is the endpoint as the FastAPI tutorials write it (TUTORIAL_APP: a
# sync route, so FastAPI runs it in its 40-thread pool, torch with its default threads).
MODES = {"batched": [], "naive": ["--no-batching"], "tutorial": None}
LABELS = {
    "batched": "micro-batched (`imgclf serve`)",
    "naive": "naive, tuned (`imgclf serve --no-batching`)",
    "tutorial": "naive, FastAPI-tutorial style",
}
TUTORIAL_APP = """
import io, sys
import imgclf, uvicorn
from fastapi import Body, FastAPI
from PIL import Image

model = imgclf.load(sys.argv[1])
app = FastAPI()

@app.get("/health")
def health():
    return {"status": "ok"}

@app.post("/predict")
def predict(image: bytes = Body(..., media_type="image/jpeg")):
    x = model.preprocess(Image.open(io.BytesIO(image)))
    return {"results": model.answers(model.predict_proba(x[None]), 5)}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="run folder to serve [default: train flowers5 with the defaults]")
    ap.add_argument("--epochs", type=int, default=3, help="epochs when training the run here")
    ap.add_argument("--image", help="image to post [default: a flowers5 photo]")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=20.0, help="per mode and client count")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument(
        "--long",
        type=float,
        default=0.0,
        help="then this many seconds at the highest client count "
        "on the batched service, with bad requests sent beside it; fails on any 5xx",
    )
    ap.add_argument("--generator", choices=["auto", "wrk", "httpx"], default="auto")
    ap.add_argument("--serve-args", default="", help="extra `imgclf serve` options for both modes")
    tables.add_csv_dir(ap)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="imgclf-bench-service-"))
    try:
        run = Path(args.run) if args.run else train_run(work, args.epochs)
        image = Path(args.image) if args.image else flower_image(work)
        clients = [int(c) for c in args.clients.split(",")]
        generator = ("wrk" if shutil.which("wrk") else "httpx") if args.generator == "auto" else args.generator
        meta = json.loads((run / "model.json").read_text())
        print(
            f"model: {run.name} ({meta['architecture']['name']}, {meta['input']['size']} px, tta {meta.get('tta')}); "
            f"image: {image.name} ({image.stat().st_size} bytes); load generator: {generator}; "
            f"{args.seconds:g} s per point; {os.cpu_count()} CPU cores",
            flush=True,
        )
        rows = []
        (work / "tutorial_app.py").write_text(TUTORIAL_APP)
        for mode, flags in MODES.items():
            server = (
                Service(run, flags + args.serve_args.split())
                if flags is not None
                else Service(run, [], script=work / "tutorial_app.py")
            )
            with server as url:
                load(generator, url, image, max(clients), args.warmup, work)  # warm-up, not recorded
                for c in clients:
                    before = batch_totals(url)
                    r = load(generator, url, image, c, args.seconds, work)
                    after = batch_totals(url)
                    r.update(
                        mode=mode,
                        clients=c,
                        mean_batch=(after[0] - before[0]) / (after[1] - before[1]) if after[1] > before[1] else 1.0,
                    )
                    rows.append(r)
                    print(
                        f"  {mode:8s} {c:3d} clients: {r['rps']:7.1f} req/s  p50 {r['p50']:7.1f} ms  "
                        f"p99 {r['p99']:7.1f} ms  non-2xx {r['non2xx']}  5xx {r['n5xx']}",
                        flush=True,
                    )
        print_table(rows, generator, clients)
        if args.long:
            sys.exit(0 if long_run(run, generator, image, max(clients), args.long, work, args.serve_args) else 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


class Service:
    """`imgclf serve RUN` in a subprocess on a free port; the URL once /health answers."""

    def __init__(self, run: Path, flags: list[str], script: Path | None = None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.cmd = (
            [sys.executable, str(script), str(run), str(self.port)]
            if script
            else [sys.executable, "-m", "imgclf.cli", "serve", str(run), "--port", str(self.port), *flags]
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> str:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"imgclf serve exited: {self.proc.stderr.read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit("imgclf serve did not come up in 120 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def load(generator: str, url: str, image: Path, clients: int, seconds: float, work: Path, key: str = "") -> dict:
    if generator == "wrk":
        return load_wrk(url, image, clients, seconds, work, key)
    return asyncio.run(load_httpx(url, image.read_bytes(), clients, seconds, key))


def load_wrk(url: str, image: Path, clients: int, seconds: float, work: Path, key: str) -> dict:
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    # One wrk thread: it keeps 32 connections busy with little CPU, leaving the cores to the service.
    cmd = [
        "wrk",
        "-t1",
        f"-c{clients}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        f"{url}/predict",
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "BENCH_IMAGE": str(image), "BENCH_KEY": key}, check=True
    ).stdout
    found = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)", out)
    if not found:
        raise SystemExit(f"could not read wrk's output:\n{out}")
    n, duration_us, non2xx, n5xx, socket_errors, p50_us, p99_us = found.groups()
    return {
        "requests": int(n),
        "rps": int(n) / (int(duration_us) / 1e6),
        "p50": float(p50_us) / 1000,
        "p99": float(p99_us) / 1000,
        "non2xx": int(non2xx),
        "n5xx": int(n5xx),
        "socket_errors": int(socket_errors),
    }


async def load_httpx(url: str, body: bytes, clients: int, seconds: float, key: str) -> dict:
    """`clients` connections, each posting the image again as soon as its answer is in."""
    latencies, statuses = [], []
    headers = {"Content-Type": "image/jpeg", **({"X-API-Key": key} if key else {})}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        stop = time.perf_counter() + seconds

        async def one_client():
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = await client.post(f"{url}/predict", content=body, headers=headers)
                latencies.append((time.perf_counter() - t) * 1000)
                statuses.append(r.status_code)

        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "requests": len(statuses),
        "rps": len(statuses) / elapsed,
        "p50": q[49],
        "p99": q[98],
        "non2xx": sum(s >= 300 for s in statuses),
        "n5xx": sum(s >= 500 for s in statuses),
        "socket_errors": 0,
    }


def batch_totals(url: str) -> tuple[float, float]:
    """(images, forward passes) so far, from the service's own /metrics ((0, 0) without one)."""
    r = httpx.get(f"{url}/metrics")
    if r.status_code != 200:
        return 0.0, 0.0
    text = r.text
    total = float(re.search(r"^imgclf_batch_size_sum ([\d.e+]+)", text, re.M).group(1))
    count = float(re.search(r"^imgclf_batch_size_count ([\d.e+]+)", text, re.M).group(1))
    return total, count


def print_table(rows: list[dict], generator: str, clients: list[int]) -> None:
    # Printed here (the load generator's name follows the header), written as CSV by tables.save.
    header = ["service", "clients", "req/s", "p50 ms", "p99 ms", "non-2xx", "mean batch"]
    print(f"\n{tables.markdown_row(header)}  (load generator: {generator})")
    print("|---|---:|---:|---:|---:|---:|---:|")
    cells = [
        [
            LABELS[r["mode"]],
            r["clients"],
            tables.V(r["rps"], ".1f"),
            tables.V(r["p50"], ".1f"),
            tables.V(r["p99"], ".1f"),
            r["non2xx"] + r["socket_errors"],
            tables.V(r["mean_batch"], ".1f"),
        ]
        for r in rows
    ]
    for row in cells:
        print(tables.markdown_row(row))
    tables.save("throughput", header, cells)
    by = {(r["mode"], r["clients"]): r["rps"] for r in rows}
    for c in clients:
        best = max((m for m in MODES if m != "batched"), key=lambda m: by[(m, c)])
        ratios = ", ".join(f"{by[('batched', c)] / by[(m, c)]:.2f}x over {LABELS[m]}" for m in MODES if m != "batched")
        print(f"speed-up at {c} client(s): {ratios}; against the faster one: {by[('batched', c)] / by[(best, c)]:.2f}x")


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk (valid CRC) claiming width x height RGB pixels, and no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def bad_requests(url: str, image: bytes, key: str) -> dict[str, int]:
    """Each malformed request the service must refuse with a 4xx, and the status it got."""
    auth = {"X-API-Key": key}
    cases = {
        "malformed multipart": dict(
            content=b"--xyz\r\nnot a part", headers={**auth, "Content-Type": "multipart/form-data; boundary=xyz"}
        ),
        "0-byte file": dict(files={"file": ("empty.png", b"", "image/png")}, headers=auth),
        "text file": dict(files={"file": ("notes.txt", b"just some text\n" * 20, "text/plain")}, headers=auth),
        "50,000 x 50,000 PNG header": dict(
            files={"file": ("big.png", png_header(50_000, 50_000), "image/png")}, headers=auth
        ),
        "huge upload (30 MB)": dict(content=b"\0" * (30 * 2**20), headers={**auth, "Content-Type": "image/jpeg"}),
        "wrong API key": dict(content=image, headers={"X-API-Key": "wrong", "Content-Type": "image/jpeg"}),
    }
    return {name: httpx.post(f"{url}/predict", timeout=60, **kw).status_code for name, kw in cases.items()}


def long_run(run: Path, generator: str, image: Path, clients: int, seconds: float, work: Path, serve_args: str) -> bool:
    """The acceptance check: `clients` clients for `seconds` on the batched service (with an API key),
    bad requests sent beside them; every well-formed request must get 200, every bad one a 4xx, and a
    good request afterwards 200 again."""
    key = "bench-key"
    with Service(run, ["--api-key", key, *serve_args.split()]) as url:
        results: dict = {}
        worker = threading.Thread(
            target=lambda: results.update(load(generator, url, image, clients, seconds, work, key))
        )
        worker.start()
        time.sleep(min(5.0, seconds / 4))
        statuses = bad_requests(url, image.read_bytes(), key)
        worker.join()
        after = httpx.post(
            f"{url}/predict",
            content=image.read_bytes(),
            timeout=30,
            headers={"Content-Type": "image/jpeg", "X-API-Key": key},
        ).status_code
    ok = (
        results["non2xx"] == 0
        and results["n5xx"] == 0
        and results["socket_errors"] == 0
        and after == 200
        and all(400 <= s < 500 for s in statuses.values())
    )
    print(
        f"\n{seconds:g} s at {clients} clients (batched, API key on): {results['requests']} requests, "
        f"{results['rps']:.1f} req/s, p50 {results['p50']:.1f} ms, p99 {results['p99']:.1f} ms, "
        f"non-2xx {results['non2xx']}, 5xx {results['n5xx']}, socket errors {results['socket_errors']}"
    )
    for name, status in statuses.items():
        print(f"  {name}: {status}")
    print(f"  a good request afterwards: {after}\n{'PASS' if ok else 'FAIL'}")
    return ok


def train_run(work: Path, epochs: int) -> Path:
    archive = SHARED / "flowers5.tar.gz"
    if not archive.exists():
        raise SystemExit(f"{archive} not found: give --run RUN")
    with tarfile.open(archive) as tf:
        tf.extractall(work, filter="data")
    out = work / "flowers5-run"
    print(f"training flowers5 with the defaults for {epochs} epochs -> {out}", flush=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "imgclf.cli",
            "train",
            str(work / "flowers5"),
            "--epochs",
            str(epochs),
            "--out",
            str(out),
        ],
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.DEVNULL,
    )
    return out


def flower_image(work: Path) -> Path:
    """A real 128 px JPEG photo from flowers5 (the first rose), or any JPEG unpacked for training."""
    found = sorted(work.glob("flowers5/rose/*.jpg"))
    if not found:
        archive = SHARED / "flowers5.tar.gz"
        if not archive.exists():
            raise SystemExit("no image to post: give --image FILE")
        with tarfile.open(archive) as tf:
            member = next(m for m in tf.getmembers() if m.name.endswith(".jpg") and "/rose/" in m.name)
            tf.extractall(work, members=[member], filter="data")
        found = sorted(work.glob("flowers5/rose/*.jpg"))
    return found[0]


if __name__ == "__main__":
    main()
