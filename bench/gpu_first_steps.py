"""Where a GPU's first training steps go: Lite0 at 224 px on random data, batch 128 (the sixth step a
short batch of 37, as an epoch's last is), each step timed alone.

    python bench/gpu_first_steps.py CHANNELS_LAST BF16 CUDNN_BENCHMARK [--csv-dir DIR]   (each 0 or 1)

One variant a process, so each pays its own first-use costs (bench/gpu_session.sh runs three).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables  # noqa: E402


def timed(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("channels_last", "bf16", "cudnn_benchmark"):
        ap.add_argument(name, choices=("0", "1"))
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    cl, amp, bench = (v == "1" for v in (args.channels_last, args.bf16, args.cudnn_benchmark))
    torch.backends.cudnn.benchmark = bench
    dev = torch.device("cuda")
    net = timm.create_model("tf_efficientnet_lite0", num_classes=5).to(dev)
    if cl:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    fmt = torch.channels_last if cl else torch.contiguous_format

    def step(bs: int) -> None:
        x = torch.randn(bs, 3, 224, 224, device=dev).contiguous(memory_format=fmt)
        y = torch.randint(0, 5, (bs,), device=dev)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    times = [timed(lambda i=i: step(37 if i == 5 else 128)) for i in range(12)]
    steady = statistics.median(times[1:5] + times[6:])  # the steps after the first of each shape
    tables.emit(
        "gpu_first_steps",
        ["channels_last", "bf16", "cudnn.benchmark", "first step s", "steady step s", "short batch s", "every step s"],
        [
            [
                cl,
                amp,
                bench,
                tables.V(times[0], ".2f"),
                tables.V(steady, ".3f"),
                tables.V(times[5], ".2f"),
                " ".join(f"{t:.2f}" for t in times),
            ]
        ],
        title=f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}:",
    )


if __name__ == "__main__":
    main()
