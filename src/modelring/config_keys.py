"""Every config key, declared once: its default, the rule its values must follow and a one-line doc (``KEYS``).

``config.default_config()`` and ``config.SCHEMA`` are derived from ``KEYS``, and ``config.describe_keys()`` lists
it for people, so a key is added, changed or documented here and nowhere else. Closed sets of names come from
``vocab`` (the modules that give the names a meaning import them from there too).

Keys of earlier releases are declared here as data as well (``LEGACY``): what each of their values means in
today's keys. ``config.resolve_legacy`` applies them. Like ``vocab``, this module never imports torch.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from .vocab import ADAPTER_INITS, OPTIMIZERS, PEFT_TYPES, SAMPLINGS, SCALE_RULES, SCHEDULES, TOKENIZERS, WIRING_MODES


def registered_methods() -> tuple[str, ...]:
    """The names ``method`` accepts: whatever the method registry holds when a config is checked (a plug-in may
    register more), imported then and not when this module is (the registry needs torch)."""
    from .methods import list_methods

    return tuple(list_methods())


class Rule:
    """What one config key accepts: kinds (``int``, ``number``, ``bool``, ``str``, ``list``, ``dict``, ``null``), an
    optional closed/open range for numbers, and an optional set of allowed values (a tuple, or a function giving
    it when a value is checked, for vocabularies a registry owns)."""

    def __init__(self, *kinds: str, low=None, high=None, low_open: bool = False, high_open: bool = False,
                 choices=None, note: str = ""):
        self.kinds, self.low, self.high, self.low_open, self.high_open = kinds, low, high, low_open, high_open
        self._choices, self.note = choices, note

    @property
    def choices(self) -> tuple | None:
        return self._choices() if callable(self._choices) else self._choices

    def describe(self) -> str:
        """What the rule accepts, in words (the end of an ``expected ...`` message)."""
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
        """Whether ``value`` (as YAML reads it) follows the rule; NaN and infinities never do."""
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


class Key(NamedTuple):
    """One configurable key: dotted name (``section.key``, or a top-level ``key``), default, rule, doc."""
    name: str
    default: object
    rule: Rule
    doc: str


_SIZE = Rule("int", "number", "str", note="an int >= 1 (entries), a float in (0, 1] (a fraction of the generated "
                                          "weights) or a byte budget such as '2MB'")
_COUNT = Rule("int", low=1)
_OPT_COUNT = Rule("int", "null", low=1)
_FLAG = Rule("bool")
_NONNEG = Rule("int", "number", low=0)
_POSITIVE = Rule("int", "number", low=0, low_open=True)
_FRACTION = Rule("int", "number", low=0, high=1)
_SHARE = Rule("int", "number", low=0, high=1, high_open=True)  # [0, 1)
_SEED = Rule("int", low=0)
_LIMIT = Rule("int", "null", low=1, note="a positive number of samples or null (all)")

# What each section is for (the order of KEYS is the order of default_config()).
SECTIONS = {
    "task": "task.name picks the task (modelring.tasks: classification, pose, multitask, lm); one loop trains them "
            "all",
    "model": "the network: a registered model and its builder's keyword arguments",
    "ring": "rpg and hashednets: ring size and wiring",
    "data": "the data set, how it is read and augmented, and which part of it is used",
    "train": "optimisation, schedule, precision, threads and device of the run",
    "out": "where and how the run writes its files",
    "adapter": "adapter: fine-tune a pretrained model through a ring adapter (modelring.adapt); the ring's size, "
               "seed, targets and wiring come from the ring section, what only adapters have from here",
    "peft": "peft: fine-tune adapter.base with a method of the peft library (optional extra hf), the baselines "
            "of the ring adapter; adapter.base and adapter.train apply as for the ring adapter",
    "prune": "prune-global / prune-layerwise: keep = count / fraction of the weights RPG would generate "
             "(ring.include/exclude), pruned after fraction `at` of all training steps, the mask held afterwards",
    "pose": "task section, read only by the pose task's loop (issue 5)",
    "multitask": "task section, read only by the multitask task's loop (issue 6)",
    "lm": "task section, read only by the lm task (causal language modelling on text files, issue 24)",
}

KEYS = (
    Key("task.name", "classification", Rule("str"), "the task that trains (modelring.tasks)"),
    Key("method", "rpg", Rule(choices=registered_methods),
        "how the model is trained (modelring.methods): rpg and hashednets read ring, prune-* read prune"),
    Key("model.name", "resnet20", Rule("str"), "a registered model (modelring.list_models())"),
    Key("model.kwargs", {}, Rule("dict"), "keyword arguments of the model's builder, e.g. width (not checked here)"),
    # ring
    Key("ring.size", 0.05, _SIZE,
        "ring entries (int), fraction of the generated weights (float) or byte budget ('2MB')"),
    Key("ring.seed", 0, _SEED, "seed of the wiring and the ring's initial values (integer arithmetic only)"),
    Key("ring.exclude", ["conv1.weight", "fc.*"], Rule("list", "null"),
        "parameter-name globs left free (not generated); the default (the convnets' stem and classifier) applies "
        "where it matches, a written pattern that matches nothing is an error"),
    Key("ring.include", None, Rule("list", "null"),
        "parameter-name globs to generate (null: the weights of conv, conv-transpose and linear layers)"),
    Key("ring.scale", None, Rule("null", choices=SCALE_RULES),
        "per-layer initial std: null (c_i = 1) or Kaiming fan_in / fan_out"),
    Key("ring.block", 1, _COUNT, "1: every weight reads its own entry (the paper); > 1: runs of weights move together"),
    Key("ring.permute", True, _FLAG, "keyed permutation of where weights read the ring (false: entry j mod N)"),
    Key("ring.reflect", True, _FLAG, "an independent random sign per virtual weight (false: no sign flips)"),
    Key("ring.sampling", "even", Rule(choices=SAMPLINGS),
        "even: every entry read floor(T/N) or ceil(T/N) times; independent: an ablation"),
    Key("ring.wiring", "cached", Rule(choices=WIRING_MODES),
        "cached: keep the wiring between steps; recompute: rebuild it at every generation"),
    Key("ring.rings", None, Rule("null", "dict", "str", note="null, per_stage, per_layer or a mapping glob -> size"),
        "local rings: null (one global ring), per_stage, per_layer or a mapping glob -> size"),
    Key("ring.strict", True, _FLAG, "refuse ring sizes that are almost always mistakes (dead entries, 5 for 5%)"),
    Key("ring.init_std", None, Rule("int", "number", "null", "str", low=0, low_open=True,
                                    note="null (each ring: its layers' fan-in RMS), a positive number, or global"),
        "the rings' initial std: null (each its layers' fan-in RMS), a number, or global (one global ring's)"),
    # data
    Key("data.name", "fashion_mnist", Rule("str"), "the data set, read by the task (e.g. fashion_mnist, cifar10)"),
    Key("data.root", None, Rule("str", "null"), "folder of the data set's files (null: the data set's default)"),
    Key("data.pad_to", None, _OPT_COUNT, "pad images to this side, e.g. 32 for 28x28 images (null: as stored)"),
    Key("data.channels", None, _OPT_COUNT, "repeat gray images to this many channels, e.g. 3 (null: as stored)"),
    Key("data.augment", True, _FLAG, "augment the training images (crop, flip; pose: rotation, scale)"),
    Key("data.image_size", 224, Rule("int", low=8), "side of the images of ImageNet-style and 2D-3D-S data"),
    Key("data.train_limit", None, _LIMIT, "use only this many training samples (lm: windows per epoch) (null: all)"),
    Key("data.test_limit", None, _LIMIT, "use only this many test samples (lm: evaluation windows) (null: all)"),
    Key("data.val_size", None, Rule("int", "number", "null", low=0, low_open=True,
                                    note="null, a number of training images >= 1, or a fraction in (0, 1)"),
        "(classification) hold out this many training images (int) or this fraction (float), chosen by a fixed "
        "keyed permutation (the same for every seed); the run then trains on the rest and evaluates / selects on "
        "them (val_* columns), never on the test set; lm: a block of bytes (int) or of the text (float) just before "
        "the test block"),
    # train
    Key("train.epochs", 3, Rule("int", low=1, note="a whole number of epochs >= 1"), "passes over the training set"),
    Key("train.batch_size", 128, _COUNT, "training batch size (per process under DDP)"),
    Key("train.eval_batch_size", 500, _COUNT, "evaluation batch size"),
    Key("train.lr", 0.1, _POSITIVE, "base learning rate"),
    Key("train.momentum", 0.9, _SHARE, "SGD momentum"),
    Key("train.nesterov", True, _FLAG, "Nesterov momentum (SGD, when momentum > 0)"),
    Key("train.weight_decay", 1e-4, _NONNEG, "weight decay of every trainable tensor"),
    Key("train.ring_weight_decay", None, Rule("int", "number", "null", low=0),
        "weight decay of the rings (null: train.weight_decay)"),
    Key("train.schedule", "cosine", Rule(choices=SCHEDULES),
        "learning-rate schedule; paper: lr * 0.1^(epoch / decay_epochs), as in the official RPG code"),
    Key("train.warmup_epochs", 0.0, _NONNEG, "linear warm-up, in (fractional) epochs"),
    Key("train.decay_epochs", 45.0, _POSITIVE, "paper schedule: epochs per tenfold decay"),
    Key("train.step_epochs", 30, _POSITIVE, "step schedule: epochs between two decays"),
    Key("train.gamma", 0.1, Rule("int", "number", low=0, high=1, low_open=True),
        "step schedule: the factor applied at each decay"),
    Key("train.label_smoothing", 0.0, _SHARE, "label smoothing of the classification loss"),
    Key("train.amp", False, _FLAG, "mixed precision: fp16 + GradScaler on CUDA, bf16 on CPU"),
    Key("train.seed", 0, _SEED, "seed of initialisation, data order and augmentation"),
    Key("train.threads", None, _OPT_COUNT, "torch CPU threads (null: torch's default)"),
    Key("train.channels_last", True, _FLAG, "channels-last memory format"),
    Key("train.device", "cpu", Rule("str", note="cpu, cuda, cuda:<index> or mps"), "where the run computes"),
    Key("train.progress", True, _FLAG, "a tqdm progress bar (loss, accuracy, lr, images/s)"),
    Key("train.grad_energy", False, _FLAG,
        "write each stage's share of the energy sent into the rings, sum (c_i dL/dW)^2, per epoch "
        "(grad_energy.jsonl; stages from the model's stage_names())"),
    # out
    Key("out.dir", "runs/default", Rule("str", note="a folder for the run's files"), "the run folder"),
    Key("out.tensorboard", True, _FLAG, "TensorBoard logs too (when tensorboard is installed)"),
    # adapter
    Key("adapter.base", None, Rule("str", "null", note="a path to a modelring model file"),
        "the pretrained model the adapter fine-tunes: a file written by modelring.save (a run's model.safetensors); "
        "its weights are loaded into the task's model, which must be built the same way (model.name, model.kwargs)"),
    Key("adapter.init", "zeros", Rule(choices=ADAPTER_INITS),
        "zeros: the adapted model starts as the base exactly; random: the ring's usual start (ring.init_std)"),
    Key("adapter.trainable_scale", False, _FLAG, "train each adapted layer's scale c_i too (one scalar per layer)"),
    Key("adapter.train", None, Rule("list", "null"),
        "parameter-name globs of the model's own parameters left trainable, e.g. [fc.*] (null: only the adapter)"),
    # peft
    Key("peft.type", "lora", Rule(choices=PEFT_TYPES),
        "the peft method the `peft` method builds: lora, vera, unilora, fourierft or vblora (peft's classes)"),
    Key("peft.targets", None, Rule("list", "null"),
        "module names (peft's target_modules: exact names or suffixes) to adapt (null: every nn.Linear)"),
    Key("peft.options", None, Rule("dict", "null"),
        "keyword arguments of the peft config, e.g. {r: 4, lora_alpha: 8} or {r: 4, theta_d_length: 4096}"),
    # prune
    Key("prune.keep", 0.05, _SIZE, "weights kept: a count, a fraction or bytes of the weights RPG would generate"),
    Key("prune.at", 0.5, _FRACTION, "prune after this fraction of all training steps"),
    # pose
    Key("pose.reuse", False, _FLAG, "one refinement sub-network applied at every later stage (shared weights)"),
    Key("pose.stages", 4, _COUNT, "stages of the Convolutional-Pose-Machine-style network"),
    Key("pose.new_norm", True, _FLAG, "with reuse: every application gets its own norm layers"),
    Key("pose.input_size", 64, Rule("int", low=8), "side of the input crop, in pixels"),
    Key("pose.heatmap_size", 16, _COUNT, "side of the predicted heatmaps (at most pose.input_size)"),
    Key("pose.sigma", 1.0, _POSITIVE, "std of the target Gaussians, in heatmap pixels"),
    Key("pose.rotation", 30.0, _NONNEG, "largest random rotation in training, in degrees"),
    Key("pose.scale_factor", 0.25, _SHARE, "largest random rescaling in training (+/- this fraction)"),
    Key("pose.flip", True, _FLAG, "random horizontal flips in training"),
    Key("pose.box_margin", 1.25, _POSITIVE, "the person's box is enlarged by this factor before cropping"),
    Key("pose.flip_test", False, _FLAG, "average the heatmaps with the mirrored crop's at test time"),
    Key("pose.threshold", 0.5, _POSITIVE, "PCKh threshold, a fraction of the head size"),
    Key("pose.optimizer", "adam", Rule(choices=OPTIMIZERS), "the optimizer of pose runs"),
    # multitask
    Key("multitask.num_classes", 13, _COUNT, "semantic classes"),
    Key("multitask.test_areas", ["area_5a", "area_5b"], Rule("list"), "2D-3D-S areas held out for testing"),
    Key("multitask.val_areas", [], Rule("list"), "2D-3D-S areas held out of training for validation: runs "
        "evaluate and select on them (val_* columns); [] evaluates on the test areas"),
    Key("multitask.depth_loss", "l1", Rule(choices=("l1", "l2")), "depth loss over the valid pixels"),
    Key("multitask.normal_loss", "cosine", Rule(choices=("cosine", "l2")), "surface-normal loss over the valid pixels"),
    Key("multitask.depth_weight", 1.0, _NONNEG, "weight of the depth loss"),
    Key("multitask.normal_weight", 1.0, _NONNEG, "weight of the normal loss"),
    Key("multitask.semantic_weight", 0.5, _NONNEG, "weight of the segmentation loss"),
    Key("multitask.select", "depth_rmse", Rule(choices=("depth_rmse", "normal_angle", "normal_rmse", "miou")),
        "the test metric that picks the best model"),
    # lm
    Key("lm.files", None, Rule("list", "null"),
        "file names or globs inside data.root to read (null: data.root itself if a file, else its *.txt files)"),
    Key("lm.tokenizer", "bytes", Rule(choices=TOKENIZERS),
        "bytes: one token per byte, vocabulary 256, any bytes valid; bpe: byte-level BPE trained on the training "
        "split (needs the tokenizers package)"),
    Key("lm.vocab_size", 4096, Rule("int", low=257), "vocabulary of the BPE tokenizer (lm.tokenizer=bpe only)"),
    Key("lm.context", 256, _COUNT, "tokens the model sees (its context; passed to the model builder)"),
    Key("lm.test_fraction", 0.1, Rule("number", low=0, high=0.5, low_open=True),
        "the test block: this last fraction of the text (bytes)"),
    Key("lm.optimizer", "adamw", Rule(choices=OPTIMIZERS), "the optimizer of lm runs"),
)


# the legacy keys are declared with every other translation of earlier releases, in modelring.compat
from .compat import LEGACY, POSE_VARIANTS, LegacyKey  # noqa: E402,F401
