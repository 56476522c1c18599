"""The generation benchmark runs end to end (its timings are never asserted; its byte counts are)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))

import generation  # noqa: E402


def test_quick_benchmark_writes_json(tmp_path):
    out = tmp_path / "gen.json"
    generation.main(["--quick", "--steps", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert set(result["cases"]) == {"resnet20_b128", "mlp12x1024_b16", "transformer_b32"}
    for row in result["cases"].values():
        assert row["dense_s"] > 0 and row["rpg_s"] > 0
        assert row["wiring_bytes_per_virtual"] <= 5.0
        assert row["checkpoint"]["within_bound"]
    assert result["recompute"]["wiring_bytes_per_virtual"] == 0.0
