"""Run configuration: plain nested values with defaults, YAML recipes and dotted ``key=value`` overrides.

Every key a recipe or an override may set exists in ``default_config()``; an unknown key is an error that
names the closest known keys (a typo never passes silently). Override values are parsed as YAML scalars, so
``train.epochs=3``, ``ring.size=0.05``, ``ring.size=2MB``, ``ring.exclude=[conv1.weight,fc.*]`` and
``ring.scale=null`` all do what they say.

``method`` picks how the model is trained (``METHODS``): ``rpg`` (the ``ring`` section), ``hashednets`` (the
``ring`` section, one ring per layer, every weight hashed to its own bucket), ``dense``, ``prune-global`` and
``prune-layerwise`` (the ``prune`` section). Keys of earlier releases are still read, translated once by
``resolve_legacy``: ``ring.enabled: false`` -> ``method: dense``, ``prune.enabled: true`` -> ``method: prune-global``,
``pose.variant`` -> ``pose.reuse`` + ``method`` (so run folders and checkpoints written before stay usable).
"""
from __future__ import annotations

import copy
import difflib
import math
from pathlib import Path

import yaml

METHODS = ("dense", "rpg", "hashednets", "prune-global", "prune-layerwise")
# keys of earlier releases, read and translated by resolve_legacy (never written)
LEGACY_KEYS = {("ring", "enabled"), ("prune", "enabled"), ("pose", "variant")}
POSE_VARIANTS = {"independent": (False, "dense"), "reuse": (True, "dense"), "rpg": (False, "rpg"),
                 "reuse_rpg": (True, "rpg")}


def default_config() -> dict:
    """Every configurable key with its default value."""
    return {
        # task.name picks the task (modelring.tasks: classification, pose, multitask); one loop trains them all
        "task": {"name": "classification"},
        # how the model is trained: dense | rpg | hashednets | prune-global | prune-layerwise
        "method": "rpg",
        "model": {"name": "resnet20", "kwargs": {}},
        # rpg and hashednets: ring size and wiring
        "ring": {"size": 0.05, "seed": 0, "exclude": ["conv1.weight", "fc.*"], "include": None,
                 "scale": None, "block": 1, "permute": True, "reflect": True, "sampling": "even",
                 "wiring": "cached", "rings": None, "strict": True},
        "data": {"name": "fashion_mnist", "root": None, "pad_to": None, "channels": None, "augment": True,
                 "image_size": 224,
                 # val_size (classification): hold out this many training images (int) or this fraction (float),
                 # chosen by a fixed keyed permutation (the same for every seed); the run then trains on the rest
                 # and evaluates / selects on them (val_* columns), never on the test set
                 "train_limit": None, "test_limit": None, "val_size": None},
        "train": {"epochs": 3, "batch_size": 128, "eval_batch_size": 500, "lr": 0.1, "momentum": 0.9,
                  "nesterov": True, "weight_decay": 1e-4, "ring_weight_decay": None, "schedule": "cosine",
                  "warmup_epochs": 0.0, "decay_epochs": 45.0, "step_epochs": 30, "gamma": 0.1,
                  "label_smoothing": 0.0, "amp": False, "seed": 0, "threads": None, "channels_last": True,
                  "device": "cpu", "progress": True},
        "out": {"dir": "runs/default", "tensorboard": True},
        # prune-global / prune-layerwise: keep = count / fraction of the weights RPG would generate
        # (ring.include/exclude), pruned after fraction `at` of all training steps, the mask held afterwards
        "prune": {"keep": 0.05, "at": 0.5},
        # task sections: keys read only by their task's loop
        # (pose section: issue 5)
        "pose": {"reuse": False, "stages": 4, "new_norm": True, "input_size": 64, "heatmap_size": 16,
                 "sigma": 1.0, "rotation": 30.0, "scale_factor": 0.25, "flip": True, "box_margin": 1.25,
                 "flip_test": False, "threshold": 0.5, "optimizer": "adam"},
        # (multitask section: issue 6)
        "multitask": {"num_classes": 13, "test_areas": ["area_5a", "area_5b"], "depth_loss": "l1",
                      "normal_loss": "cosine", "depth_weight": 1.0, "normal_weight": 1.0, "semantic_weight": 0.5,
                      "select": "depth_rmse"},
    }


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
            raise ValueError(f"{path} is not valid YAML: {err}") from err
        if not isinstance(recipe, dict):
            raise ValueError(f"{path} must hold a mapping of sections (model, ring, data, train, out)")
        merge(config, recipe, source=str(path), legacy=legacy)
    for item in overrides:
        key, value = parse_override(item)
        if tuple(key.split(".")) in LEGACY_KEYS:
            legacy[tuple(key.split("."))] = value
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
    """Translate keys of earlier releases into ``method`` (and ``pose.reuse``); see the module docstring.

    The old pose switch decided on its own whether the model was converted, so for the pose task it wins over
    ``ring.enabled``; elsewhere ``pose.variant`` (a default every old config carried) means nothing.
    """
    if ("ring", "enabled") in legacy:
        config["method"] = "rpg" if legacy[("ring", "enabled")] else "dense"
    if legacy.get(("prune", "enabled")):
        config["method"] = "prune-global"
    variant = legacy.get(("pose", "variant"))
    if variant is not None and config["task"]["name"] == "pose":
        if variant not in POSE_VARIANTS:
            raise ValueError(f"pose.variant (an older key; today pose.reuse + method) must be one of "
                             f"{', '.join(POSE_VARIANTS)}, got {variant!r}")
        config["pose"]["reuse"], config["method"] = POSE_VARIANTS[variant]
    return config


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
        if legacy is not None and tuple(dotted.split(".")) in LEGACY_KEYS:
            legacy[tuple(dotted.split("."))] = value
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
        raise ValueError(f"cannot parse the value of override {item!r}: {err}") from err


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


def check_values(cfg: dict) -> None:
    """Refuse, before anything runs, NaN/Inf anywhere in the config (a NaN lr trains nothing and says nothing)
    and data limits that would leave a split empty or silently cut it (``data.test_limit=-1``)."""
    bad = [f"{section}.{key}={value}" for section, values in cfg.items() if isinstance(values, dict)
           for key, value in values.items() if isinstance(value, float) and not math.isfinite(value)]
    if bad:
        raise ValueError(f"non-finite config value(s): {', '.join(bad)}; every number must be finite")
    if cfg["method"] not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {cfg['method']!r}")
    epochs = cfg["train"]["epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"train.epochs must be a whole number of epochs >= 1, got {epochs!r}")
    for key in ("train_limit", "test_limit"):
        limit = cfg["data"][key]
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"data.{key} must be a positive number of samples or null (all), got {limit!r}")
