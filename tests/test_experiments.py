"""The issue-13 experiment runners on tiny data: resumable runs, tables with intervals and comparisons,
per-epoch metrics (and gradient-energy logs) copied beside the table."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))


def test_rings_decomposed_runner_writes_comparisons_and_energy_shares(fmnist_root, tmp_path, monkeypatch):
    import rings_decomposed

    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the recipe path is relative to the repository
    args = ["--lr", "0.05", "--seeds", "0", "1", "--root", str(fmnist_root), "--train", "64", "--val", "40",
            "--epochs", "1", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res")]
    assert rings_decomposed.main(args) == 0
    text = (tmp_path / "res" / "README.md").read_text()
    assert "Against `global`" in text and "Holm over 4 comparisons" in text and "| per-layer_global-init-std |" in text
    assert "| per layer, global init std |" in text  # energy shares per stage
    assert len(list((tmp_path / "res" / "metrics").glob("*.grad_energy.jsonl"))) == 10
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
    assert not (tmp_path / "runs" / "element-wise_reflect_seed0" / "last.pt").exists()  # reused, not retrained
