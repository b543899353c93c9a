"""Where a GPU's first training steps go: Lite0 at 224 px on random data, batch 128 (the sixth step a
short batch of 37, as an epoch's last is), each step timed alone.

    python bench/gpu_first_steps.py CHANNELS_LAST BF16 CUDNN_BENCHMARK   (each 0 or 1)

One variant a process, so each pays its own first-use costs (bench/gpu_session.sh runs three).
"""

import sys
import time

import timm
import torch


def timed(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    cl, amp, bench = (a == "1" for a in sys.argv[1:4])
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
    print(
        f"channels_last={cl} bf16={amp} benchmark={bench}: steps " + " ".join(f"{s:.2f}" for s in times),
        flush=True,
    )


if __name__ == "__main__":
    main()
