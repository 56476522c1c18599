"""save / load: one safetensors file holding rings, free tensors and the full spec as JSON metadata.

No pickle anywhere: safetensors stores raw tensors, and the spec is JSON. The file keeps the layout it has always
had (rings as ``modelring_ring<i>``, the spec in the metadata), whatever the module layout of the day: loading
renames through the converted model's state_dict pre-hook. Files are written atomically
(temporary file in the same folder, fsync, rename), so a crash never leaves a half-written model file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_bytes
from safetensors.torch import save_file
from torch import nn

from .atomic import write_atomic
from .convert import (BANK, EXTRA, LEGACY_RING_PREFIX, LEGACY_SPEC_KEY, apply_specs, encode_spec, get_state)
from .generate import RingSpec

FILE_FORMAT = "modelring-1"


def save(model: nn.Module, path: str | os.PathLike, *, metadata: dict[str, str] | None = None) -> Path:
    """Write a (converted or plain) model to one safetensors file.

    Args:
        model: the model; a converted one is stored as rings + free tensors + spec, never as dense weights.
        path: destination file (conventionally ``*.safetensors``); replaced atomically.
        metadata: extra string key/values to store beside the spec.

    Returns:
        The path written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: folder {path.parent} does not exist")
    tensors, meta = _file_contents(model, metadata)
    write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def saved_size(model: nn.Module, *, metadata: dict[str, str] | None = None) -> int:
    """Bytes ``save(model, path)`` would write, computed in memory (nothing touches the disk)."""
    tensors, meta = _file_contents(model, metadata)
    return len(save_bytes(tensors, metadata=meta))


def _file_contents(model: nn.Module, metadata: dict[str, str] | None) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the metadata of a model file."""
    state_dict, state = model.state_dict(), get_state(model)
    spec = state.spec() if state is not None else None
    for ring in spec["rings"] if spec else []:  # the file layout: modelring_<ring name>, spec in the metadata
        state_dict.pop(f"{BANK}.{ring['name']}.{EXTRA}")
        state_dict[LEGACY_RING_PREFIX + ring["name"]] = state_dict.pop(f"{BANK}.{ring['name']}.weight")
    tensors, aliases = _dedupe_shared(state_dict)
    meta = {"format": FILE_FORMAT,
            "spec": json.dumps(spec, sort_keys=True) if spec is not None else "",
            "model": json.dumps(getattr(model, "modelring_model_spec", None), sort_keys=True),
            "aliases": json.dumps(aliases, sort_keys=True)}
    meta.update(metadata or {})
    return tensors, meta


def _dedupe_shared(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors refuses shared storage: keep one copy of tied tensors and record the other names."""
    seen, tensors, aliases = {}, {}, {}
    for name, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state_dict entry {name!r} is a {type(t).__name__}, not a tensor; cannot be saved "
                            "to safetensors")
        key = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride()) if t.numel() else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        tensors[name] = t.detach().cpu().contiguous().clone()
    return tensors, aliases


def read_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a modelring safetensors file, with clear errors for bad files."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, FIFO or device: reading it would fail or block
        raise ValueError(f"{path} is not a regular file; a model file is one safetensors file written by save")
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}") from err
    if meta.get("format") != FILE_FORMAT:
        raise ValueError(f"{path} is a safetensors file but not a modelring model file (format "
                         f"{meta.get('format')!r}, expected {FILE_FORMAT!r}); save it with modelring.save")
    return tensors, meta


def load(path: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """Load a model written by ``save``.

    Args:
        path: the safetensors file.
        model: optional model to fill: an unconverted model of the same architecture (converted here with the
            file's spec) or an already converted one with the same spec. Without it, the model is rebuilt from
            the registry name and kwargs stored in the file.

    Returns:
        The loaded model (on CPU), outputs identical to the saved one.
    """
    tensors, meta = read_file(path)
    spec = json.loads(meta["spec"]) if meta.get("spec") else None
    if model is None:
        model = _model_from_registry(path, json.loads(meta.get("model") or "null"))
    for name, original in json.loads(meta.get("aliases") or "{}").items():
        tensors[name] = tensors[original]
    if spec is not None and get_state(model) is None:
        rings = _ring_specs(path, spec)
        _check_fits_unconverted(path, model, tensors, rings)  # before converting: a misfit changes nothing
        apply_specs(model, rings, init=False)
    elif spec is None and get_state(model) is not None:
        raise ValueError(f"{path} holds a plain (unconverted) model but the given model is converted; pass an "
                         "unconverted model")
    if spec is not None:
        tensors[LEGACY_SPEC_KEY] = encode_spec(spec)  # renamed to today's keys by the model's load pre-hook
    model.load_state_dict(tensors, strict=True)
    return model


def _check_fits_unconverted(path, model: nn.Module, tensors: dict, rings: list[RingSpec]) -> None:
    """The file's tensors are exactly what this model holds once converted with ``rings``, shapes included."""
    generated = {seg.name for ring in rings for seg in ring.segments}
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in generated}
    expected.update({LEGACY_RING_PREFIX + ring.name: (ring.size,) for ring in rings})
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        raise ValueError(f"{path} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"shape mismatch {wrong[:5]}; pass a model built like the saved one (same registry "
                         "name and kwargs), or omit model= to rebuild it from the file")


def _ring_specs(path, spec: dict) -> list[RingSpec]:
    try:
        return [RingSpec.from_dict(ring) for ring in spec["rings"]]
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} holds an unreadable modelring spec ({err!r}); the file is damaged or was "
                         "edited") from err


def _model_from_registry(path, model_spec: dict | None) -> nn.Module:
    from .models import create_model

    if not model_spec:
        raise ValueError(f"{path} does not say how to build its model (it was not made by create_model); "
                         "pass model=<an unconverted instance of the same architecture>")
    return create_model(model_spec["name"], **model_spec["kwargs"])
