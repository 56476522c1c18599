"""The issue-13 experiment runners on tiny data: resumable runs, tables with intervals and comparisons,
per-epoch metrics (and gradient-energy logs) copied beside the table."""
import pytest
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))


@pytest.mark.slow
def test_rings_decomposed_runner_writes_comparisons_and_energy_shares(fmnist_root, tmp_path, monkeypatch):
    import rings_decomposed

    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the recipe path is relative to the repository
    args = ["--lr", "0.05", "--seeds", "0", "1", "--root", str(fmnist_root), "--train", "64", "--val", "40",
            "--epochs", "1", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res")]
    assert rings_decomposed.main(args) == 0
    text = (tmp_path / "res" / "README.md").read_text()
    assert "against `global`" in text and "Holm over 4 comparisons" in text and "| per-layer_global-init-std |" in text
    assert "| per layer, global init std |" in text  # energy shares per stage
    assert len(list((tmp_path / "res" / "metrics").glob("*.grad_energy.jsonl"))) == 10
    # the final models scored on the full test set too, with their own comparison table
    assert "test top-1 (final model) [95% CI]" in text and "Test top-1 of the final models (the final numbers; nothing was chosen on them), against `global`" in text
    import json

    import torch

    import modelring as mr
    from modelring.config import load_config
    from modelring.tasks import get_task

    run = tmp_path / "runs" / "global_seed1"
    saved = json.loads((tmp_path / "res" / "runs" / "global_seed1" / "test.json").read_text())
    cfg = load_config(run / "config.yaml", ["data.val_size=null"])
    _, test_set = get_task("classification").build_data(cfg)
    model = mr.load(run / "model.safetensors").eval()
    with torch.no_grad():  # recomputed by hand: the whole test split, not the validation images
        hits = sum(int((model(x[None]).argmax(1) == y).item()) for x, y in test_set)
    assert saved["test_count"] == len(test_set) != 40 and saved["test_top1"] == hits / len(test_set)
    before = (tmp_path / "res" / "rings_decomposed.csv").read_text()
    assert rings_decomposed.main(args) == 0  # a second call reuses every finished run
    assert (tmp_path / "res" / "rings_decomposed.csv").read_text().splitlines()[1:] == before.splitlines()[1:]


def test_finished_runs_committed_with_the_results_are_reused_on_a_fresh_machine(fmnist_root, tmp_path, monkeypatch):
    import shutil

    import destructive

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    args = ["--lr", "0.05", "--seeds", "0", "--root", str(fmnist_root), "--train", "64", "--val", "40", "--epochs", "1",
            "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"), "--limit-runs", "1"]
    assert destructive.main(args) == 0
    report = (tmp_path / "res" / "runs" / "element-wise_reflect_seed0" / "report.json").read_text()
    shutil.rmtree(tmp_path / "runs")  # a fresh machine: only the committed results remain
    assert destructive.main(args) == 0
    assert (tmp_path / "runs" / "element-wise_reflect_seed0" / "report.json").read_text() == report
    assert (tmp_path / "runs" / "element-wise_reflect_seed0" / "test.json").is_file()  # the final numbers came back
    assert not (tmp_path / "runs" / "element-wise_reflect_seed0" / "last.pt").exists()  # reused, not retrained


def test_pilot_chooses_each_arms_lr_on_seed_zero_only_once_its_grid_has_landed():
    import pilot

    values = {"global_3%_lr0.1": [0.890, 0.899, 0.898, 0.897], "global_3%_lr0.05": [0.895], "global_3%_lr0.2": [0.880],
              "dense_lr0.05": [0.91], "dense_lr0.1": [0.91], "dense_lr0.2": [0.90], "per_layer_3%_lr0.05": [0.9]}
    chosen = pilot.chosen_lrs(values)
    # seed 0 of lr 0.1 (0.890) is below lr 0.05's 0.895: the later seeds' higher values do not count
    assert chosen["global_3%"][0] == 0.05 and chosen["dense"][0] == 0.1  # dense: a tie goes to 0.1
    assert "per_layer_3%" not in chosen  # its grid has not landed
    text = "\n".join(pilot.lr_lines(values))
    assert "| global_3% | 0.8950 | 0.8900 | 0.8800 | 0.05 | +0.0050 (" in text and "| dense |" in text


