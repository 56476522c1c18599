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
