"""Config: defaults, YAML recipes, dotted overrides that refuse unknown keys."""
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