def test_tables_state_the_schedule_the_recipe_and_overrides_give(monkeypatch):
    import argparse

    import validation

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    args = argparse.Namespace(root="/nowhere", train=20000, val=5000, epochs=10)
    text = validation.schedule_text(args)
    assert "10 epochs" in text and "weight decay 0.0005" in text and "batch 128" in text and "Nesterov" in text
    assert "5,000 validation images" in text and "0.2-epoch linear warm-up" in text


def test_rings_decomposed_adds_a_per_layer_arm_at_its_own_lr_only_when_asked():
    import argparse

    import rings_decomposed
    from validation import arm_plan

    assert rings_decomposed.arms(argparse.Namespace(per_layer_lr=None)) == rings_decomposed.ARMS
    arms = rings_decomposed.arms(argparse.Namespace(per_layer_lr=0.05))
    plan = arm_plan(arms, 0.1, [0, 1], {"ring.size": 0.03})
    assert [s["label"] for s, seed in plan[:6]] == ["global", "per-stage", "per-layer", "per-layer_global-init-std",
                                                     "HashedNets", "per-layer_own-lr"]
    assert [seed for _, seed in plan] == [0] * 6 + [1] * 6  # every arm grows together
    lrs = {s["label"]: s["train.lr"] for s, _ in plan}
    assert lrs["per-layer_own-lr"] == 0.05 and lrs["per-layer"] == lrs["global"] == 0.1
    assert all(s["ring.size"] == 0.03 for s, _ in plan)


