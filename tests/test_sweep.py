"""Sweeps: grid parsing, tiny end-to-end sweeps of every task that resume, and the names that moved out."""
import json
import warnings
from pathlib import Path

import pytest

from modelring.cli import main
from modelring.sweep import combinations, parse_grid, run_name

CONFIGS = Path(__file__).parent.parent / "configs"
RECIPE = str(CONFIGS / "fmnist_resnet20_rpg.yaml")


def test_grid_and_names():
    grid = parse_grid(["ring.size=0.01,0.1", "ring.block=1,16"])
    assert grid == {"ring.size": [0.01, 0.1], "ring.block": [1, 16]}
    combos = combinations(grid, dense=True)
    assert len(combos) == 5 and combos[-1] == {"method": "dense"}
    assert run_name(combos[0], 3) == "size=0.01_block=1_seed3" and run_name(combos[-1], 0) == "dense_seed0"
    with pytest.raises(ValueError, match="must look like"):
        parse_grid(["ring.size"])


def test_the_fit_and_plot_moved_out_of_the_library_warn_where_they_went():
    import modelring.sweep as sweep

    with pytest.warns(DeprecationWarning, match="experiments/stats.py's line_fit"):
        fit_loglinear = sweep.fit_loglinear
    fit = fit_loglinear([1e3, 1e4, 1e5, 1e6], [0.1 * k + 0.3 for k in (3, 4, 5, 6)])  # still works for one release
    assert fit["slope_per_decade"] == pytest.approx(0.1) and fit["r2"] == pytest.approx(1.0)
    with pytest.warns(DeprecationWarning, match="experiments/sweep_fit.py"):
        assert callable(sweep.plot)
    with pytest.warns(DeprecationWarning, match="selection_score"):
        assert sweep.split_of([{"val_top1": 0.5}]) == "val"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the names that stay raise no warning
        assert callable(sweep.run_settings) and callable(sweep.mean_std)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        sweep.nothing


def test_tiny_sweep_end_to_end_and_resume(fmnist_root, tmp_path, capsys):
    args = ["sweep", RECIPE, f"data.root={fmnist_root}", "train.epochs=1", "train.progress=false",
            "out.tensorboard=false", "--grid", "ring.size=0.05,0.2,0.5", "--dense", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| test_top1 (mean ± std) |" in out and "dense" in out and "higher is better" in out
    result = json.loads((tmp_path / "sweep.json").read_text())
    assert len(result["rows"]) == 4 and result["score"] == "test_top1" and result["higher_is_better"]
    assert "fit" not in result and not (tmp_path / "sweep.png").exists()  # reporting lives in experiments/
    dofs = [r["dof"] for r in result["summary"]]
    assert dofs == sorted(dofs) and result["summary"][-1]["setting"] == "dense"
    assert main(args) == 0  # a second call reuses every report
    assert capsys.readouterr().out.count("done before, reusing its report") == 4
    assert (tmp_path / "sweep.csv").read_text().count("\n") == 5
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


def _sweep_twice(args, capsys, runs: int) -> dict:
    """Run a CLI sweep, then again: the second trains nothing. Returns sweep.json."""
    assert main(args) == 0
    assert capsys.readouterr().out.count(": training") == runs
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("done before, reusing its report") == runs and ": training" not in out
    return json.loads((Path(args[args.index("--out") + 1]) / "sweep.json").read_text())


def test_a_pose_sweep_runs_end_to_end_scored_by_pckh(tmp_path, capsys):
    from modelring.tasks.pose.synth import write_dataset

    write_dataset(tmp_path / "data", train=16, test=4, seed=0, image_size=48)
    args = ["sweep", str(CONFIGS / "pose_rpg.yaml"), f"data.root={tmp_path / 'data'}",
            "model.kwargs={width: 8, stage_depth: 1}", "pose.stages=2", "pose.input_size=32", "pose.heatmap_size=8",
            "train.epochs=1", "train.batch_size=8", "train.progress=false", "out.tensorboard=false",
            "--grid", "ring.size=500,2000", "--dense", "--out", str(tmp_path / "sweep")]
    result = _sweep_twice(args, capsys, runs=3)
    assert result["score"] == "test_pckh" and result["higher_is_better"]
    assert [r["setting"] for r in result["summary"]] == ["size=500", "size=2000", "dense"]  # sorted by DoF
    assert all(r["task"] == "pose" and 0 <= r["test_pckh"] <= 1 for r in result["rows"])
    assert result["summary"][0]["mean"] == result["rows"][0]["test_pckh"]
    assert "| test_pckh (mean ± std) |" in (tmp_path / "sweep" / "summary.md").read_text()


def test_a_multitask_sweep_runs_end_to_end_scored_lower_is_better(tmp_path, capsys):
    from modelring.tasks.multitask.synth import write_dataset

    write_dataset(tmp_path / "data", train=16, test=8, seed=0, image_size=16)
    args = ["sweep", str(CONFIGS / "multitask_rpg.yaml"), f"data.root={tmp_path / 'data'}", "data.image_size=16",
            "model.kwargs={width: 8, reuse: true}", "train.epochs=1", "train.batch_size=8", "train.eval_batch_size=8",
            "train.warmup_epochs=0", "train.progress=false", "out.tensorboard=false",
            "--grid", "ring.size=400,800", "--seeds", "0", "1", "--out", str(tmp_path / "sweep")]
    result = _sweep_twice(args, capsys, runs=4)
    assert result["score"] == "test_depth_rmse" and result["higher_is_better"] is False
    assert [(r["setting"], r["seeds"]) for r in result["summary"]] == [("size=400", 2), ("size=800", 2)]
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert "| test_depth_rmse (mean ± std) |" in summary and "lower is better" in summary
    assert all(r["best_test_depth_rmse"] <= r["test_depth_rmse"] for r in result["rows"])


def test_one_sweep_refuses_settings_scored_by_different_metrics(tmp_path):
    from modelring.sweep import run_sweep

    with pytest.raises(ValueError, match="scored differently"):
        run_sweep(RECIPE, {"data.val_size": [None, 40]}, seeds=[0], out=tmp_path, log=lambda *a: None)
    assert not list(tmp_path.iterdir())  # refused before anything trained
