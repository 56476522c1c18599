"""README's quick start runs as written (so it stays true)."""
import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_quick_start_runs(tmp_path, monkeypatch):
    text = README.read_text()
    section = text[text.index("## Quick start"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md quick start", "exec"), namespace)
    assert (tmp_path / "rpg.safetensors").is_file()
    assert namespace["mr"].count_params(namespace["model"]).dof < 0.2 * 269_722


def test_fine_tuning_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    section = text[text.index("## Fine-tuning with ring adapters"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {"print": lambda *a: None}
    exec(compile(code, "README.md fine-tuning", "exec"), namespace)
    mr, x = namespace["mr"], namespace["torch"].randn(2, 3, 32, 32)
    assert (tmp_path / "adapter.safetensors").stat().st_size < 60_000
    assert not mr.is_adapted(namespace["merged"]) and mr.is_adapted(namespace["again"])
    namespace["again"].eval(), namespace["merged"].eval()
    assert namespace["torch"].allclose(namespace["again"](x), namespace["merged"](x), atol=1e-6)
