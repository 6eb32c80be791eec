"""Docker's rotated json-file names, oldest first: `.N[.gz]` ... `.1[.gz]`, then the live file."""

from __future__ import annotations

from pathlib import Path

from agent.logs.logfile import rotation_chain


def test_rotation_chain_orders_docker_files_and_ignores_the_rest(tmp_path: Path) -> None:
    live = tmp_path / "abc-json.log"
    names = [
        "abc-json.log",
        "abc-json.log.1",
        "abc-json.log.1.gz",  # while Docker compresses .1 both exist: the plain one is whole
        "abc-json.log.2.gz",
        "abc-json.log.10",
        "abc-json.log.3.tmp",  # not Docker's
        "abc-json.log.x",
        "abc-json.log.",
        "abc-json.log..gz",
        "abc-json.log.٣",  # a digit, but not an ASCII one
        "abcd-json.log.1",  # another container's prefix
        "config.v2.json",
    ]
    for n in names:
        (tmp_path / n).write_text("")
    assert [p.name for p in rotation_chain(live)] == [
        "abc-json.log.10",
        "abc-json.log.2.gz",
        "abc-json.log.1",
        "abc-json.log",
    ]
    (tmp_path / "abc-json.log.1").unlink()
    assert [p.name for p in rotation_chain(live)][-2:] == ["abc-json.log.1.gz", "abc-json.log"]


def test_rotation_chain_of_a_missing_directory_is_the_live_file(tmp_path: Path) -> None:
    live = tmp_path / "gone" / "abc-json.log"
    assert rotation_chain(live) == [live]
