"""Run configuration: plain nested values with defaults, YAML recipes and dotted ``key=value`` overrides.

Every key is declared once, in ``config_keys.KEYS`` (default, rule, one-line doc); ``default_config()``,
``SCHEMA`` and ``describe_keys()`` are derived from it. Every key a recipe or an override may set exists in
``default_config()``; an unknown key is an error that names the closest known keys (a typo never passes
silently). Override values are parsed as YAML scalars, so ``train.epochs=3``, ``ring.size=0.05``,
``ring.size=2MB``, ``ring.exclude=[conv1.weight,fc.*]`` and ``ring.scale=null`` all do what they say.

``method`` picks how the model is trained, any method registered in ``modelring.methods``: ``rpg`` (the ``ring``
section), ``hashednets`` (the ``ring`` section, one ring per layer, every weight hashed to its own bucket),
``dense``, ``prune-global`` and ``prune-layerwise`` (the ``prune`` section). Keys of earlier releases are still
read, translated by ``resolve_legacy`` as ``compat.LEGACY`` declares, with a ``FutureWarning`` once per key per
process:
``ring.enabled: false`` -> ``method: dense``, ``prune.enabled: true`` -> ``method: prune-global``,
``pose.variant`` -> ``pose.reuse`` + ``method`` (so run folders and checkpoints written before stay usable).
"""
from __future__ import annotations

import copy
import difflib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import yaml

from .config_keys import KEYS, LEGACY, LegacyKey
from .sizes import size_problem  # noqa: F401 - also a public name of this module, as before
from .vocab import GROUPINGS
from .config_keys import POSE_VARIANTS, Rule  # noqa: F401 - public names of this module before config_keys

SCHEMA = {key.name: key.rule for key in KEYS}  # dotted key -> Rule, in default_config() order
# Legacy keys warned about in this process. Module state on purpose: a sweep or ``eval`` of old runs reads the
# same old keys from every saved config, and one warning per key says all there is to say; warnings' own
# once-per-location registry is cleared whenever any code changes the warning filters, so it cannot promise that.
_WARNED: set[str] = set()


def default_config() -> dict:
    """Every configurable key with its default value, derived from ``config_keys.KEYS``.

    Returns:
        A fresh nested dict (sections are dicts; ``method`` is top-level) that the caller may change.
    """
    config: dict = {}
    for key in KEYS:
        *sections, name = key.name.split(".")
        node = config
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = copy.deepcopy(key.default)
    return config


def describe_keys() -> Iterator[tuple[str, object, str, str]]:
    """Every configurable key, for documentation and the command line, in ``default_config()`` order.

    Returns:
        An iterator of (dotted key, default, what the key accepts in words, one-line doc).
    """
    for key in KEYS:
        yield key.name, copy.deepcopy(key.default), key.rule.describe(), key.doc


def load_config(path: str | Path | None, overrides: list[str] = ()) -> dict:
    """Defaults, updated by a YAML recipe (optional), then by ``key=value`` overrides.

    Raises:
        FileNotFoundError: the recipe does not exist.
        ValueError: unknown keys, malformed overrides or unreadable YAML.
    """
    config, legacy = default_config(), {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}; recipes live in configs/")
        try:
            recipe = safe_yaml(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path} is not valid YAML: {yaml_problem(err)}") from None
        if not isinstance(recipe, dict):
            raise ValueError(f"{path} must hold a mapping of sections (model, ring, data, train, out)")
        merge(config, recipe, source=str(path), legacy=legacy)
    for item in overrides:
        key, value = parse_override(item)
        if key in LEGACY:
            legacy[key] = value
        else:
            set_dotted(config, key, value)
    return resolve_legacy(config, legacy)


def upgrade(saved: dict) -> dict:
    """A whole config as stored by any release (``last.pt``, ``config.yaml``) in today's form: defaults for keys
    added since, legacy keys translated (``resolve_legacy``)."""
    config, legacy = default_config(), {}
    merge(config, saved, source="saved config", legacy=legacy)
    return resolve_legacy(config, legacy)


