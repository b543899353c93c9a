"""Device and precision choice: CUDA, else the CPU; Apple's GPU (MPS) when asked for. torch is imported
where a function needs it: `imgclf predict` on an exported run answers without importing it (about
1.2 s of 2 s)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from imgclf.core.errors import UserError

if TYPE_CHECKING:
    import torch

# Device nodes a GPU PyTorch could use shows up as on Linux: NVIDIA, AMD (ROCm), WSL's GPU.
GPU_NODES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def pick_device(name: str = "auto") -> torch.device:
    import torch

    if name == "auto":
        # Not Apple's GPU unless asked (--device mps): the default recipe is built and measured for
        # CPUs (frozen lower layers, stored features, ONNX Runtime), published MPS training speeds for
        # networks of its size are no faster, no MPS path has run here, and MPS has no float64, which
        # the light-normalised texture model computes in. Ultralytics' auto device skips MPS too.
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu or auto")
    if dev.type == "mps" and not mps_available():
        raise UserError("--device mps asked for, but MPS is not available here; use --device cpu or auto")
    return dev


def on_cpu(name: str = "auto") -> bool:
    """Would pick_device(name) choose the CPU? Answered without importing torch where no CUDA GPU can be
    there (no GPU device node; a Mac's GPU is used only when asked); else by pick_device itself."""
    if name == "cpu":
        return True
    if name == "auto" and "torch" not in sys.modules and not any(os.path.exists(node) for node in GPU_NODES):
        return True
    return pick_device(name).type == "cpu"


def mps_available() -> bool:
    """Is Apple's GPU there for PyTorch (an Apple-silicon Mac)?"""
    import torch

    return torch.backends.mps.is_available()


def apple_gpu_note(name: str, device) -> str:
    """The line training prints where Apple's GPU is there and "auto" left it unused; else ''."""
    if name != "auto" or device.type != "cpu" or not mps_available():
        return ""
    return (
        "device=cpu: Apple's GPU (MPS) is not used by default: imgclf's default recipe is built and measured "
        "for CPUs, and on MPS it is not measured; --device mps to try it"
    )


def device_type(device) -> str:
    """ "cpu", "cuda", ... of a torch.device or its name ("cuda:0", a Predictor's device_name), read
    without torch."""
    return getattr(device, "type", str(device).split(":")[0])


def device_named(name: str = "auto"):
    """pick_device(name), but the string "cpu" where that is the CPU, answered without torch (on_cpu):
    what a torch-free engine (ONNX Runtime) needs to know before it runs."""
    return "cpu" if on_cpu(name) else pick_device(name)


def cpu_flags() -> set[str] | None:
    """The x86 CPU's feature flags from /proc/cpuinfo; None where they cannot be read (not Linux, Arm)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            line = next((line for line in f if line.startswith("flags")), None)
    except OSError:
        return None
    return set(line.split()) if line else None


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 dot products in hardware (AVX512-BF16 or AMX).

    Without them oneDNN emulates bf16 and autocast only costs time, so it stays off.
    """
    flags = cpu_flags() or set()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_lacks_vnni() -> bool:
    """True on an x86 CPU known to lack VNNI (AVX2 or AVX-512 without it): there ONNX Runtime multiplies
    uint8 by int8 with vpmaddubsw, whose 16-bit sums saturate on full-range int8 weights."""
    flags = cpu_flags()
    return flags is not None and "avx2" in flags and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def amp_dtype(device: torch.device, amp: str = "auto", training: bool = True) -> torch.dtype | None:
    """Autocast dtype, or None for full fp32. bf16 needs no loss scaler, so prefer it.

    On a CPU, bf16 is used for training only (measured 1.9x the images/s of fp32 for resnet_fast
    on a 2-core AVX512-BF16 machine); prediction on a CPU stays fp32 so results match exports.
    """
    import torch

    if amp == "off":
        return None
    if device.type == "cpu":
        if amp == "fp16":
            raise UserError("fp16 autocast is for GPUs; use --amp bf16 or off on a CPU")
        want = amp == "bf16" or (amp == "auto" and training and cpu_has_native_bf16())
        return torch.bfloat16 if want else None
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if amp == "bf16":
        raise UserError("bf16 autocast is not supported on this device; use --amp fp16 or off")
    return torch.float16 if device.type == "cuda" else None


def memory_budget(device: torch.device) -> int:
    """Bytes that training data kept resident may take: 40% of free GPU memory, a quarter of RAM."""
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.4)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(total * 0.25)


def set_threads(threads: int) -> None:
    """Intra-op threads for what runs networks in this process: torch's now if it is loaded, else
    OMP_NUM_THREADS, which torch reads when it starts and ort_options reads for every session opened
    after this (a service that answers in ONNX Runtime need not import torch to set them)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def threads_like_torch() -> int:
    """The threads torch computes with (it honours OMP_NUM_THREADS and torch.set_num_threads), for the
    other engines. Without torch loaded (a prediction in ONNX Runtime alone): OMP_NUM_THREADS as torch
    would read it, else 0, the engine's own default (its physical cores, as torch's default is)."""
    torch = sys.modules.get("torch")
    threads = os.environ.get("OMP_NUM_THREADS", "")
    return torch.get_num_threads() if torch else int(threads) if threads.isdigit() else 0


def ort_options():
    """ONNX Runtime session options for every session imgclf opens (inference, the probe's passes,
    the evaluation after training)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # As many threads as torch uses, so both backends compete equally for the cores; one inter-op
    # thread: these graphs are a single chain.
    opts.intra_op_num_threads = threads_like_torch()
    opts.inter_op_num_threads = 1
    # No spin-waiting: ORT's idle threads otherwise busy-wait for the next call and take the cores
    # from torch when both run in turn (the scan's network in torch, its verifier here).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # No memory pattern: ORT plans one per input shape over its first two runs (a new batch size, a
    # ragged last batch), which took 5-7 s a shape at batch 256 against ~1 s without (Lite0, 128 px).
    opts.enable_mem_pattern = False
    opts.log_severity_level = 3  # errors only: ORT's warnings are about its own internals
    return opts


# How the int8 graph's weights were quantized (its metadata): graphs without it are from before 7-bit
# weights, and x86 CPUs without VNNI compute them wrongly (check_int8_graph).
WEIGHTS_PROP, WEIGHTS_7BIT = "int8_weights", "7-bit range (reduce_range)"


def check_int8_graph(path, session) -> None:
    """Warn (one line) when `session` runs an int8 graph with full-range weights on a CPU without VNNI:
    there ONNX Runtime's uint8 x int8 products saturate and the answers can be wrong (2026-11-26: the
    person detector's int8 graph called 5 of 20 photos differently from fp32 on an AVX2 machine)."""
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("precision") == "int8" and WEIGHTS_PROP not in meta and cpu_lacks_vnni():
        print(
            f"warning: {path} was quantized with full-range int8 weights, which this CPU (no VNNI) computes "
            "with saturation: its answers can be wrong. Export it again with --int8 (imgclf makes 7-bit "
            "weights now), or use the fp32 backend",
            file=sys.stderr,
        )
