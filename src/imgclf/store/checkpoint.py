"""Checkpoints as safetensors files: loading one never runs code (no pickle).

The resumable training state (model + optimizer + progress) goes into ONE file, written
atomically, so a kill at any moment leaves either the previous checkpoint or the new one.
Non-tensor state (step counts, hyper-parameters, progress) rides in the file's metadata as JSON.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from imgclf.core.errors import UserError
from imgclf.core.files import atomic_path

_TENSOR = "__tensor__"


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list by a reference, collecting tensors by key."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().clone(memory_format=torch.contiguous_format)  # own storage, dense layout
        return {_TENSOR: prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and _TENSOR in obj:
        return tensors[obj[_TENSOR]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except SafetensorError as e:
        raise UserError(
            f"{path} is not a readable safetensors file ({e}): it is truncated or damaged; "
            "restore it from a copy of the run"
        ) from None


def save_training_state(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    info: dict[str, Any],
    ema: torch.nn.Module | None = None,
) -> None:
    """Everything needed to continue: weights, optimizer moments, the weight average (`ema`) if
    any, and `info` (epoch, best, ...)."""
    tensors: dict[str, torch.Tensor] = {}
    model_sd = _flatten(model.state_dict(), "model", tensors)
    opt_sd = _flatten(optimizer.state_dict(), "optim", tensors)
    header = {"model": json.dumps(model_sd), "optim": json.dumps(opt_sd), "info": json.dumps(info)}
    if ema is not None:
        header["ema"] = json.dumps(_flatten(ema.state_dict(), "ema", tensors))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def load_training_state(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ema: torch.nn.Module | None = None
) -> dict[str, Any]:
    with _damaged_state(path):
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata()
        tensors = load_file(str(path))
        model.load_state_dict(_unflatten(json.loads(header["model"]), tensors))
        if ema is not None and "ema" in header:
            ema.load_state_dict(_unflatten(json.loads(header["ema"]), tensors))
        opt_sd = _unflatten(json.loads(header["optim"]), tensors)
        # JSON turns integer parameter ids into strings; the optimizer wants ints back.
        opt_sd["state"] = {int(k): v for k, v in opt_sd["state"].items()}
        optimizer.load_state_dict(opt_sd)
        _moments_shaped_like_params(optimizer)
        return json.loads(header["info"])


def _moments_shaped_like_params(optimizer: torch.optim.Optimizer) -> None:
    """The file holds contiguous moments; a channels_last parameter's moments were channels_last
    too. CUDA's fused Adam refuses moments whose strides differ from their parameter's ("must have
    same dtype, device, and layout": every `--resume` on a GPU failed so, 2026-11-26); give them
    the parameter's memory layout back (torch's own loading already gave its device and dtype)."""
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def read_training_info(path: str | Path) -> dict[str, Any]:
    """The progress `info` of a training state file, without loading its tensors (a resumed
    run needs the epoch first, to build the optimizer of that epoch's training stage)."""
    with _damaged_state(path):
        with safe_open(str(path), framework="pt") as f:
            info = json.loads(f.metadata()["info"])
        if not isinstance(info, dict) or not isinstance(info.get("epoch"), int):
            raise ValueError("no epoch count in its metadata")
        return info


@contextmanager
def _damaged_state(path: str | Path) -> Iterator[None]:
    """A truncated, garbage or edited training state is one line, not a traceback from deep in a loader."""
    try:
        yield
    except UserError:
        raise
    except (SafetensorError, KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise UserError(
            f"cannot resume from {path}: it is damaged ({type(e).__name__}: {str(e)[:200]}); "
            "delete it to start this run's training over"
        ) from None
