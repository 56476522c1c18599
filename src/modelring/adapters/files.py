"""Adapter files: the rings, their specs and a fingerprint of the base, never the base itself.

One safetensors file (format ``modelring-adapter-1``): tensor ``adapter.<name>.<ring>`` per ring (and
``adapter.<name>.<ring>.gain`` with trainable scales), ``trained.<parameter>`` for each model parameter an adapter
left trainable (``train=``), ``buffer.<name>`` for each of the model's persistent buffers (BatchNorm statistics: a
forward in train mode updates them, so without them the reloaded model would not be the trained one; they are small
next to the weights, and a model without buffers has none), and JSON metadata: per adapter its ring specs (the
``RingSpec`` codec of model files),
``trainable_scale``, the trained names and ``base_sha256`` (``base_fingerprint`` of the base it was trained on),
plus which adapter is active. ``modelring.io`` writes and reads it (``save`` / ``load`` / ``load_adapter``).
"""
from __future__ import annotations

import json

import torch
from torch import nn

from ..spec import ADAPTER_FORMAT, EXTRA, RingSpec, ring_specs
from .bank import base_fingerprint, get_adapters
from .verbs import apply_adapter, set_adapter


def adapter_file_contents(model: nn.Module, metadata: dict[str, str] | None = None
                          ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of an adapted model's adapter file."""
    bank = get_adapters(model)
    if bank.merged is not None:  # the bases hold W0 + ΔW: their fingerprint would name a base nobody has
        raise ValueError(f"cannot save an adapter file while adapter {bank.merged!r} is merged into the base "
                         "weights: call modelring.unmerge(model) first (or modelring.merge(model) to save the "
                         "plain merged model)")
    params = dict(model.named_parameters())
    tensors, adapters = {}, []
    for name, adapter in bank.adapters.items():
        for ring in adapter.rings:
            tensors[f"adapter.{name}.{ring.spec.name}"] = ring.weight
            if ring.gain is not None:
                tensors[f"adapter.{name}.{ring.spec.name}.gain"] = ring.gain
        for pname in adapter.trained:
            tensors[f"trained.{pname}"] = params[pname]
        adapters.append({"name": name, "rings": [spec.to_dict() for spec in adapter.specs],
                         "trainable_scale": adapter.trainable_scale, "trained": adapter.trained,
                         "base_sha256": base_fingerprint(params, adapter.specs)})
    tensors |= {f"buffer.{k}": t for k, t in model_buffers(model).items()}
    tensors = {k: t.detach().cpu().contiguous().clone() for k, t in tensors.items()}
    meta = {"format": ADAPTER_FORMAT, "adapters": json.dumps({"active": bank.active, "adapters": adapters},
                                                             sort_keys=True),
            "model": json.dumps(getattr(model, "modelring_model_spec", None), sort_keys=True)}
    meta.update(metadata or {})
    return tensors, meta


def restore_adapters(path, tensors: dict[str, torch.Tensor], meta: dict[str, str], model: nn.Module) -> nn.Module:
    """Re-create the file's adapters on ``model`` (the base), after checking everything: the specs, that the base
    has every adapted weight, its fingerprint, and the tensors. ``model`` changes only once every check passed."""
    entries, active = _adapter_entries(path, meta)
    params = dict(model.named_parameters())
    plans, expected = [], set()
    for entry in entries:
        specs = _specs(path, entry)
        missing = [seg.name for spec in specs for seg in spec.segments if seg.name not in params]
        if missing:
            raise ValueError(f"{path}: adapter {entry['name']!r} adapts {missing[:3]}, which this model does not "
                             "have; pass the base model the adapter was trained on")
        found = base_fingerprint(params, specs) if not _shape_misfit(params, specs) else "a different shape"
        if found != entry["base_sha256"]:
            raise ValueError(f"{path}: adapter {entry['name']!r} was trained on another base model: the base "
                             f"weights it adapts have SHA-256 {entry['base_sha256'][:16]}... in the file but "
                             f"{found[:16]}... here; load it onto the exact base it was trained on")
        expected |= _check_tensors(path, entry, specs, tensors, params)
        plans.append((entry, specs))
    buffers = model_buffers(model)
    _check_buffers(path, buffers, tensors)
    expected |= {f"buffer.{k}" for k in buffers}
    if set(tensors) != expected:
        raise ValueError(f"{path}: tensors {sorted(set(tensors) - expected)[:5]} are not part of its adapters; the "
                         "file is damaged or was edited")
    for entry, specs in plans:
        apply_adapter(model, specs, name=entry["name"], trainable_scale=entry["trainable_scale"],
                      trained=entry["trained"])
        rings = get_adapters(model).adapters[entry["name"]].rings
        with torch.no_grad():
            for ring in rings:
                ring.weight.copy_(tensors[f"adapter.{entry['name']}.{ring.spec.name}"])
                if ring.gain is not None:
                    ring.gain.copy_(tensors[f"adapter.{entry['name']}.{ring.spec.name}.gain"])
            for pname in entry["trained"]:
                params[pname].copy_(tensors[f"trained.{pname}"])
    with torch.no_grad():
        for name, buffer in buffers.items():
            buffer.copy_(tensors[f"buffer.{name}"])
    return set_adapter(model, active)


def model_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's persistent buffers by state_dict name (what a state_dict holds besides parameters)."""
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    return {k: v for k, v in model.state_dict(keep_vars=True).items() if k not in params and not k.endswith(EXTRA)}


def _check_buffers(path, buffers: dict, tensors: dict) -> None:
    for name, buffer in buffers.items():
        t = tensors.get(f"buffer.{name}")
        if t is None or t.dtype != buffer.dtype or t.shape != buffer.shape or (
                t.is_floating_point() and not torch.isfinite(t).all()):
            raise ValueError(f"{path}: buffer {name!r} of this model ({buffer.dtype}, {tuple(buffer.shape)}) is "
                             "missing from the file or differs in dtype or shape; pass the base model the adapter "
                             "was trained on")


def _adapter_entries(path, meta: dict) -> tuple[list[dict], str]:
    try:
        data = json.loads(meta.get("adapters") or "")
        entries, active = data["adapters"], data["active"]
        keys = {"name", "rings", "trainable_scale", "trained", "base_sha256"}
        ok = (isinstance(entries, list) and entries and all(isinstance(e, dict) and set(e) == keys for e in entries)
              and all(isinstance(e["trained"], list) and all(isinstance(n, str) for n in e["trained"])
                      and isinstance(e["trainable_scale"], bool) and isinstance(e["base_sha256"], str)
                      and isinstance(e["name"], str) and e["name"].isidentifier() for e in entries)
              and active in [e["name"] for e in entries])
    except (ValueError, KeyError, TypeError, RecursionError):
        ok = False
    if not ok:
        raise ValueError(f"{path}: the adapter metadata is unreadable; the file is damaged or was edited")
    if len({e["name"] for e in entries}) != len(entries):
        raise ValueError(f"{path}: two adapters share a name; the file is damaged or was edited")
    return entries, active


def _specs(path, entry: dict) -> list[RingSpec]:
    return ring_specs(entry.get("rings"), f"{path}: adapter {entry['name']!r}")


def _shape_misfit(params: dict, specs: list[RingSpec]) -> bool:
    return any(tuple(params[seg.name].shape) != seg.shape for spec in specs for seg in spec.segments)


def _check_tensors(path, entry: dict, specs: list[RingSpec], tensors: dict, params: dict) -> set[str]:
    """Every ring (and gain) a finite float vector of its size; every trained tensor the shape of its parameter.
    Returns the names of the tensors the adapter needs."""
    name = entry["name"]
    need = {f"adapter.{name}.{s.name}": (s.size,) for s in specs}
    if entry["trainable_scale"]:
        need |= {f"adapter.{name}.{s.name}.gain": (len(s.segments),) for s in specs}
    for pname in entry["trained"]:
        if pname not in params:
            raise ValueError(f"{path}: adapter {name!r} trained {pname!r}, which this model does not have")
        need[f"trained.{pname}"] = tuple(params[pname].shape)
    for key, shape in need.items():
        t = tensors.get(key)
        if t is None or not t.is_floating_point() or tuple(t.shape) != shape or not torch.isfinite(t).all():
            raise ValueError(f"{path}: {key} is missing, not a finite float tensor, or not of shape {shape}; the "
                             "file is damaged or was edited")
    return set(need)
