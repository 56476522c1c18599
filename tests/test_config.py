"""Config: defaults, YAML recipes, dotted overrides that refuse unknown keys."""
import re
from pathlib import Path

import pytest

from modelring.config import default_config, load_config

CONFIGS = Path(__file__).parent.parent / "configs"


def test_overrides_are_parsed_as_yaml(tmp_path):
    cfg = load_config(None, ["train.epochs=3", "ring.size=0.05", "ring.size=2MB", "ring.scale=null",
                             "ring.exclude=[conv1.weight, fc.*]", "model.kwargs.width=2", "train.amp=true"])
    assert cfg["train"]["epochs"] == 3 and cfg["ring"]["size"] == "2MB" and cfg["ring"]["scale"] is None
    assert cfg["ring"]["exclude"] == ["conv1.weight", "fc.*"] and cfg["model"]["kwargs"] == {"width": 2}
    assert cfg["train"]["amp"] is True


@pytest.mark.parametrize("override,message", [
    ("trian.epochs=3", "unknown key 'trian'; did you mean train"),
    ("train.epoch=3", "unknown key 'train.epoch'; did you mean epochs"),
    ("train=3", "'train' is a section"),
    ("train.epochs", "must look like section.key=value"),
    ("ring.size=[unclosed", "cannot parse the value"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_bad_recipes(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config file"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: {epochs: 3\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("train:\n  lr_rate: 0.1\n")
    with pytest.raises(ValueError, match="unknown key 'train.lr_rate'"):
        load_config(tmp_path / "typo.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")


@pytest.mark.parametrize("recipe", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_loads_and_names_a_registered_model(recipe):
    import modelring as mr

    cfg = load_config(recipe)
    assert cfg["model"]["name"] in mr.list_models()
    assert set(cfg) == set(default_config())


def test_yaml_cannot_construct_python_objects(tmp_path):
    (tmp_path / "evil.yaml").write_text("train: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(tmp_path / "evil.yaml")
    assert not (tmp_path / "pwned").exists()


def test_yaml_aliases_are_refused_so_nested_anchors_cannot_blow_up(tmp_path):
    bomb = "\n".join(["model:", "  name: resnet20", "  kwargs:", "    a: &a [x, x, x, x, x, x, x, x, x, x]"]
                     + [f"    {chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
                        for i in range(8)])
    (tmp_path / "bomb.yaml").write_text(bomb)
    with pytest.raises(ValueError, match=r"aliases \(\*a\) are not allowed"):
        load_config(tmp_path / "bomb.yaml")
    with pytest.raises(ValueError, match="aliases"):
        load_config(None, ["model.kwargs={a: &x 1, b: *x}"])


def test_a_value_shared_by_two_keys_dumps_without_aliases_and_reads_back(tmp_path):
    from modelring.config import dump_config

    cfg = load_config(None)
    shared = ["conv1.weight", "fc.*"]
    cfg["ring"]["exclude"], cfg["ring"]["include"] = shared, shared
    (tmp_path / "config.yaml").write_text(dump_config(cfg))
    assert "&" not in (tmp_path / "config.yaml").read_text()
    assert load_config(tmp_path / "config.yaml") == cfg


def test_schema_lists_every_problem_on_its_own_line_before_anything_runs():
    from modelring.config import check_values

    cfg = load_config(None, ["train.lr=.nan", "train.epochs=1.5", "train.batch_size=0", "data.train_limit=-5",
                             "train.decay_epochs=0", "train.label_smoothing=2", "train.threads=-1", "out.dir=null",
                             "method=pruning", "ring.scale=kaiming", "ring.size=-3", "train.schedule=linear"])
    with pytest.raises(ValueError) as err:
        check_values(cfg)
    lines = str(err.value).splitlines()
    assert lines[0] == "invalid config (12 problems):" and len(lines) == 13
    expected = {"train.lr=nan": "a number in (0, inf]", "train.epochs=1.5": "whole number of epochs",
                "train.batch_size=0": "[1, inf]", "data.train_limit=-5": "positive number of samples",
                "train.decay_epochs=0": "(0, inf]", "train.label_smoothing=2": "[0, 1)",
                "train.threads=-1": "or null", "out.dir=None": "a folder", "method='pruning'": "prune-global",
                "ring.scale='kaiming'": "fan_in | fan_out | null", "ring.size=-3": ">= 1",
                "train.schedule='linear'": "cosine | paper | step | constant"}
    for key, allowed in expected.items():
        line = next(line for line in lines if line.strip().startswith(key))
        assert allowed in line, line


def test_schema_accepts_every_recipe_and_reads_scientific_notation_as_a_number():
    import glob

    from modelring.config import SCHEMA, config_problems, default_config

    for path in glob.glob("configs/*.yaml"):
        cfg = load_config(path, ["train.device=cpu"])  # the ImageNet recipes ask for CUDA
        assert config_problems(cfg) == [], path
    flat = {f"{s}.{k}" for s, sec in default_config().items() if isinstance(sec, dict) for k in sec} | {"method"}
    assert flat == set(SCHEMA)  # every key has a rule
    cfg = load_config(None, ["ring.size=1e-2", "train.lr=5e-4"])  # YAML 1.1 reads these as text
    assert config_problems(cfg) == [] and cfg["ring"]["size"] == 0.01 and cfg["train"]["lr"] == 0.0005
    if not __import__("torch").cuda.is_available():
        assert config_problems(load_config(None, ["train.device=cuda"])) == [
            "train.device='cuda': this torch build sees no CUDA device; use train.device=cpu"]


# Today's defaults, copied out of the code on purpose: a change to a default must change this test too.
DEFAULTS = {
    "task": {"name": "classification"},
    "method": "rpg",
    "model": {"name": "resnet20", "kwargs": {}},
    "ring": {"size": 0.05, "seed": 0, "exclude": ["conv1.weight", "fc.*"], "include": None, "scale": None, "block": 1,
             "permute": True, "reflect": True, "sampling": "even", "wiring": "cached", "rings": None, "strict": True,
             "init_std": None},
    "data": {"name": "fashion_mnist", "root": None, "pad_to": None, "channels": None, "augment": True,
             "image_size": 224, "train_limit": None, "test_limit": None, "val_size": None},
    "train": {"epochs": 3, "batch_size": 128, "eval_batch_size": 500, "lr": 0.1, "momentum": 0.9, "nesterov": True,
              "weight_decay": 0.0001, "ring_weight_decay": None, "schedule": "cosine", "warmup_epochs": 0.0,
              "decay_epochs": 45.0, "step_epochs": 30, "gamma": 0.1, "label_smoothing": 0.0, "amp": False, "seed": 0,
              "threads": None, "channels_last": True, "device": "cpu", "progress": True, "grad_energy": False},
    "out": {"dir": "runs/default", "tensorboard": True},
    "adapter": {"base": None, "init": "zeros", "trainable_scale": False, "train": None},
    "peft": {"type": "lora", "targets": None, "options": None},
    "prune": {"keep": 0.05, "at": 0.5},
    "pose": {"reuse": False, "stages": 4, "new_norm": True, "input_size": 64, "heatmap_size": 16, "sigma": 1.0,
             "rotation": 30.0, "scale_factor": 0.25, "flip": True, "box_margin": 1.25, "flip_test": False,
             "threshold": 0.5, "optimizer": "adam"},
    "multitask": {"num_classes": 13, "test_areas": ["area_5a", "area_5b"], "val_areas": [],
                  "depth_loss": "l1", "normal_loss": "cosine",
                  "depth_weight": 1.0, "normal_weight": 1.0, "semantic_weight": 0.5, "select": "depth_rmse"},
    "lm": {"files": None, "tokenizer": "bytes", "vocab_size": 4096, "context": 256, "test_fraction": 0.1,
           "optimizer": "adamw"},
}


def test_default_config_is_derived_from_the_declarations_unchanged():
    cfg = default_config()
    assert repr(cfg) == repr(DEFAULTS)  # repr: same keys, same order, same types (3 is not 3.0)
    cfg["ring"]["exclude"].append("x")
    cfg["model"]["kwargs"]["width"] = 2
    assert repr(default_config()) == repr(DEFAULTS)  # every call a fresh copy


def test_every_key_is_declared_once_with_a_rule_a_doc_and_a_default_its_rule_accepts():
    from modelring.config import SCHEMA
    from modelring.config_keys import KEYS, SECTIONS, Rule

    names = [key.name for key in KEYS]
    assert len(names) == len(set(names))
    assert SCHEMA == {key.name: key.rule for key in KEYS} and list(SCHEMA) == names
    for key in KEYS:
        assert isinstance(key.rule, Rule), key.name
        assert key.doc.strip() and "\n" not in key.doc, key.name
        assert key.rule.accepts(key.default), f"{key.name}={key.default!r}: expected {key.rule.describe()}"
    sections = {name.split(".")[0] for name in names if "." in name}
    assert sections == set(SECTIONS) and all(doc.strip() for doc in SECTIONS.values())


def test_describe_keys_lists_every_key_with_default_rule_and_doc():
    from modelring.config import describe_keys

    rows = list(describe_keys())
    flat = {f"{s}.{k}": v for s, sec in DEFAULTS.items() if isinstance(sec, dict) for k, v in sec.items()}
    assert [row[0] for row in rows if row[0] != "method"] == list(flat)
    by_key = {name: (default, rule, doc) for name, default, rule, doc in rows}
    assert by_key["method"][:2] == ("rpg", "one of dense | rpg | hashednets | prune-global | prune-layerwise | adapter | finetune | peft")
    assert by_key["ring.sampling"][1] == "one of even | independent"
    assert by_key["ring.scale"][1] == "one of fan_in | fan_out | null"
    assert by_key["train.lr"][1] == "a number in (0, inf]" and by_key["train.lr"][2]
    assert "byte budget" in by_key["ring.size"][1] and by_key["ring.size"][0] == 0.05
    by_key["ring.exclude"][0].append("x")  # a copy: describing never changes the defaults
    assert default_config()["ring"]["exclude"] == ["conv1.weight", "fc.*"]


def test_closed_vocabularies_come_from_vocab_and_the_config_floor_imports_no_torch():
    import ast

    from modelring import optim, vocab
    from modelring.config import SCHEMA
    from modelring.methods import list_methods

    assert SCHEMA["method"].choices == tuple(list_methods())  # the registry's, read when a value is checked
    assert SCHEMA["ring.sampling"].choices is vocab.SAMPLINGS
    assert SCHEMA["ring.wiring"].choices is vocab.WIRING_MODES
    assert SCHEMA["ring.scale"].choices is vocab.SCALE_RULES
    assert SCHEMA["train.schedule"].choices is vocab.SCHEDULES is optim.SCHEDULES
    assert SCHEMA["pose.optimizer"].choices is vocab.OPTIMIZERS
    package = Path(__file__).parent.parent / "src" / "modelring"
    allowed = {"config_keys", "vocab", "sizes", "compat"}  # torch-free at import
    for name in ("config", "config_keys", "vocab"):
        tree = ast.parse((package / f"{name}.py").read_text())
        for node in tree.body:  # module level only: imports inside functions run when called
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "torch" for a in node.names), name
            elif isinstance(node, ast.ImportFrom):
                assert node.module != "torch" and (node.level == 0 or node.module in allowed), (name, node.module)


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Forget which legacy keys this process already warned about (the warning is once per key per process)."""
    import modelring.config

    monkeypatch.setattr(modelring.config, "_WARNED", set())


@pytest.mark.parametrize("items, task, expected", [
    (["ring.enabled=false"], "classification", {"method": "dense"}),
    (["method=hashednets", "ring.enabled=true"], "classification", {"method": "rpg"}),
    (["prune.enabled=true"], "classification", {"method": "prune-global"}),
    (["prune.enabled=false", "method=dense"], "classification", {"method": "dense"}),
    (["ring.enabled=false", "prune.enabled=true"], "classification", {"method": "prune-global"}),
    (["pose.variant=reuse_rpg", "ring.enabled=false"], "pose", {"method": "rpg", "pose": {"reuse": True}}),
    (["pose.variant=reuse"], "pose", {"method": "dense", "pose": {"reuse": True}}),
    (["pose.variant=null"], "pose", {"method": "rpg", "pose": {"reuse": False}}),
    (["pose.variant=reuse_rpg", "method=dense"], "classification", {"method": "dense", "pose": {"reuse": False}}),
])
def test_each_legacy_key_translates_as_before_and_warns(items, task, expected, fresh_warnings):
    import warnings

    from modelring.compat import LEGACY

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_config(None, [f"task.name={task}"] + items)
    legacy = [item.split("=")[0] for item in items if item.split("=")[0] in LEGACY]
    warned = [re.match(r"config key (\S+) is from an earlier release", str(w.message)).group(1) for w in caught
              if issubclass(w.category, FutureWarning)]
    assert sorted(warned) == sorted(legacy)  # each legacy key read warns
    assert cfg["method"] == expected["method"]
    assert all(cfg["pose"][k] == v for k, v in expected.get("pose", {}).items())
    assert "enabled" not in cfg["ring"] and "enabled" not in cfg["prune"] and "variant" not in cfg["pose"]


def test_a_saved_config_with_legacy_keys_upgrades_from_a_recipe_and_a_dict_alike(tmp_path, fresh_warnings):
    from modelring.config import dump_config, upgrade

    saved = {"task": {"name": "pose"}, "ring": {"enabled": True, "size": 600}, "prune": {"enabled": False},
             "pose": {"variant": "independent", "stages": 3}}
    with pytest.warns(FutureWarning):
        cfg = upgrade(saved)
    assert (cfg["method"], cfg["pose"]["reuse"], cfg["ring"]["size"], cfg["pose"]["stages"]) == ("dense", False, 600, 3)
    (tmp_path / "old.yaml").write_text(dump_config(saved))
    assert load_config(tmp_path / "old.yaml") == cfg


def test_a_legacy_key_warns_once_per_process_naming_its_modern_spelling(fresh_warnings):
    import warnings

    from modelring.config import upgrade

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the once-only is ours, not the warnings registry's
        load_config(None, ["ring.enabled=false"])
        load_config(None, ["ring.enabled=true"])
        upgrade({"ring": {"enabled": False}, "prune": {"enabled": True}})
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert len(messages) == 2, messages
    assert messages[0].startswith("config key ring.enabled is from an earlier release and is read as method")
    assert "false -> method: dense" in messages[0] and messages[0].endswith("write method instead")
    assert messages[1].startswith("config key prune.enabled") and "true -> method: prune-global" in messages[1]
    assert caught[0].filename == __file__  # points at the caller, not at config.py


@pytest.mark.parametrize("variant", ["shared", "[a, b]"])
def test_an_unknown_pose_variant_is_still_a_clear_error(variant, fresh_warnings):
    common = ["task.name=pose", f"pose.variant={variant}"]
    with pytest.warns(FutureWarning, match="pose.variant"), pytest.raises(ValueError) as err:
        load_config(None, common)
    got = repr(variant if variant == "shared" else ["a", "b"])
    assert str(err.value) == ("pose.variant (an older key; today pose.reuse + method) must be one of independent, "
                              f"reuse, rpg, reuse_rpg, got {got}")
    cfg = load_config(None, ["task.name=classification", f"pose.variant={variant}"])  # means nothing elsewhere
    assert (cfg["method"], cfg["pose"]["reuse"]) == ("rpg", False)