@pytest.mark.slow
def test_dof_law_runner_fits_the_line_over_rpg_runs_and_sets_dense_apart(fmnist_root, tmp_path, monkeypatch):
    import csv
    import math

    import dof_law
    from stats import line_fit

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    args = ["--lr", "0.05", "--seeds", "0", "1", "--root", str(fmnist_root), "--train", "64", "--val", "40",
            "--epochs", "1", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res")]
    assert dof_law.main(args) == 0
    rows = list(csv.DictReader((tmp_path / "res" / "dof_law.csv").open()))
    assert len(rows) == 12 and {r["label"] for r in rows} == {*(f"ring-{s:g}" for s in dof_law.SIZES), "dense"}
    dofs = {r["label"]: int(r["dof"]) for r in rows}
    assert sorted(dofs, key=dofs.get) == [*(f"ring-{s:g}" for s in dof_law.SIZES), "dense"]  # DoF grows with size
    rpg = [r for r in rows if r["label"] != "dense"]
    fit = line_fit([math.log10(int(r["dof"])) for r in rpg], [float(r["test_top1"]) for r in rpg])
    text = (tmp_path / "res" / "README.md").read_text()
    # the table's line is the one over the 10 RPG runs (dense left out), with lack of fit on 3 and 5 df
    assert f"| test | 10 | {fit['slope']:+.4f} [" in text and f"({fit['lack_of_fit_df'][0]}, 5)" in text
    assert fit["lack_of_fit_df"] == (3, 5) and "| dense (not in the fit) | 269,434 |" in text
    assert "against `dense`" in text and "Holm over 5 comparisons" in text


def test_sweep_fit_reproduces_the_committed_fit_of_a_library_sweep_with_the_one_line_fit(tmp_path, capsys):
    import shutil

    import sweep_fit

    results = Path(__file__).resolve().parents[1] / "docs" / "results" / "accuracy_vs_dof_resnet32"
    for name in ("sweep.csv", "sweep.json"):  # written by the library sweep before the fit moved out
        shutil.copyfile(results / name, tmp_path / name)
    assert sweep_fit.main([str(tmp_path)]) == 0
    # the numbers the old library fit printed into that summary.md, from experiments/stats.line_fit now
    committed = (results / "summary.md").read_text()
    assert "top-1 = 0.0437 · log10(DoF) +0.4272, R² = 0.107 (18 runs)" in committed
    text = (tmp_path / "fit.md").read_text()
    assert text.startswith("Log-linear fit over the RPG runs: test_top1 = 0.0437 · log10(DoF) +0.4272, R² = 0.107 "
                           "(18 runs); slope 95% CI ± ") and text in capsys.readouterr().out
    if sweep_fit.pyplot() is not None:
        assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quantized_rings_scores_every_treatment_of_rpg_and_dense_final_models(fmnist_root, tmp_path, monkeypatch):
    import json

    import quantized_rings

    import modelring as mr
    from modelring.config import load_config
    from modelring.loop import evaluate_on_split, fit

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    runs = []
    for method in ("rpg", "dense"):
        cfg = load_config("configs/fmnist_resnet20_rpg.yaml", [
            f"data.root={fmnist_root}", f"out.dir={tmp_path / method}", "train.epochs=1", "train.progress=false",
            "out.tensorboard=false", f"method={method}", "data.val_size=40", "train.threads=1"])
        fit(cfg, log=lambda *a: None)
        runs.append(tmp_path / method)
    assert quantized_rings.main([*map(str, runs), "--out", str(tmp_path / "q")]) == 0
    rows = json.loads((tmp_path / "q" / "quantized_rings.json").read_text())
    assert len(rows) == 2 * len(quantized_rings.TREATMENTS)
    for run in runs:
        got = {r["treatment"]: r for r in rows if r["run"] == run.name}
        untouched = evaluate_on_split(load_config(run / "config.yaml", ["data.val_size=null"]),
                                      mr.load(run / "model.safetensors"))
        assert got["float"]["test_top1"] == untouched["top1"]  # the whole test set, not the 40 validation images
        assert got["float"]["bytes"] > got["q8"]["bytes"] > got["q4"]["bytes"]
        assert got["keep 50%"]["bytes"] > got["keep 50% + q8"]["bytes"]
    assert quantized_rings.main([*map(str, runs), "--out", str(tmp_path / "q")]) == 0  # resumes: nothing new
    assert len(json.loads((tmp_path / "q" / "quantized_rings.json").read_text())) == len(rows)


@pytest.mark.slow
def test_equal_size_chooses_each_arms_setting_on_validation_then_reuses_its_seed_zero(fmnist_root, tmp_path,
                                                                                       monkeypatch):
    import csv

    import equal_size

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setattr(equal_size, "LRS", (0.05, 0.1))
    monkeypatch.setattr(equal_size, "PRUNE_AT", (0.5,))
    monkeypatch.setattr(equal_size, "SEEDS", (0, 1))
    common = ["--root", str(fmnist_root), "--train", "64", "--val", "40", "--epochs", "1", "--threads", "1",
              "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"), "--budgets", "1%",
              "--arms", "rpg 1%", "prune-global 1%"]
    with pytest.raises(SystemExit, match="has not landed"):
        equal_size.main(["seeds", *common])
    assert equal_size.main(["lr", *common]) == 0
    lr_rows = list(csv.DictReader((tmp_path / "res" / "lr" / "lr.csv").open()))
    assert len(lr_rows) == 4 and {int(r["dof"]) for r in lr_rows} == {4456}  # both arms at the thin net's DoF
    best = {arm: max((r for r in lr_rows if r["label"].startswith(equal_size.slug(arm))),
                     key=lambda r: (float(r["val_top1"]), -float(r["train.lr"])))["label"]
            for arm in ("rpg 1%", "prune-global 1%")}
    assert equal_size.main(["seeds", *common]) == 0
    seed_rows = list(csv.DictReader((tmp_path / "res" / "seeds" / "seeds.csv").open()))
    assert sorted((r["label"], r["seed"]) for r in seed_rows) == sorted((b, s) for b in best.values() for s in "01")
    assert len(list((tmp_path / "runs").iterdir())) == 6  # seed 0 of each chosen setting trained once, in stage lr


def test_lm_targets_lr_grid_widens_past_a_winning_edge_and_chooses_inside():
    import lm_targets as lt

    def scores(arm, values):
        return {lt.label(arm, lr): v for lr, v in values.items()}

    assert lt.lr_grid("a", {}) == (list(lt.BASE), None)
    inside = scores("a", {3e-4: 2.1, 1e-3: 2.0, 3e-3: 2.2})
    assert lt.lr_grid("a", inside) == (list(lt.BASE), 1e-3)
    high = scores("a", {3e-4: 2.3, 1e-3: 2.2, 3e-3: 2.1})
    assert lt.lr_grid("a", high) == ([*lt.BASE, 1e-2], None)  # the new rung must land first
    assert lt.lr_grid("a", {**high, **scores("a", {1e-2: 2.15})}) == ([*lt.BASE, 1e-2], 3e-3)
    ladder_end = scores("a", {lr: 3 - i * 0.1 for i, lr in enumerate(lt.LADDER)})
    assert lt.lr_grid("a", ladder_end) == (list(lt.LADDER[2:]), lt.LADDER[-1])  # stops at the ladder's end
    tie = scores("a", {3e-4: 2.0, 1e-3: 2.0, 3e-3: 2.2, 1e-4: 2.5})
    assert lt.lr_grid("a", tie) == ([1e-4, *lt.BASE], 3e-4)  # ties go to the lower lr, which then sits inside


