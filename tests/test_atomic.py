"""Atomic writes: all or nothing, and the permissions of a plain write (the user's umask)."""
import os
import stat

import pytest

from modelring.atomic import write_atomic


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "f.json", lambda tmp: open(tmp, "w").write("{}"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == mode


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    (tmp_path / "f.json").write_text("old")

    def fail(tmp):
        open(tmp, "w").write("half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "f.json", fail)
    assert (tmp_path / "f.json").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
