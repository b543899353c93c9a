"""core.heap: a loop that keeps a little from each batch leaves freed memory resident under glibc;
trim_heap hands it back (the linear probe's pass over CIFAR-10 held 4 GB so)."""

import subprocess
import sys
import textwrap

import pytest

from imgclf.core import heap

# The probe's embedding loop in miniature: each batch's float temporaries, freed, between the stored
# maps and features it keeps. Run in a fresh process: the test worker's heap has its own history.
LOOP = textwrap.dedent(
    """
    import numpy as np, torch
    from imgclf.core.heap import trim_heap
    def anon():
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon")) << 10
    imgs = np.random.default_rng(0).integers(0, 255, (128, 96, 96, 3), np.uint8)
    mean = torch.full((1, 3, 1, 1), 0.5)
    start, kept = anon(), []
    for i in range(20):
        xb = torch.from_numpy(imgs[np.arange(128)]).permute(0, 3, 1, 2)
        x = np.ascontiguousarray(((xb.flip(3).float() / 255 - mean) / mean).numpy())
        out = np.ones((128, 40, 12, 12), np.float32)
        kept.append(torch.from_numpy(out).permute(0, 2, 3, 1).to(torch.float16).contiguous())
        kept.append(np.ones((128, 1280), np.float32))
        del xb, x, out
    grown = anon() - start
    print(sum(k.nbytes for k in kept), grown, trim_heap(), anon() - start)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator, /proc")
def test_trim_heap_hands_back_what_a_batch_loop_freed():
    out = subprocess.run([sys.executable, "-c", LOOP], capture_output=True, text=True, check=True).stdout.split()
    live, grown, trimmed, after = int(out[0]), int(out[1]), out[2] == "True", int(out[3])
    if not trimmed:
        pytest.skip("no glibc malloc_trim in this C library")
    if grown < 2 * live:
        pytest.skip(f"this allocator kept little freed memory here ({grown >> 20} MB for {live >> 20} MB live)")
    assert after <= live + (24 << 20), (live >> 20, grown >> 20, after >> 20)


def test_trimmer_trims_every_few_batches(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, "trim_heap", lambda: calls.append(1))
    trimmer = heap.Trimmer(every=8)
    for _ in range(17):
        trimmer.step()
    assert len(calls) == 2
