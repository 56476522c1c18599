"""Sweeps: grid parsing, the log-linear fit, and a tiny end-to-end sweep that resumes."""
import json
from pathlib import Path

import pytest

from modelring.cli import main
from modelring.sweep import combinations, fit_loglinear, parse_grid, run_name

RECIPE = str(Path(__file__).parent.parent / "configs" / "fmnist_resnet20_rpg.yaml")


def test_grid_and_names():
    grid = parse_grid(["ring.size=0.01,0.1", "ring.block=1,16"])
    assert grid == {"ring.size": [0.01, 0.1], "ring.block": [1, 16]}
    combos = combinations(grid, dense=True)
    assert len(combos) == 5 and combos[-1] == {"method": "dense"}
    assert run_name(combos[0], 3) == "size=0.01_block=1_seed3" and run_name(combos[-1], 0) == "dense_seed0"
    with pytest.raises(ValueError, match="must look like"):
        parse_grid(["ring.size"])


def test_loglinear_fit_recovers_a_known_line():
    dofs = [1e3, 1e4, 1e5, 1e6]
    fit = fit_loglinear(dofs, [0.1 * k + 0.3 for k in (3, 4, 5, 6)])
    assert fit["slope_per_decade"] == pytest.approx(0.1) and fit["intercept"] == pytest.approx(0.3)
    assert fit["r2"] == pytest.approx(1.0)
    noisy = fit_loglinear(dofs, [0.6, 0.72, 0.78, 0.95])
    assert 0.8 < noisy["r2"] < 1.0
    with pytest.raises(ValueError, match="two different DoF"):
        fit_loglinear([10, 10], [0.5, 0.6])


def test_tiny_sweep_end_to_end_and_resume(fmnist_root, tmp_path, capsys):
    args = ["sweep", RECIPE, f"data.root={fmnist_root}", "train.epochs=1", "train.progress=false",
            "out.tensorboard=false", "--grid", "ring.size=0.05,0.2,0.5", "--dense", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Log-linear fit" in out and "dense" in out
    result = json.loads((tmp_path / "sweep.json").read_text())
    assert len(result["rows"]) == 4 and result["fit"]["points"] == 3
    dofs = [r["dof"] for r in result["summary"]]
    assert dofs == sorted(dofs) and result["summary"][-1]["setting"] == "dense"
    assert main(args) == 0  # a second call reuses every report
    assert capsys.readouterr().out.count("done before, reusing its report") == 4
    assert (tmp_path / "sweep.csv").read_text().count("\n") == 5
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stored = next(tmp_path.glob("size=0.05_seed*")) / "config.yaml"  # a run made under an older default
    assert "block: 1\n" in stored.read_text()
    stored.write_text(stored.read_text().replace("block: 1\n", "block: 16\n"))
    assert main(args) == 2
    assert "ring.block differ" in capsys.readouterr().err


def test_labelled_settings_name_runs_and_record_wall_time(fmnist_root, tmp_path):
    from modelring.sweep import run_settings
    settings = [{"label": "thin", "method": "dense", "model.kwargs.width": 2},
                {"label": "hashed", "method": "hashednets", "ring.size": 0.1}]
    rows = run_settings(RECIPE, settings, seeds=[0], out=tmp_path, log=lambda *a: None,
                        overrides=[f"data.root={fmnist_root}", "train.epochs=1", "train.progress=false",
                                   "out.tensorboard=false", "data.train_limit=64", "data.test_limit=32"])
    assert [r["run"] for r in rows] == ["thin_seed0", "hashed_seed0"]
    from modelring import create_model
    thin = create_model("resnet20", num_classes=10, in_chans=1, width=2)
    assert rows[0]["dof"] == sum(p.numel() for p in thin.parameters())  # the width override reached the model
    report = json.loads((tmp_path / "hashed_seed0" / "report.json").read_text())
    assert report["wall_s"] > 0 and report == {k: v for k, v in rows[1].items() if k in report}
    config = (tmp_path / "hashed_seed0" / "config.yaml").read_text()
    assert "method: hashednets" in config and report["method"] == "hashednets"