def resolve_legacy(config: dict, legacy: dict) -> dict:
    """Translate keys of earlier releases into today's keys, as ``compat.LEGACY`` declares, in place.

    Each legacy key read warns once per process (``FutureWarning``, not ``DeprecationWarning``: the people who
    wrote ``ring.enabled`` into a recipe run the ``modelring`` command, where Python hides DeprecationWarning).

    Args:
        config: a whole config in today's form (defaults filled in); updated in place.
        legacy: dotted legacy key -> value as read from a recipe, an override or a saved config.

    Returns:
        ``config``.

    Raises:
        ValueError: a legacy value that means nothing today (e.g. an unknown ``pose.variant``).
    """
    for old in LEGACY.values():  # declaration order: later keys win
        if old.name not in legacy:
            continue
        _warn_once(old)
        if old.task is not None and config["task"]["name"] != old.task:
            continue  # e.g. pose.variant, a default every old config carried, means nothing outside pose
        for key, value in _meaning(old, legacy[old.name]).items():
            set_dotted(config, key, value)
    return config


def _meaning(old: LegacyKey, stored) -> dict:
    value = old.read(stored) if old.read else stored
    try:
        return old.means[value]
    except (KeyError, TypeError):  # TypeError: an unhashable value, such as a list
        allowed = ", ".join(_spell(v) for v in old.means if v is not None)
        raise ValueError(f"{old.name} (an older key; today {old.modern}) must be one of {allowed}, "
                         f"got {stored!r}") from None


def _warn_once(old: LegacyKey) -> None:
    if old.name in _WARNED:
        return
    meanings = "; ".join(f"{_spell(value)} -> " + (", ".join(f"{k}: {_spell(v)}" for k, v in modern.items())
                                                   or "nothing")
                         for value, modern in old.means.items() if value is not None)
    scope = f" (for the {old.task} task only)" if old.task else ""
    warnings.warn(f"config key {old.name} is from an earlier release and is read as {old.modern}{scope}: "
                  f"{meanings}; write {old.modern} instead", FutureWarning, stacklevel=4)
    _WARNED.add(old.name)  # after warn: where warnings are errors, every read raises


def _spell(value) -> str:
    """A value as YAML writes it: true, false, null, dense."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _NoAliasLoader(yaml.SafeLoader):
    """yaml's SafeLoader without aliases: recipes never need them, and nested anchors (a "billion laughs") expand
    to an unbounded structure as soon as the config is copied or dumped."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"aliases (*{event.anchor}) are not allowed in modelring "
                                              "configs; write the value out", event.start_mark)
        return super().compose_node(parent, index)


class _NoAliasDumper(yaml.SafeDumper):
    """Writes a value shared by two keys twice instead of as an anchor and alias (which configs refuse)."""

    def ignore_aliases(self, data):
        return True


def safe_yaml(text: str):
    """Plain YAML values (no Python tags, no aliases)."""
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def merge(config: dict, update: dict, *, source: str, prefix: str = "", legacy: dict | None = None) -> None:
    """Update ``config`` in place with ``update``, refusing keys that ``config`` does not have (keys of earlier
    releases go to ``legacy`` when given)."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if legacy is not None and dotted in LEGACY:
            legacy[dotted] = value
            continue
        if key not in config:
            raise ValueError(f"{source}: unknown key {dotted!r}{_suggest(key, config)}")
        if isinstance(config[key], dict) and key != "kwargs":
            if not isinstance(value, dict):
                raise ValueError(f"{source}: {dotted!r} must be a mapping, got {value!r}")
            merge(config[key], value, source=source, prefix=dotted + ".", legacy=legacy)
        else:
            config[key] = value


def parse_override(item: str) -> tuple[str, object]:
    """``"a.b=value"`` -> ("a.b", YAML-parsed value)."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ValueError(f"override {item!r} must look like section.key=value, e.g. train.epochs=3")
    try:
        return key.strip(), parse_value(text)
    except yaml.YAMLError as err:
        raise ValueError(f"cannot parse the value of override {item!r}: {yaml_problem(err)}") from None


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (PyYAML's own message spans several lines)."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(err, "context", None)
    return f"{context + ': ' if context else ''}{problem}{where}"


def parse_value(text: str):
    """A command-line value as YAML: '3' -> 3, '0.05' -> 0.05, '2MB' -> '2MB', 'null' or '' -> None."""
    return safe_yaml(text) if text.strip() else None


def set_dotted(config: dict, key: str, value) -> None:
    """Set ``config['a']['b'] = value`` for key "a.b"; unknown keys are refused (``model.kwargs.*`` is free)."""
    node, parts = config, key.split(".")
    for i, part in enumerate(parts[:-1]):
        if part not in node or not isinstance(node[part], dict):
            raise ValueError(f"unknown key {'.'.join(parts[:i + 1])!r}{_suggest(part, node)}")
        node = node[part]
        if part == "kwargs":  # builder keyword arguments are the model's business
            node[parts[-1]] = value
            return
    if parts[-1] not in node:
        raise ValueError(f"unknown key {key!r}{_suggest(parts[-1], node)}")
    if isinstance(node[parts[-1]], dict) and parts[-1] != "kwargs":
        raise ValueError(f"{key!r} is a section; set one of its keys, e.g. {key}.{next(iter(node[parts[-1]]))}")
    node[parts[-1]] = value


def _suggest(key: str, known: dict) -> str:
    close = difflib.get_close_matches(key, list(known), n=3)
    return f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(known)}"


