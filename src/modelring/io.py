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

from .adapters.bank import is_adapted
from .adapters.files import adapter_file_contents, restore_adapters
from .atomic import write_atomic
from .bank import get_state
from .convert import apply_specs, check_spec_fits
from .quantize import DEFAULT_CHUNK, RingEncoding, decode_ring, ring_encoding, stored_ring
from .spec import (ADAPTER_FORMAT, BANK, EXTRA, FILE_RING_PREFIX, FILE_SPEC_KEY, RingSpec, encode_spec, ring_specs,
                   spec_mismatch)

FILE_FORMAT = "modelring-1"
ENCODED_FORMAT = "modelring-2"  # some ring stored as small integers / sparse (modelring.quantize); readers of
# modelring-1 only refuse it by name instead of misreading it


def save(model: nn.Module, path: str | os.PathLike, *, metadata: dict[str, str] | None = None,
         ring_bits: int | None = None, ring_chunk: int | None = DEFAULT_CHUNK) -> Path:
    """Write a (converted or plain) model to one safetensors file.

    Args:
        model: the model; a converted one is stored as rings + free tensors + spec, never as dense weights; an
            adapted one (``modelring.adapt``) as its adapters only: rings, specs, the parameters it trains and a
            fingerprint of the base, never the base (``load(path, model=base)`` puts them back on the base).
        path: destination file (conventionally ``*.safetensors``); replaced atomically.
        metadata: extra string key/values to store beside the spec.
        ring_bits: store every ring quantized to 8 or 4 bits (``ring_chunk`` entries per float32 scale), leaving
            the model in memory as it is (use ``modelring.quantize.quantize_rings`` first to evaluate exactly what
            the file holds). None (default): rings that ``quantize_rings`` / ``prune_rings`` encoded are stored
            encoded, the others as float32.
        ring_chunk: entries per scale with ``ring_bits`` (None: one scale per ring).

    Returns:
        The path written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: folder {path.parent} does not exist")
    tensors, meta = _file_contents(model, metadata, ring_bits, ring_chunk)
    write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def load_adapter(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Put the adapters of an adapter file (``save`` of an adapted model) back on their base model.

    Args:
        path: the adapter file.
        model: the base model the adapters were trained on (plain, or already carrying other adapters); refused,
            unchanged, when its adapted weights differ from the base's (SHA-256 fingerprint in the file).

    Returns:
        ``model``, adapted, with the file's active adapter applied.
    """
    tensors, meta = read_file(path)
    if meta.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{path} is a model file, not an adapter file; read it with modelring.load")
    return restore_adapters(path, tensors, meta, model)


def saved_size(model: nn.Module, *, metadata: dict[str, str] | None = None, ring_bits: int | None = None,
               ring_chunk: int | None = DEFAULT_CHUNK) -> int:
    """Bytes ``save(model, path, ...)`` would write, computed in memory (nothing touches the disk)."""
    tensors, meta = _file_contents(model, metadata, ring_bits, ring_chunk)
    return len(save_bytes(tensors, metadata=meta))