@pytest.mark.slow
def test_lm_targets_runs_pilot_sigma_and_main_on_a_tiny_corpus(tmp_path, monkeypatch):
    import csv

    import numpy as np

    import lm_targets as lt

    words = ["the", "king", "queen", "doth", "speak", "ere", "night", "falls", "upon", "verona", "\n"]
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "plays.txt").write_text(" ".join(np.random.default_rng(0).choice(words, 3000)))
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setattr(lt, "BASE", (1e-3, 3e-3))
    monkeypatch.setattr(lt, "LADDER", (1e-3, 3e-3))  # no widening: two lrs per arm
    monkeypatch.setattr(lt, "SIGMA_SEEDS", (1,))
    monkeypatch.setattr(lt, "MAX_SEEDS", 3)
    common = ["--root", str(tmp_path / "text"), "--tokens", "512", "--epochs", "2", "--context", "16",
              "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"), "--arms", "linear", "dense",
              "--set", "model.kwargs={depth: 1, heads: 2, width: 16}", "train.batch_size=8",
              "train.eval_batch_size=16", "data.val_size=0.1"]
    with pytest.raises(SystemExit, match="has not chosen an lr"):
        lt.main(["sigma", *common])
    assert lt.main(["pilot", *common]) == 0
    pilot = list(csv.DictReader((tmp_path / "res" / "pilot" / "pilot.csv").open()))
    assert len(pilot) == 4 and all(0 < float(r["val_bpb"]) < 8 and float(r["test_bpb"]) > 0 for r in pilot)
    dof = {r["label"].split("_lr")[0]: int(r["dof"]) for r in pilot}
    ring = lt.ring_entries(["model.kwargs={depth: 1, heads: 2, width: 16}"])
    assert ring == round(0.05 * 12 * 16 * 16)  # 5% of qkv (3 w x w) + proj (w x w) + fc and proj (4 w x w each)
    assert dof["linear"] < dof["dense"]
    text = (tmp_path / "res" / "pilot" / "README.md").read_text()
    assert "val bits per byte (final)" in text and "best epoch val bits per byte (min)" in text
    assert lt.main(["sigma", *common]) == 0
    assert lt.main(["main", *common]) == 0
    main_rows = list(csv.DictReader((tmp_path / "res" / "main" / "main.csv").open()))
    assert sorted({r["seed"] for r in main_rows}) == ["0", "1", "2"] and len(main_rows) == 6
    assert len(list((tmp_path / "runs").iterdir())) == 4 + 1 + 3  # pilot; sigma: seed 1 of linear; main: the rest


def test_saturating_fit_recovers_a_floor_and_prefers_it_only_when_there_is_one():
    from stats import saturating_fit

    xs = [1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6]
    floor = saturating_fit(xs, [1.5 + 40 * x ** -0.5 for x in xs])
    assert floor["floor"]["a"] == pytest.approx(1.5, abs=1e-6) and floor["floor"]["c"] == pytest.approx(0.5)
    assert floor["p_floor"] < 1e-6
    pure = saturating_fit(xs, [40 * x ** -0.3 * (1 + 0.001 * (-1) ** i) for i, x in enumerate(xs)])
    assert pure["power"]["c"] == pytest.approx(0.3, abs=0.01) and pure["p_floor"] > 0.01


