"""The ring bank's hooks: torch.compile stays out of them, without ``import modelring`` paying for dynamo."""
import subprocess
import sys

import torch

import modelring as mr
from modelring.bank import EnterHook, ExitHook


def test_import_modelring_does_not_load_dynamo():
    code = "import sys, modelring; assert 'torch._dynamo' not in sys.modules, 'import modelring loaded dynamo'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_hooks_are_compiler_disabled_once_a_model_is_converted():
    model = mr.convert(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)), 0.5)
    assert EnterHook.__call__._modelring_eager and ExitHook.__call__._modelring_eager
    mr.convert(torch.nn.Linear(4, 4), 0.5)  # a second conversion does not wrap the hooks twice
    assert EnterHook.__call__.__wrapped__.__name__ == "__call__"
    assert not getattr(EnterHook.__call__.__wrapped__, "_modelring_eager", False)
    assert model(torch.randn(3, 8)).shape == (3, 2)
