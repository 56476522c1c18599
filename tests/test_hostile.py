"""Every hostile input of the corpus (``tests/hostile.py``) gets its outcome: a clear error (one line, exit code 2
through the CLI; a config's problems one per indented line below it) or correct handling, and the files of an
earlier finished run never change."""
import hashlib
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

import hostile
from modelring.cli import INPUT_ERRORS

CASES = hostile.all_cases()


@pytest.fixture(scope="module")
def finished_run(fmnist_root, tmp_path_factory):
    """A finished tiny training run, the "earlier checkpoint" every case must leave alone."""
    run = tmp_path_factory.mktemp("finished") / "run"
    rc, err = hostile.train(SimpleNamespace(data=fmnist_root, run=run))
    assert rc == 0, err
    return run


def _digest(folder: Path, planted=()) -> dict[str, str]:
    """Hashes of a run's result files, except those the case itself replaced."""
    names = {"last.pt", "best.safetensors", "model.safetensors", "report.json", "config.yaml", "metrics.jsonl"}
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and p.name in names - set(planted)}


def test_the_corpus_is_large_and_its_table_is_up_to_date():
    assert len(CASES) >= 120
    assert len({hostile.case_id(c) for c in CASES}) == len(CASES)  # every row addressable on its own
    assert hostile.DOC.read_text() == hostile.render(CASES), "run `python tests/hostile.py` to regenerate the table"


@pytest.mark.parametrize("case", CASES, ids=[hostile.case_id(c) for c in CASES])
def test_hostile_input(case, fmnist_root, finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = _digest(run, case.planted)
    ctx = SimpleNamespace(tmp=tmp_path, data=fmnist_root, run=run)
    marker = tmp_path / "pwned"
    result, error = None, None
    try:
        result = case.run(ctx)
    except Exception as err:  # noqa: BLE001 - the outcome is asserted below
        error = err
    if case.outcome == "clear error":
        if isinstance(result, tuple):  # through the CLI
            rc, stderr = result
            assert rc == 2, stderr
            first, *rest = stderr.rstrip("\n").split("\n")
            # one line; a config with several problems lists them one per indented line below it
            assert first.startswith("modelring: error: ") and all(line.startswith("  ") for line in rest), stderr
            assert "Traceback" not in stderr
            message = stderr
        else:
            assert error is not None, f"no error for {case.what}"
            assert isinstance(error, INPUT_ERRORS + (RuntimeError,)), repr(error)
            message = str(error)
        assert re.search(case.expect, message, re.S), message
    else:
        assert error is None, repr(error)
        case.check(result, ctx)
    assert not marker.exists(), "a payload ran"
    assert _digest(run, case.planted) == before, "the earlier run's files changed"
