"""agent/malloc.py: with the threshold fixed, a big buffer freed goes back to the kernel, also after
glibc has seen one freed before (its dynamic threshold would keep the second in the heap)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import malloc

PROBE = """
import sys
from agent import malloc
print(malloc.tune() if sys.argv[1] == "tuned" else "-")
def rss_anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
x = bytearray(8 << 20)
del x  # mmapped, freed: glibc raises its threshold to 8 MiB
x = bytearray(8 << 20)  # untuned: now from the heap
keep = [bytearray(64) for _ in range(100)]  # above it in the heap: it cannot be trimmed from the top
del x
print(rss_anon())
"""


def run(variant: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # the test's own
    out = subprocess.run(
        [sys.executable, "-c", PROBE, variant], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return out[0], int(out[1])


def test_a_freed_big_buffer_is_given_back_once_tuned() -> None:
    flag, tuned = run("tuned")
    assert flag == "True"
    _, plain = run("plain")
    assert plain - tuned > 6 * 1024, (plain, tuned)  # KiB: the 8 MiB buffer's pages stayed untuned


def test_the_operators_own_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert malloc.tune() is False


ARENAS = """
import ctypes, sys, threading
from agent import malloc
if sys.argv[1] == "tuned":
    malloc.tune()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
libc.fclose.argtypes = (ctypes.c_void_p,)
barrier = threading.Barrier(8)
keep = []
def work():
    barrier.wait()  # all at once: each thread that finds the arenas busy may make a new one
    keep.append([bytearray(65536) for _ in range(16)])  # below the mmap threshold: from an arena
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
f = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, f)
libc.fclose(f)
print(open(sys.argv[2]).read().count("<heap nr="))
"""


def arenas(variant: str, tmp: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", ARENAS, variant, tmp], capture_output=True, text=True, check=True, env=env
    ).stdout
    return int(out.split()[-1])


def test_threads_share_at_most_arena_max_arenas(tmp_path: Path) -> None:
    """glibc's malloc_info lists one <heap> per arena: at most ARENA_MAX once tuned."""
    assert arenas("tuned", str(tmp_path / "info.xml")) <= malloc.ARENA_MAX
    assert arenas("plain", str(tmp_path / "info.xml")) > malloc.ARENA_MAX  # glibc's own: one a thread