@pytest.mark.slow
def test_lm_power_runs_both_families_and_fits_them(tmp_path, monkeypatch):
    import json

    import numpy as np

    import lm_power as lp

    words = ["the", "king", "queen", "doth", "speak", "ere", "night", "falls", "upon", "verona", "\n"]
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "plays.txt").write_text(" ".join(np.random.default_rng(0).choice(words, 3000)))
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setattr(lp, "WIDTHS", (16, 32, 48))
    monkeypatch.setattr(lp, "RINGS", (300, 900, 2700))
    monkeypatch.setattr(lp, "BASE", (1e-3, 3e-3))
    monkeypatch.setattr(lp, "LADDER", (1e-3, 3e-3))
    monkeypatch.setattr(lp, "SEEDS", (0, 1))
    monkeypatch.setattr(lp, "gpt", lambda w: {"model.kwargs.depth": 1, "model.kwargs.width": w,
                                              "model.kwargs.heads": 2})
    common = ["--root", str(tmp_path / "text"), "--tokens", "512", "--epochs", "1", "--context", "16",
              "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
              "--set", "train.batch_size=8", "train.eval_batch_size=16", "data.val_size=0.1"]
    with pytest.raises(SystemExit, match="has not chosen an lr"):
        lp.main(["seeds", *common])
    assert lp.main(["lr", *common]) == 0  # both ends of both families, two lrs each
    assert len(list((tmp_path / "runs").iterdir())) == 8
    assert lp.main(["seeds", *common]) == 0
    assert len(list((tmp_path / "runs").iterdir())) == 8 + 2 + 6  # ends' seed 0 reused; middles 2, seed 1 all 6
    assert lp.main(["fit", *common]) == 0
    found = json.loads((tmp_path / "res" / "fit.json").read_text())
    assert set(found["families"]) == {"dense", "rpg"}
    for fam in found["families"].values():
        assert fam["runs"] == 6 and fam["sizes"] == 3 and "p_lack_of_fit" in fam["line"]
    assert "log10 test bpb" in (tmp_path / "res" / "fit.md").read_text()
    assert (tmp_path / "res" / "lm_power.png").stat().st_size > 0


@pytest.mark.slow
def test_pose_claim_runs_the_pilot_then_seeds_and_stops_where_the_mde_rule_says(tmp_path, monkeypatch, capsys):
    import csv

    import pose_claim as pc

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setattr(pc, "DATA", {"train": 40, "test": 12, "image_size": 48, "seed": 0})
    monkeypatch.setattr(pc, "VAL_PERSONS", 8)
    monkeypatch.setattr(pc, "BASE", (1e-3, 2e-3))
    monkeypatch.setattr(pc, "LADDER", (1e-3, 2e-3))  # no widening: two lrs per arm
    monkeypatch.setattr(pc, "SEEDS", (0, 1))
    monkeypatch.setattr(pc, "MAX_SEEDS", 3)
    monkeypatch.setattr(pc, "MDE_TARGET", 1e-9)  # unreachable: the stage stops after SEEDS
    common = ["--data", str(tmp_path / "data"), "--epochs", "1", "--runs", str(tmp_path / "runs"),
              "--results", str(tmp_path / "res"), "--set", "model.kwargs={width: 8, stage_depth: 1}",
              "pose.input_size=32", "pose.heatmap_size=16", "train.batch_size=8", "train.eval_batch_size=8"]
    with pytest.raises(SystemExit, match="has not chosen an lr"):
        pc.main(["seeds", *common])
    assert pc.main(["pilot", *common]) == 0
    pilot = list(csv.DictReader((tmp_path / "res" / "pilot" / "pilot.csv").open()))
    assert len(pilot) == 4 and len({r["dof"] for r in pilot}) == 1  # both arms, two lrs, one DoF
    assert all(r["val_count"] == "8" and r["test_count"] == "12" for r in pilot)
    assert pc.main(["seeds", *common]) == 0
    assert "the plan stops here (no main comparison)" in capsys.readouterr().out
    seeds = list(csv.DictReader((tmp_path / "res" / "seeds" / "seeds.csv").open()))
    assert sorted((r["label"].split("_")[0], r["seed"]) for r in seeds) == [("cpm", "0"), ("cpm", "1"), ("rpg", "0"),
                                                                           ("rpg", "1")]
    assert len(list((tmp_path / "runs").iterdir())) == 4 + 2  # the seed-0 runs are the pilot's
    assert (tmp_path / "res" / "seeds" / "seeds.png").read_bytes()[:4] == b"\x89PNG"  # the stage's figure
    assert "Figure: [seeds.png](seeds.png)" in (tmp_path / "res" / "seeds" / "README.md").read_text()
    monkeypatch.setattr(pc, "MDE_TARGET", 1e9)  # reached at once: n = len(SEEDS), nothing more runs
    assert pc.seeds_for({"cpm": [0.1, 0.2], "rpg": [0.3, 0.5]}) == (2, pytest.approx(((0.005 + 0.02) / 2) ** 0.5))


