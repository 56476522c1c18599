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
