"""The modelring command: asserted output and exit codes."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import modelring as mr
from modelring.cli import main

RECIPE = str(Path(__file__).parent.parent / "configs" / "fmnist_resnet20_rpg.yaml")


def test_list_models(capsys):
    assert main(["list-models", "resnet*"]) == 0
    names = capsys.readouterr().out.split()
    assert "resnet20" in names and "resnet50" in names and "cifar_resnet18" not in names


def test_count_dense_and_converted(capsys):
    assert main(["count", "resnet20"]) == 0
    assert "DoF 269,722 of 269,722" in capsys.readouterr().out
    assert main(["count", "resnet20", "--ring-size", "1000", "--exclude", "conv1.weight", "fc.*"]) == 0
    out = capsys.readouterr().out
    assert "ring 1,000" in out and "layer3.2.conv2.weight" in out and "\nconv1.weight " not in out


def test_bad_ring_size_is_a_clear_error(capsys):
    assert main(["count", "resnet20", "--ring-size", "lots"]) == 2
    assert "cannot read ring size 'lots'" in capsys.readouterr().err
    assert main(["count", "nosuchmodel"]) == 2
    assert "nosuchmodel" in capsys.readouterr().err


def test_demo_runs_as_console_script():
    out = subprocess.run([sys.executable, "-m", "modelring", "demo", "--steps", "3"], capture_output=True,
                         text=True, check=True).stdout
    assert "DoF" in out and "identical outputs" in out and "checkpoint" in out


@pytest.mark.slow
def test_train_eval_export_on_tiny_data(fmnist_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", RECIPE, f"data.root={fmnist_root}", f"out.dir={run}",
                 "train.epochs=1", "train.progress=false", "out.tensorboard=false"]) == 0
    out = capsys.readouterr().out
    assert "test top-1" in out and "checkpoint" in out and str(run / "metrics.csv") in out
    assert main(["eval", str(run)]) == 0
    assert "top-1" in capsys.readouterr().out
    assert main(["export", str(run / "best.safetensors"), str(tmp_path / "plain.safetensors")]) == 0
    import modelring as mr
    plain = mr.load(tmp_path / "plain.safetensors")
    assert not mr.is_converted(plain) and mr.count_params(plain).ring == 0
    onnx = __import__("onnx")
    assert main(["export", str(run / "best.safetensors"), str(tmp_path / "plain2.safetensors"), "--onnx",
                 str(tmp_path / "m.onnx"), "--input-shape", "1,28,28"]) == 0
    onnx.checker.check_model(str(tmp_path / "m.onnx"))
    assert main(["export", str(run / "best.safetensors"), str(tmp_path / "plain3.safetensors"), "--onnx",
                 str(tmp_path / "auto.onnx")]) == 0  # the input shape read from the 1-channel model
    dims = onnx.load(str(tmp_path / "auto.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 32, 32]
    assert main(["train", RECIPE, "train.epohcs=1"]) == 2
    assert "did you mean epochs" in capsys.readouterr().err
    small = tmp_path / "q4.safetensors"
    assert main(["compress", str(run / "model.safetensors"), str(small), "--bits", "4", "--keep", "0.5"]) == 0
    assert "relative RMS error" in capsys.readouterr().out
    assert small.stat().st_size < (run / "model.safetensors").stat().st_size
    assert main(["eval", str(run), "--model", str(small)]) == 0 and "top-1" in capsys.readouterr().out
    assert main(["compress", str(run / "model.safetensors"), str(small)]) == 2  # nothing asked: a clear error
    assert "needs --bits" in capsys.readouterr().err


def test_count_reports_checkpoint_bytes_at_each_precision(capsys):
    assert main(["count", "resnet20", "--ring-size", "0.05", "--exclude", "conv1.weight", "fc.*"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("checkpoint (modelring.save)"))
    numbers = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) B", line)]
    assert len(numbers) == 3 and numbers[0] > numbers[1] > numbers[2]


def test_export_input_shape_is_checked_and_read_from_the_model():
    import pytest
    from torch import nn

    from modelring.cli import _parse_shape, example_input_shape
    assert _parse_shape("1,28,28") == (1, 28, 28)
    for bad in ["a,b", "", "3,-1,32"]:
        with pytest.raises(ValueError, match="must look like C,H,W"):
            _parse_shape(bad)
    assert example_input_shape(nn.Sequential(nn.Conv1d(5, 2, 3))) == (5, 32)
    assert example_input_shape(nn.Sequential(nn.Linear(7, 2))) == (7,)
    # registry models: the spatial size they declare (model_info), the channels they were built with
    assert example_input_shape(mr.create_model("resnet18")) == (3, 224, 224)
    assert example_input_shape(mr.materialize(mr.convert(mr.create_model("resnet20", in_chans=1), 0.05))) == (1, 32, 32)
    with pytest.raises(ValueError, match="pass --input-shape"):
        example_input_shape(nn.Sequential(nn.ReLU()))


def test_errors_are_one_line_with_exit_codes_and_debug_shows_the_traceback(monkeypatch, capsys, tmp_path):
    import modelring.cli as cli

    assert main(["train", str(tmp_path / "missing.yaml")]) == 2  # an input error
    err = capsys.readouterr().err
    assert err.startswith("modelring: error: no config file at") and err.count("\n") == 1

    def broken(args):
        raise RuntimeError("an internal failure")

    monkeypatch.setattr(cli, "cmd_list_models", broken)
    assert main(["list-models"]) == 1  # not an input error: exit 1, and how to see more
    assert "RuntimeError: an internal failure (rerun with --debug" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="an internal failure"):
        main(["--debug", "list-models"])