def _file_contents(model: nn.Module, metadata: dict[str, str] | None, ring_bits: int | None = None,
                   ring_chunk: int | None = DEFAULT_CHUNK) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the metadata of a model file."""
    if is_adapted(model):
        if ring_bits is not None:
            raise ValueError("ring_bits is for converted models; an adapter file stores its rings as they are")
        return adapter_file_contents(model, metadata)
    state_dict, state = model.state_dict(), get_state(model)
    spec = state.spec() if state is not None else None
    if ring_bits is not None and state is None:
        raise ValueError("ring_bits quantizes rings, and this model has none (it is not converted)")
    for ring in spec["rings"] if spec else []:  # the file layout: modelring_<ring name>, spec in the metadata
        state_dict.pop(f"{BANK}.{ring['name']}.{EXTRA}")
        state_dict[FILE_RING_PREFIX + ring["name"]] = state_dict.pop(f"{BANK}.{ring['name']}.weight")
    encodings = _encode_rings(state, state_dict, ring_bits, ring_chunk) if state is not None else {}
    tensors, aliases = _dedupe_shared(state_dict)
    meta = {"format": ENCODED_FORMAT if encodings else FILE_FORMAT,
            "spec": json.dumps(spec, sort_keys=True) if spec is not None else "",
            "model": json.dumps(getattr(model, "modelring_model_spec", None), sort_keys=True),
            "aliases": json.dumps(aliases, sort_keys=True)}
    if encodings:
        meta["encodings"] = json.dumps(encodings, sort_keys=True)
    meta.update(metadata or {})
    return tensors, meta


def _encode_rings(state, state_dict: dict, ring_bits: int | None, ring_chunk: int | None) -> dict[str, dict]:
    """Replace each encoded ring's float tensor in ``state_dict`` by its parts (``modelring_<ring>.codes``, ...);
    returns ring name -> encoding (plain values) for the metadata."""
    encodings = {}
    for module in state.rings:
        encoding = ring_encoding(module)
        if ring_bits is not None:
            encoding = RingEncoding(bits=ring_bits, chunk=ring_chunk, sparse=bool(encoding and encoding.sparse))
        if encoding is None:
            continue
        name = module.spec.name
        del state_dict[FILE_RING_PREFIX + name]
        for part, tensor in stored_ring(module, encoding).items():
            state_dict[f"{FILE_RING_PREFIX}{name}.{part}"] = tensor
        encodings[name] = encoding.to_dict()
    return encodings


def _decode_rings(path, tensors: dict, meta: dict, rings: list[RingSpec] | None) -> dict[str, tuple]:
    """Turn every encoded ring of the file back into its float32 tensor (in ``tensors``), with clear errors for
    inconsistent parts; returns ring name -> (encoding, parts), kept on the loaded rings so that saving again
    stores the same bytes."""
    encodings = _json_field(path, meta, "encodings", dict) or {}
    if encodings and meta.get("format") != ENCODED_FORMAT:
        raise ValueError(f"{path}: encoded rings in a {meta.get('format')} file; the file is damaged or was edited")
    sizes = {ring.name: ring.size for ring in rings or []}
    out = {}
    for name, data in encodings.items():
        if name not in sizes:
            raise ValueError(f"{path}: an encoding for ring {name!r}, which the spec does not have")
        try:
            encoding = RingEncoding.from_dict(data)
            prefix = f"{FILE_RING_PREFIX}{name}."
            parts = {k[len(prefix):]: tensors.pop(k) for k in [k for k in tensors if k.startswith(prefix)]}
            tensors[FILE_RING_PREFIX + name] = decode_ring(parts, encoding, sizes[name])
        except ValueError as err:
            raise ValueError(f"{path}: ring {name!r} cannot be decoded: {err}; the file is damaged or was "
                             "edited") from None
        out[name] = (encoding, parts)
    return out


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
    if meta.get("format") not in (FILE_FORMAT, ENCODED_FORMAT, ADAPTER_FORMAT):
        raise ValueError(f"{path} is a safetensors file but not a modelring model file (format "
                         f"{meta.get('format')!r}, expected {FILE_FORMAT!r}, {ENCODED_FORMAT!r} or "
                         f"{ADAPTER_FORMAT!r}); save it with modelring.save")
    return tensors, meta


def load(path: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """Load a model written by ``save``.

    Every check runs before anything is built or changed: the spec (types, ranges, consistency), the rings (dtype,
    shape, finiteness), every other tensor (finite), and the model the metadata describes (built first on the meta
    device, so a file declaring a huge model costs no memory, then compared with the file's tensors and with the
    memory this machine has). ``model`` is changed only after every check passed.

    Args:
        path: the safetensors file.
        model: optional model to fill: an unconverted model of the same architecture (converted here with the
            file's spec) or an already converted one with the same spec. Without it, the model is rebuilt from
            the registry name and kwargs stored in the file. For an adapter file, the base model (required):
            see ``load_adapter``.

    Returns:
        The loaded model (on CPU), outputs identical to the saved one.

    Raises:
        ValueError: the file is unreadable, damaged, crafted, or does not fit ``model``.
    """
    tensors, meta = read_file(path)
    if meta.get("format") == ADAPTER_FORMAT:
        if model is None:
            raise ValueError(f"{path} is an adapter file: it holds no base weights; pass the base model it was "
                             "trained on, modelring.load(path, model=base)")
        return restore_adapters(path, tensors, meta, model)
    spec = _json_field(path, meta, "spec", dict)
    rings = _ring_specs(path, spec) if spec else None
    for name, original in (_json_field(path, meta, "aliases", dict) or {}).items():
        if original not in tensors:
            raise ValueError(f"{path}: alias {name!r} points to {original!r}, which the file does not hold")
        tensors[name] = tensors[original]
    encoded = _decode_rings(path, tensors, meta, rings)
    _check_tensors(path, tensors, rings or [])
    if model is None:
        model_spec = _json_field(path, meta, "model", dict)
        _check_buildable(path, model_spec, tensors, rings)
        model = _model_from_registry(path, model_spec)
    state = get_state(model)
    if rings is not None and state is None:
        _check_fits_unconverted(path, model, tensors, rings)  # before converting: a misfit changes nothing
        apply_specs(model, rings, init=False)
    elif rings is None and state is not None:
        raise ValueError(f"{path} holds a plain (unconverted) model but the given model is converted; pass an "
                         "unconverted model")
    elif rings is not None:
        _check_fits_converted(path, model, tensors, spec)
    else:
        _check_fits_plain(path, model, tensors)
    if spec is not None:
        tensors[FILE_SPEC_KEY] = encode_spec(spec)  # renamed to today's keys by the model's load pre-hook
    model.load_state_dict(tensors, strict=True)
    for module in get_state(model).rings if encoded else []:
        if module.spec.name in encoded:
            module.encoded = encoded[module.spec.name]
    return model


def _json_field(path, meta: dict, key: str, kind: type):
    """A JSON metadata field of the file (None when empty), of type ``kind``; clear errors for damaged JSON."""
    text = meta.get(key) or ""
    if not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{path}: the {key!r} metadata is not readable JSON ({type(err).__name__}); the file is "
                         "damaged or was edited") from None
    if value is not None and not isinstance(value, kind):
        raise ValueError(f"{path}: the {key!r} metadata must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _check_tensors(path, tensors: dict, rings: list[RingSpec]) -> None:
    """Rings: floating point, one dimension of the spec's size; every floating tensor finite."""
    for ring in rings:
        t = tensors.get(FILE_RING_PREFIX + ring.name)
        if t is None:
            raise ValueError(f"{path}: the spec has ring {ring.name!r} but the file holds no tensor for it")
        if not t.is_floating_point() or tuple(t.shape) != (ring.size,):
            raise ValueError(f"{path}: ring {ring.name!r} is {t.dtype} of shape {tuple(t.shape)}; the spec needs a "
                             f"floating-point vector of {ring.size:,} entries")
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"{path}: {', '.join(bad[:5])} hold NaN or Inf values; the model would compute nothing "
                         "useful (was it saved from a diverged run?)")