def dump_config(config: dict) -> str:
    """The config as YAML (what a run records beside its logs)."""
    return yaml.dump(copy.deepcopy(config), Dumper=_NoAliasDumper, sort_keys=False)


_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def config_problems(cfg: dict) -> list[str]:
    """One line per invalid value: ``key=value: expected ...``. Numbers written in scientific notation without a
    dot (``1e-9``, which YAML 1.1 reads as text) are turned into numbers first, in place."""
    problems = []
    for key, rule in SCHEMA.items():
        section, _, name = key.partition(".")
        holder, field = (cfg, section) if not name else (cfg.get(section, {}), name)
        value = holder.get(field)
        if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
            value = holder[field] = float(value)
        if not rule.accepts(value):
            problems.append(f"{key}={value!r}: expected {rule.describe()}")
    problems += _relational_problems(cfg)
    return problems


def _relational_problems(cfg: dict) -> list[str]:
    """Checks that involve more than one value, or the machine."""
    problems = []
    device = cfg["train"]["device"]
    if isinstance(device, str) and device:
        kind = device.split(":")[0]
        if kind not in ("cpu", "cuda", "mps") or (kind == "cuda" and not re.fullmatch(r"cuda(:\d+)?", device)):
            problems.append(f"train.device={device!r}: expected cpu, cuda, cuda:<index> or mps")
        elif kind == "cuda" and not _cuda_available():
            problems.append(f"train.device={device!r}: this torch build sees no CUDA device; use train.device=cpu")
    rings = cfg["ring"].get("rings")
    if isinstance(rings, str) and rings not in GROUPINGS:
        problems.append(f"ring.rings={rings!r}: expected null, {', '.join(GROUPINGS)} or a mapping glob -> size")
    init_std = cfg["ring"].get("init_std")
    if isinstance(init_std, str) and init_std != "global":
        problems.append(f"ring.init_std={init_std!r}: expected null, a positive number, or global")
    for key in ("ring.size", "prune.keep"):
        section, _, name = key.partition(".")
        problem = size_problem(cfg[section][name])
        if problem and not any(p.startswith(f"{key}=") for p in problems):
            problems.append(f"{key}={cfg[section][name]!r}: {problem}")
    pose = cfg.get("pose", {})
    if isinstance(pose.get("input_size"), int) and isinstance(pose.get("heatmap_size"), int) \
            and pose["heatmap_size"] > pose["input_size"]:
        problems.append(f"pose.heatmap_size={pose['heatmap_size']}: must not exceed pose.input_size="
                        f"{pose['input_size']}")
    return problems


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_values(cfg: dict) -> None:
    """Refuse, before anything runs, every value the schema (``SCHEMA``) does not accept: types, ranges,
    finiteness (a NaN lr trains nothing and says nothing), allowed names and data limits that would leave a split
    empty; one line per problem.

    Raises:
        ValueError: listing every problem.
    """
    problems = config_problems(cfg)
    if problems:
        raise ValueError(f"invalid config ({len(problems)} problem{'s' * (len(problems) > 1)}):\n  "
                         + "\n  ".join(problems))


def __getattr__(name: str):
    """``config.METHODS`` of earlier releases: the registered method names now (``modelring.methods``)."""
    if name == "METHODS":
        warnings.warn("modelring.config.METHODS is deprecated; use modelring.methods.list_methods()",
                      DeprecationWarning, stacklevel=2)
        from .config_keys import registered_methods

        return registered_methods()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
