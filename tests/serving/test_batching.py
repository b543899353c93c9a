"""The micro-batcher's workers, with a stand-in model that records what ran at once (no network: the
service tests run the real one under load)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from imgclf.serving.batching import MicroBatcher, available_cores, forward_threads, forwards_at_once, model_threads


class Recorder:
    """predict_proba stand-in: each image's row is its own value; records the largest number of calls
    in flight at once and every batch's size."""

    def __init__(self, seconds: float):
        self.seconds, self.lock, self.now, self.most, self.batches = seconds, threading.Lock(), 0, 0, []

    def __call__(self, images: np.ndarray) -> np.ndarray:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.batches.append(len(images))
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        return images.reshape(len(images), -1)[:, :1].astype(np.float64)


def serve(workers: int, requests: int, seconds: float = 0.05) -> tuple[Recorder, list[np.ndarray], list]:
    model = Recorder(seconds)

    async def main():
        batcher = MicroBatcher(model, max_batch=4, max_wait_ms=2, max_queue=512, workers=workers)
        await batcher.start()
        sent = [np.full((1 + i % 3, 2, 2, 3), i, np.uint8) for i in range(requests)]
        try:
            # A request whose future is never resolved (a lost item) fails here instead of hanging.
            got = await asyncio.wait_for(asyncio.gather(*(batcher.submit(x) for x in sent)), 30)
        finally:
            await batcher.stop()
        return sent, got

    sent, got = asyncio.run(main())
    return model, sent, got


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_workers_run_that_many_forwards_at_once_and_each_request_gets_its_own_rows(workers):
    model, sent, got = serve(workers, requests=24)
    assert model.most == workers
    assert sum(model.batches) == sum(len(x) for x in sent) and max(model.batches) <= 4
    for x, rows in zip(sent, got):
        assert rows.shape == (len(x), 1) and (rows == x[0, 0, 0, 0]).all()


def test_a_cpu_runs_a_single_threaded_forward_per_core_and_a_gpu_one_batch_on_all():
    cores = available_cores()
    assert forward_threads(None, batching=True, cpu=True) == 1 and forwards_at_once(1, cpu=True) == cores
    assert forward_threads(None, batching=True, cpu=False) is None and forwards_at_once(None, cpu=False) == 1
    assert forward_threads(None, batching=False, cpu=False) == 1  # --no-batching: a forward per core
    assert forward_threads(2, batching=True, cpu=True) == 2 and forwards_at_once(2, cpu=True) == max(1, cores // 2)
    assert forwards_at_once(cores * 4, cpu=True) == 1
    assert forwards_at_once(None, cpu=True) == 1  # a model whose forward already takes every core


def test_the_workers_follow_the_threads_the_models_engine_has(tiny_onnx):
    """An ONNX Runtime session says its own threads: one (as `imgclf serve` opens it on a CPU) gives a
    worker per core; ORT's default, every core, one worker (an app built around such a model)."""
    import onnxruntime as ort

    from imgclf.core.device import ort_options

    for threads, workers in ((1, available_cores()), (0, 1)):
        opts = ort_options()
        opts.intra_op_num_threads = threads
        session = ort.InferenceSession(str(tiny_onnx), sess_options=opts, providers=["CPUExecutionProvider"])
        model = type("Served", (), {"session": session})()
        assert forwards_at_once(model_threads(model), cpu=True) == workers


@pytest.fixture
def tiny_onnx(tmp_path):
    """A one-node ONNX graph (a ReLU), written with the onnx package."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path