def _check_buildable(path, model_spec: dict | None, tensors: dict, rings: list[RingSpec] | None) -> None:
    """Build the model the metadata describes on the meta device (no memory), check it fits the file's tensors,
    and that the real model fits in this machine's memory."""
    from .models import create_model

    if not model_spec or not isinstance(model_spec.get("name"), str) or not isinstance(model_spec.get("kwargs"),
                                                                                        dict):
        raise ValueError(f"{path} does not say how to build its model (it was not made by create_model); "
                         "pass model=<an unconverted instance of the same architecture>")
    try:
        with torch.device("meta"):
            probe = create_model(model_spec["name"], **model_spec["kwargs"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: its metadata describes model {model_spec['name']!r} with "
                         f"{json.dumps(model_spec['kwargs'])[:200]}, which cannot be built: {err}") from None
    if rings is not None:
        _check_fits_unconverted(path, probe, tensors, rings)
    else:
        _check_fits_plain(path, probe, tensors)
    need = sum(t.numel() * t.element_size() for t in [*probe.parameters(), *probe.buffers()])
    have = _physical_memory()
    if have and need > have // 2:
        raise ValueError(f"{path}: the model it describes needs {need / 2**30:.1f} GiB, more than half of this "
                         f"machine's {have / 2**30:.1f} GiB; refusing to build it")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_fits_plain(path, model: nn.Module, tensors: dict) -> None:
    _compare(path, {k: tuple(v.shape) for k, v in model.state_dict().items()}, tensors)


def _check_fits_converted(path, model: nn.Module, tensors: dict, spec: dict) -> None:
    """A converted ``model`` takes the file only with the same ring specs and the same free tensors."""

    ours = get_state(model).spec()["rings"]
    if len(ours) != len(spec["rings"]):
        raise ValueError(f"{path} has {len(spec['rings'])} rings, the given model {len(ours)}")
    for theirs, mine in zip(spec["rings"], ours):
        problem = spec_mismatch(theirs, mine)
        if problem:
            raise ValueError(f"{path}: {problem}")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith(f"{BANK}.")}
    expected.update({FILE_RING_PREFIX + r["name"]: (r["size"],) for r in ours})
    _compare(path, expected, tensors)


def _check_fits_unconverted(path, model: nn.Module, tensors: dict, rings: list[RingSpec]) -> None:
    """The file's tensors are exactly what this model holds once converted with ``rings``, shapes included, and
    every generated segment is a parameter of this shape (checked by ``convert``'s own spec check)."""

    params = dict(model.named_parameters())
    try:
        for ring in rings:
            check_spec_fits(model, ring, params)
    except ValueError as err:
        raise ValueError(f"{path} does not fit this model: {err}") from None
    generated = [seg.name for ring in rings for seg in ring.segments]
    if len(set(generated)) != len(generated):
        raise ValueError(f"{path}: two rings generate the same weight; the file is damaged or was edited")
    replaced = {id(params[name]) for name in generated}  # every name of a generated tensor, tied ones too
    aliases = {n for n, p in model.named_parameters(remove_duplicate=False) if id(p) in replaced}
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in aliases}
    expected.update({FILE_RING_PREFIX + ring.name: (ring.size,) for ring in rings})
    _compare(path, expected, tensors)


def _compare(path, expected: dict, tensors: dict) -> None:
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        raise ValueError(f"{path} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"shape mismatch {wrong[:5]}; pass a model built like the saved one (same registry "
                         "name and kwargs), or omit model= to rebuild it from the file")


def _ring_specs(path, spec: dict) -> list[RingSpec]:
    return ring_specs(spec.get("rings"), str(path))


def _model_from_registry(path, model_spec: dict | None) -> nn.Module:
    from .models import create_model

    if not model_spec:
        raise ValueError(f"{path} does not say how to build its model (it was not made by create_model); "
                         "pass model=<an unconverted instance of the same architecture>")
    return create_model(model_spec["name"], **model_spec["kwargs"])
