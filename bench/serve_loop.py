"""The service's side of continuous improvement, measured: what the prediction log costs in
throughput, and what a hot swap costs the clients being served while it happens.

    python bench/serve_loop.py                       # trains flowers5 (defaults, 1 epoch) first
    python bench/serve_loop.py --run runs/flowers5-1 --seconds 20

1. Logging: `imgclf serve RUN` without a log, with `--log-predictions` keeping images, and with
   `--log-images hash`, each loaded by wrk with 16 connections posting a flowers5 JPEG made unique
   per request (a counter appended after the JPEG's end, which decoders ignore), so every request
   is a new image for the log to hash, describe and store: the log's worst case.
2. Hot swap: `imgclf serve --registry R` under 16 httpx clients for --swap-seconds; the alias is
   promoted to version 2 (the same run registered again: a real load from disk and warm-up) a
   third of the way in and rolled back at two thirds. Printed: failed requests, how long after the
   promote the first version-2 answer came and the last version-1 answer went, p99 latency around
   the swaps against the steady state.

Model and image as bench/service.py (whose helpers this reuses); run it under the heavy-job lock:
`flock /tmp/imgclf-heavy.lock timeout 900 python bench/serve_loop.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402 - bench/service.py: Service, train_run, flower_image
import tables  # noqa: E402 - bench/tables.py: the table printed and written as CSV

CLIENTS = 16
# wrk.body is the JPEG; each request appends a 16-digit counter after it (ignored by decoders).
UNIQUE_BODY = (
    service.WRK_SCRIPT
    + """
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, wrk.body .. string.format("%016d", counter))
end
"""
)
MODES = {
    "no log": [],
    "log, images kept": ["--log-predictions", "{log}"],
    "log, hash only": ["--log-predictions", "{log}", "--log-images", "hash"],
}


class RegistryService(service.Service):
    """`imgclf serve --registry R` in a subprocess."""

    def __init__(self, registry: Path):
        super().__init__(registry, [])
        self.cmd = [sys.executable, "-m", "imgclf.cli", "serve", "--registry", str(registry), "--port", str(self.port)]


def wrk_unique(url: str, image: Path, seconds: float, work: Path) -> dict:
    script = work / "unique.lua"
    script.write_text(UNIQUE_BODY)
    cmd = [
        "wrk",
        "-t1",
        f"-c{CLIENTS}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        f"{url}/predict",
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, env={**os.environ, "BENCH_IMAGE": str(image), "BENCH_KEY": ""}
    ).stdout
    n, duration_us, non2xx, n5xx, sock, p50_us, p99_us = re.search(
        r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)", out
    ).groups()
    return {
        "rps": int(n) / (int(duration_us) / 1e6),
        "p50": float(p50_us) / 1000,
        "p99": float(p99_us) / 1000,
        "failed": int(non2xx) + int(sock),
    }


def logging_cost(run: Path, image: Path, seconds: float, work: Path) -> list[dict]:
    rows = []
    for mode, flags in MODES.items():
        log = work / f"log-{len(rows)}"
        with service.Service(run, [f.format(log=log) for f in flags]) as url:
            service.load_wrk(url, image, CLIENTS, 3, work, "")  # warm-up
            r = wrk_unique(url, image, seconds, work)
            metrics = httpx.get(f"{url}/metrics").text
            dropped = re.search(r"^imgclf_prediction_log_dropped_total ([\d.e+]+)", metrics, re.M)
            time.sleep(1)  # the writer thread finishes its queue
            logged = sum(1 for p in log.glob("predictions*.jsonl") for _ in p.open()) if log.is_dir() else 0
        r.update(
            mode=mode,
            dropped=int(float(dropped.group(1))) if dropped else 0,
            logged=logged,
            images=len(list((log / "images").rglob("*.*"))) if (log / "images").is_dir() else 0,
        )
        rows.append(r)
        print(
            f"  {mode:18s} {r['rps']:7.1f} req/s  p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms  failed {r['failed']}"
            f"  logged {r['logged']}  images {r['images']}  dropped {r['dropped']}",
            flush=True,
        )
    return rows


async def clients_through_swaps(url: str, body: bytes, seconds: float, registry: Path) -> dict:
    answers = []  # (sent at, answered at, status, version)
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        t0 = time.perf_counter()
        stop = t0 + seconds

        async def one_client():
            while time.perf_counter() < stop:
                sent = time.perf_counter()
                try:
                    r = await client.post(f"{url}/predict", content=body, headers={"Content-Type": "image/jpeg"})
                    answers.append(
                        (
                            sent - t0,
                            time.perf_counter() - t0,
                            r.status_code,
                            r.json().get("version") if r.status_code == 200 else None,
                        )
                    )
                except httpx.HTTPError:
                    answers.append((sent - t0, time.perf_counter() - t0, 0, None))

        async def operator():
            events = {}
            for at, action in ((seconds / 3, "promote"), (2 * seconds / 3, "rollback")):
                await asyncio.sleep(at - (time.perf_counter() - t0))
                events[action] = time.perf_counter() - t0
                args = ["promote", "2"] if action == "promote" else ["rollback"]
                await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "imgclf.cli", "registry", *args, "--registry", str(registry)],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    env={**os.environ, "PYTHONPATH": str(service.ROOT / "src")},
                )
            return events

        *_, events = await asyncio.gather(*(one_client() for _ in range(CLIENTS)), operator())
    return {"answers": answers, "events": events}


def swap_cost(run: Path, image: Path, seconds: float, work: Path) -> dict:
    registry = work / "registry"
    copy = work / "runs" / f"{run.name}-again"
    shutil.copytree(run, copy)
    env = {**os.environ, "PYTHONPATH": str(service.ROOT / "src")}
    for r, extra in ((run, ["--as", "production"]), (copy, [])):
        subprocess.run(
            [sys.executable, "-m", "imgclf.cli", "registry", "add", str(r), "--registry", str(registry), *extra],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    with RegistryService(registry) as url:
        service.load_wrk(url, image, CLIENTS, 3, work, "")  # warm-up
        out = asyncio.run(clients_through_swaps(url, image.read_bytes(), seconds, registry))
        info = httpx.get(f"{url}/model").json()
    answers, events = out["answers"], out["events"]
    promote, rollback = events["promote"], events["rollback"]
    first_v2 = min(a[1] for a in answers if a[3] == 2)
    last_v1 = max(a[1] for a in answers if a[3] == 1 and a[1] < rollback)
    first_v1_again = min(a[1] for a in answers if a[3] == 1 and a[1] > rollback)

    def p99(lo, hi):
        lat = [1000 * (a[1] - a[0]) for a in answers if lo <= a[0] < hi and a[2] == 200]
        return statistics.quantiles(lat, n=100)[98] if len(lat) > 2 else float("nan")

    result = {
        "requests": len(answers),
        "failed": sum(a[2] != 200 for a in answers),
        "rps": len(answers) / seconds,
        "promote_to_first_v2_s": first_v2 - promote,
        "promote_to_last_v1_s": last_v1 - promote,
        "rollback_to_first_v1_s": first_v1_again - rollback,
        "swaps": info["swaps"],
        "p99_steady_ms": p99(1, promote),
        "p99_swap_window_ms": p99(promote, promote + 3),
    }
    print("  " + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
    tables.save("swap", ["quantity", "value"], result.items())
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="run folder to serve [default: train flowers5 with the defaults]")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--image", help="JPEG to post [default: a flowers5 photo]")
    ap.add_argument("--seconds", type=float, default=15.0, help="per logging mode")
    ap.add_argument("--swap-seconds", type=float, default=24.0)
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgclf-bench-serveloop-"))
    try:
        run = Path(args.run) if args.run else service.train_run(work, args.epochs)
        image = Path(args.image) if args.image else service.flower_image(work)
        meta = json.loads((run / "model.json").read_text())
        print(
            f"model: {run.name} ({meta['architecture']['name']}, {meta['input']['size']} px); image: {image.name} "
            f"({image.stat().st_size} bytes); {CLIENTS} clients; {os.cpu_count()} CPU cores",
            flush=True,
        )
        rows = logging_cost(run, image, args.seconds, work)
        base = rows[0]["rps"]
        tables.emit(
            "logging",
            ["service", "req/s", "vs no log", "p50 ms", "p99 ms", "failed", "logged", "dropped"],
            [
                [
                    r["mode"],
                    tables.V(r["rps"], ".1f"),
                    tables.V(r["rps"] / base, "{:.2f}x"),
                    tables.V(r["p50"], ".1f"),
                    tables.V(r["p99"], ".1f"),
                    r["failed"],
                    r["logged"],
                    r["dropped"],
                ]
                for r in rows
            ],
            title="",
            align=["---"] + ["---:"] * 7,
        )
        print("\nhot swap under load:", flush=True)
        swap_cost(run, image, args.swap_seconds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
