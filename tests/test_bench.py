"""The generation benchmark runs end to end (its timings are never asserted; its byte counts are)."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))

import generation  # noqa: E402


@pytest.mark.slow
def test_quick_benchmark_writes_json(tmp_path):
    out = tmp_path / "gen.json"
    generation.main(["--quick", "--steps", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["host"]["cpu"] and result["host"]["threads"] >= 1  # every benchmark says where it ran
    assert set(result["cases"]) == {"resnet20_b128", "mlp12x1024_b16", "transformer_b32"}
    for row in result["cases"].values():
        assert row["dense_s"] > 0 and row["rpg_s"] > 0
        assert 4.0 <= row["held_bytes_per_virtual"] <= 4.075  # element-wise, cached: int16 tables + 36 B per chunk
        assert row["measured_held_bytes_per_virtual"] == row["held_bytes_per_virtual"]
        assert row["checkpoint"]["within_bound"]
    assert result["recompute"]["held_bytes_per_virtual"] == 0.0


def test_floor_benchmark_writes_json(tmp_path, monkeypatch):
    import floor

    monkeypatch.setattr(floor, "PAPER_RING", 20_000)
    monkeypatch.setattr(floor.mr, "create_model", lambda name: floor.mr.models.create_model("resnet20"))
    out = tmp_path / "floor.json"
    result = floor.main(["--rounds", "1", "--repeat", "2", "--variants", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [r["block"] for r in result["rows"]] == [1, 1, 16]
    assert all(r["forward_over_copy"] > 0 and len(r["backward_over_copy_runs"]) == 2 for r in result["rows"])
    assert [r["kernel"] for r in result["rows"]] == ["compiled", "compiled", "torch"]
    assert result["rows"][1]["held_bytes_per_virtual"] < 4.075 < result["rows"][2]["held_bytes_per_virtual"]
    assert "modelring_compiled_int16" in result["forward_variants"]


def test_gpu_check_runs_on_the_cpu_as_a_smoke_run(tmp_path):
    import gpu_check

    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--device", "cpu", "--small", "--steps", "1", "--repeat", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for row in result["correctness"].values():  # on the CPU the "device" is the CPU: exact by construction
        assert row["weights_equal_cpu"] and row["ring_grad_max_abs_diff_cpu"] == 0.0
        assert row["backward_bitwise_repeatable"]
    assert result["generation"]["forward_x_copy"] > 0 and result["gpt_step"]["ratio"] > 0


def test_adapter_benchmark_writes_json(tmp_path):
    import adapters

    out = tmp_path / "adapters.json"
    adapters.main(["--ranks", "1", "--rounds", "1", "--batch", "1", "--length", "8", "--out", str(out)])
    row = json.loads(out.read_text())["cases"][0]
    assert row["trainable"] == 12_288 and row["ring_s"] > 0 and row["lora_s"] > 0  # equal trainable counts


def test_gpt_step_benchmark_writes_json(tmp_path):
    import gpt_step

    out = tmp_path / "gpt.json"
    result = gpt_step.main(["--model", "gpt_tiny", "--steps", "1", "--tokens", "32", "--out", str(out)])
    assert json.loads(out.read_text())["cached_ratio"] == result["cached_ratio"] > 0
    assert result["recompute_s"] > 0 and result["machine"]["threads"] == 1
