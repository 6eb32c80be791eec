"""Checkpoint store: round trip, atomic replace, damaged files."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from agent.logs.checkpoint import ApiPos, CheckpointStore, FilePos
from tests.support.toolbox import wait_for

CID = "ab" * 32


def test_round_trip(tmp_path: Path) -> None:
    st = CheckpointStore(tmp_path)
    assert st.load("central", CID) is None
    st.save("central", CID, FilePos(12, "f" * 32, 4096, 17))
    assert st.load("central", CID) == FilePos(12, "f" * 32, 4096, 17)
    st.save("central", CID, ApiPos(1795422222_000000007, 3))
    assert st.load("central", CID) == ApiPos(1795422222_000000007, 3)
    assert st.containers("central") == [CID]
    st.delete("central", CID)
    assert st.load("central", CID) is None


def test_no_temp_files_left_and_replace_is_atomic(tmp_path: Path) -> None:
    st = CheckpointStore(tmp_path)
    path = tmp_path / "logs" / "s" / f"{CID}.json"
    st.save("s", CID, FilePos(1, "", 0))
    inode_before = path.stat().st_ino
    st.save("s", CID, FilePos(1, "", 10))
    # rename(2) over the old file: a new inode, never an in-place rewrite a crash could tear
    assert path.stat().st_ino != inode_before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_killed_writer_leaves_old_or_new(tmp_path: Path) -> None:
    """SIGKILL a process saving in a tight loop: every time, the file is a whole checkpoint."""
    code = (
        "import sys; from agent.logs.checkpoint import CheckpointStore, FilePos\n"
        "st = CheckpointStore(sys.argv[1]); i = 0\n"
        "print('go', flush=True)\n"
        "while True:\n    i += 1; st.save('s', 'c' * 64, FilePos(7, 'x' * 32, i, i))\n"
    )
    root = Path(__file__).resolve().parents[2]
    for _ in range(3):
        p = subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            cwd=root,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        assert p.stdout is not None and p.stdout.readline() == b"go\n"
        st = CheckpointStore(tmp_path)
        # Kill it mid-stream of saves, once it has saved at least once.
        wait_for(partial(st.load, "s", "c" * 64), timeout=30, interval=0.001, what="a first save")
        p.kill()
        p.wait()
        pos = st.load("s", "c" * 64)
        assert isinstance(pos, FilePos) and pos.offset >= 1 and pos.offset == pos.time_ns


@pytest.mark.parametrize("content", [b"", b"{", b'{"v":2}', b'{"v":1,"file":{"inode":"x"}}', b"\xff"])
def test_damaged_checkpoint_is_ignored(tmp_path: Path, content: bytes) -> None:
    st = CheckpointStore(tmp_path)
    path = tmp_path / "logs" / "s" / f"{CID}.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert st.load("s", CID) is None


def test_names_cannot_escape_the_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        CheckpointStore(tmp_path).save("../x", CID, ApiPos(0, 0))


def test_first_start_is_recorded_once(tmp_path: Path) -> None:
    st = CheckpointStore(tmp_path)
    assert st.first_start("central", 100) == 100
    assert st.first_start("central", 200) == 100  # a later start keeps the first
    assert st.first_start("other", 300) == 300  # per sink: a new sink has its own first start
    assert st.containers("central") == []  # not a container's checkpoint
    (tmp_path / "logs" / "central" / "first-start").write_text("garbage")
    assert st.first_start("central", 400) == 400  # damaged: this start counts as the first
