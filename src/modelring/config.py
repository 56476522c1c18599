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
import re
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
                 "wiring": "cached", "rings": None, "strict": True, "init_std": None},
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
                  "device": "cpu", "progress": True,
                  # write each stage's share of the energy sent into the rings, sum (c_i dL/dW)^2, per epoch
                  # (grad_energy.jsonl; stages from the model's stage_names())
                  "grad_energy": False},
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
            raise ValueError(f"{path} is not valid YAML: {yaml_problem(err)}") from None
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


class Rule:
    """What one config key accepts: kinds (``int``, ``number``, ``bool``, ``str``, ``list``, ``dict``, ``null``), an
    optional closed/open range for numbers, and an optional set of allowed values."""

    def __init__(self, *kinds: str, low=None, high=None, low_open: bool = False, high_open: bool = False,
                 choices: tuple | None = None, note: str = ""):
        self.kinds, self.low, self.high, self.low_open, self.high_open = kinds, low, high, low_open, high_open
        self.choices, self.note = choices, note

    def describe(self) -> str:
        if self.note:
            return self.note
        if self.choices is not None:
            allowed = " | ".join(str(c) for c in self.choices) + (" | null" if "null" in self.kinds else "")
            return f"one of {allowed}"
        names = {"int": "a whole number", "number": "a number", "bool": "true/false", "str": "a text",
                 "list": "a list of texts", "dict": "a mapping", "null": "null"}
        kinds = " or ".join(names[k] for k in self.kinds if not (k == "int" and "number" in self.kinds))
        bounds = ""
        if self.low is not None or self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            bounds = f" in {left}{'-inf' if self.low is None else self.low}, " \
                     f"{'inf' if self.high is None else self.high}{right}"
        return kinds + bounds

    def accepts(self, value) -> bool:
        if self.choices is not None and value in self.choices and not isinstance(value, bool):
            return True
        if value is None:
            return "null" in self.kinds
        if isinstance(value, bool):
            return "bool" in self.kinds
        if isinstance(value, (int, float)) and ({"int", "number"} & set(self.kinds)):
            if isinstance(value, float) and ("number" not in self.kinds or not math.isfinite(value)):
                return False
            return self._in_range(value)
        if isinstance(value, str):
            return "str" in self.kinds and self.choices is None and bool(value)
        if isinstance(value, list):
            return "list" in self.kinds and all(isinstance(v, str) and v for v in value)
        if isinstance(value, dict):
            return "dict" in self.kinds
        return False

    def _in_range(self, value) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))


_SIZE = Rule("int", "number", "str", note="an int >= 1 (entries), a float in (0, 1] (a fraction of the generated "
                                          "weights) or a byte budget such as '2MB'")