@pytest.mark.slow
def test_multitask_factorial_chooses_lrs_per_sharing_mode_runs_every_cell_at_equal_dof_and_the_anova(tmp_path,
                                                                                                      monkeypatch):
    import csv
    import json

    import multitask_factorial as mf

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setattr(mf, "DATA", {"train": 40, "test": 8, "image_size": 16, "seed": 0})
    monkeypatch.setattr(mf, "BASE", (0.05,))
    monkeypatch.setattr(mf, "LADDER", (0.05,))  # one lr per mode
    monkeypatch.setattr(mf, "SEEDS", (0, 1))
    monkeypatch.setattr(mf, "RING", 600)
    common = ["--data", str(tmp_path / "data"), "--epochs", "1", "--runs", str(tmp_path / "runs"),
              "--results", str(tmp_path / "res"), "--set", "model.kwargs.width=8", "train.batch_size=8",
              "train.eval_batch_size=8"]
    with pytest.raises(SystemExit, match="has not chosen an lr"):
        mf.main(["seeds", *common])
    assert mf.main(["lr", *common]) == 0
    assert len(list(csv.DictReader((tmp_path / "res" / "lr" / "lr.csv").open()))) == 4  # 3 modes + dense
    assert mf.main(["seeds", *common]) == 0
    rows = list(csv.DictReader((tmp_path / "res" / "seeds" / "seeds.csv").open()))
    assert len(rows) == 2 * 13 and len({r["dof"] for r in rows if not r["label"].startswith("dense")}) == 1
    assert len(list((tmp_path / "runs").iterdir())) == 4 + 2 * 13 - 4  # the lr stage's seed-0 runs are reused
    tables = json.loads((tmp_path / "res" / "seeds" / "anova.json").read_text())
    effects = [row["effect"] for row in tables["test_depth_rmse"]]
    assert effects[:3] == ["sharing", "permutation", "reflection"] and effects[-1] == "error"
    assert tables["test_depth_rmse"][-1]["df"] == 12  # 24 runs in 12 cells
    assert "p (Holm" in (tmp_path / "res" / "seeds" / "anova.md").read_text()


def test_dof_capacity_gives_each_size_the_lr_of_its_nearer_end():
    import dof_capacity as dc

    assert dc.SIZES == (80, 172, 371, 800, 1724, 3713, 8000)
    ends = {80: 0.4, 8000: 0.1}
    assert [dc.lr_of(s, ends) for s in dc.SIZES] == [0.4, 0.4, 0.4, 0.4, 0.1, 0.1, 0.1]  # 800: the larger
    assert dc.lr_of(800, {80: 0.05, 8000: 0.2}) == 0.2


@pytest.mark.slow
def test_dof_capacity_runs_every_size_with_dof_equal_to_ring_entries_and_reads_the_law(fmnist_root, tmp_path,
                                                                                        monkeypatch):
    import csv
    import json

    import dof_capacity as dc

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setattr(dc, "SIZES", (80, 400, 2000, 10000))
    monkeypatch.setattr(dc, "ENDS", (80, 10000))
    monkeypatch.setattr(dc, "BASE", (0.05,))
    monkeypatch.setattr(dc, "LADDER", (0.05,))
    monkeypatch.setattr(dc, "SEEDS", (0, 1))
    common = ["--root", str(fmnist_root), "--epochs", "1", "--train", "200", "--val", "40", "--threads", "1",
              "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res")]
    with pytest.raises(SystemExit, match="has not landed completely"):
        dc.main(["fit", *common])
    assert dc.main(["lr", *common]) == 0
    assert dc.main(["seeds", *common]) == 0
    rows = list(csv.DictReader((tmp_path / "res" / "seeds" / "seeds.csv").open()))
    assert len(rows) == 2 * 5
    assert all(int(r["dof"]) == int(r["ring"]) for r in rows if r["method"] != "dense")  # nothing free
    fit = json.loads((tmp_path / "res" / "seeds" / "fit.json").read_text())
    assert fit["line"]["points"] == 8 and "lack_of_fit_f" in fit["line"] and "p_floor" in fit["saturating"]
    text = (tmp_path / "res" / "seeds" / "fit.md").read_text()
    assert "capacity-bound" in text and "| 10,000 |" in text
    assert (tmp_path / "res" / "seeds" / "dof_capacity.png").is_file()


def test_destructive_small_takes_the_four_permutation_reflection_arms_at_a_0_3_percent_ring():
    import destructive_small as ds

    assert list(ds.arms()) == ["element-wise, reflect", "element-wise, no reflect", "no permute, reflect",
                               "no permute, no reflect"]
    assert ds.arms()["no permute, no reflect"] == {"ring.permute": False, "ring.reflect": False}