_COUNT = Rule("int", low=1)
_OPT_COUNT = Rule("int", "null", low=1)
_FLAG = Rule("bool")
_NONNEG = Rule("int", "number", low=0)
_POSITIVE = Rule("int", "number", low=0, low_open=True)
_FRACTION = Rule("int", "number", low=0, high=1)
SCHEMA = {
    "task.name": Rule("str"), "method": Rule("str", note="a registered method (modelring.methods.list_methods())"), "model.name": Rule("str"), "model.kwargs": Rule("dict"),
    "ring.size": _SIZE, "ring.seed": Rule("int", low=0), "ring.exclude": Rule("list", "null"),
    "ring.include": Rule("list", "null"), "ring.scale": Rule("null", choices=("fan_in", "fan_out")),
    "ring.block": _COUNT, "ring.permute": _FLAG, "ring.reflect": _FLAG,
    "ring.sampling": Rule(choices=("even", "independent")), "ring.wiring": Rule(choices=("cached", "recompute")),
    "ring.rings": Rule("null", "dict", "str", note="null, per_stage, per_layer or a mapping glob -> size"),
    "ring.strict": _FLAG,
    "ring.init_std": Rule("int", "number", "null", "str", low=0, low_open=True,
                          note="null (each ring: its layers' fan-in RMS), a positive number, or global"),
    "data.name": Rule("str"), "data.root": Rule("str", "null"), "data.pad_to": _OPT_COUNT,
    "data.channels": _OPT_COUNT, "data.augment": _FLAG, "data.image_size": Rule("int", low=8),
    "data.train_limit": Rule("int", "null", low=1, note="a positive number of samples or null (all)"),
    "data.test_limit": Rule("int", "null", low=1, note="a positive number of samples or null (all)"),
    "data.val_size": Rule("int", "number", "null", low=0, low_open=True,
                          note="null, a number of training images >= 1, or a fraction in (0, 1)"),
    "train.epochs": Rule("int", low=1, note="a whole number of epochs >= 1"), "train.batch_size": _COUNT,
    "train.eval_batch_size": _COUNT, "train.lr": _POSITIVE, "train.momentum": Rule("int", "number", low=0, high=1,
                                                                                   high_open=True),
    "train.nesterov": _FLAG, "train.weight_decay": _NONNEG, "train.ring_weight_decay": Rule("int", "number", "null",
                                                                                            low=0),
    "train.schedule": Rule(choices=("cosine", "paper", "step", "constant")), "train.warmup_epochs": _NONNEG,
    "train.decay_epochs": _POSITIVE, "train.step_epochs": _POSITIVE, "train.gamma": Rule("int", "number", low=0,
                                                                                           high=1, low_open=True),
    "train.label_smoothing": Rule("int", "number", low=0, high=1, high_open=True), "train.amp": _FLAG,
    "train.seed": Rule("int", low=0), "train.threads": _OPT_COUNT, "train.channels_last": _FLAG,
    "train.device": Rule("str", note="cpu, cuda, cuda:<index> or mps"), "train.progress": _FLAG,
    "train.grad_energy": _FLAG,
    "out.dir": Rule("str", note="a folder for the run's files"), "out.tensorboard": _FLAG,
    "prune.keep": _SIZE, "prune.at": _FRACTION,
    "pose.reuse": _FLAG, "pose.stages": _COUNT, "pose.new_norm": _FLAG, "pose.input_size": Rule("int", low=8),
    "pose.heatmap_size": _COUNT, "pose.sigma": _POSITIVE, "pose.rotation": _NONNEG,
    "pose.scale_factor": Rule("int", "number", low=0, high=1, high_open=True), "pose.flip": _FLAG,
    "pose.box_margin": _POSITIVE, "pose.flip_test": _FLAG, "pose.threshold": _POSITIVE,
    "pose.optimizer": Rule(choices=("sgd", "adam")),
    "multitask.num_classes": _COUNT, "multitask.test_areas": Rule("list"),
    "multitask.depth_loss": Rule(choices=("l1", "l2")), "multitask.normal_loss": Rule(choices=("cosine", "l2")),
    "multitask.depth_weight": _NONNEG, "multitask.normal_weight": _NONNEG, "multitask.semantic_weight": _NONNEG,
    "multitask.select": Rule(choices=("depth_rmse", "normal_angle", "normal_rmse", "miou")),
}
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


def size_problem(size) -> str | None:
    """Why ``size`` is not a ring size / pruning budget (None when it is): an int >= 1, a float in (0, 1] or a byte
    string such as '2MB'."""
    from .sizes import BYTE_SIZE

    if isinstance(size, bool) or not isinstance(size, (int, float, str)):
        return None  # the type is reported by the schema
    if isinstance(size, int) and size < 1:
        return "an int size counts entries and must be >= 1"
    if isinstance(size, float) and not 0.0 < size <= 1.0:
        return "a float size is a fraction of the generated weights, in (0, 1]; pass an int for a count"
    if isinstance(size, str) and not BYTE_SIZE.match(size):
        return "a text size is a byte budget such as '2MB', '1.5MiB' or '800kB'"
    return None


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
