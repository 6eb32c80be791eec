"""Delivery positions per (sink, container), persisted atomically in the state directory.

    <path.state>/logs/<sink>/<container id>.json   {"v":1,"file":{...}} or {"v":1,"api":{...}}
    <path.state>/logs/<sink>/first-start           {"v":1,"time_ns":...}

A tail writes its start position as soon as it has one (the container is owed lines from there),
then a position only after the sink said OK for everything before it; always with write-to-temp,
fsync, rename, fsync(dir): a crash leaves the old or the new file, never half of one. Positions
name the file by inode and by fingerprint (first line) so they survive Docker renaming the file to
`.1` or gzipping it to `.1.gz`. `first-start` is when the sink first ran: containers created before
it existed before the agent (`logs.start-at` applies to them), later ones are shipped in full.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True, slots=True)
class FilePos:
    """After this many bytes of the file with this identity, everything was delivered."""

    inode: int
    fingerprint: str  # jsonfile.fingerprint of its first line, "" if none yet
    offset: int
    time_ns: int = 0  # of the last delivered entry: the fallback when the file is gone


@dataclass(frozen=True, slots=True)
class ApiPos:
    """Everything up to `n` entries stamped exactly `time_ns` was delivered (`since` is inclusive)."""

    time_ns: int
    n: int


Position = FilePos | ApiPos


def encode(pos: Position) -> dict[str, Any]:
    kind = "file" if isinstance(pos, FilePos) else "api"
    return {"v": 1, kind: asdict(pos)}


def decode(obj: Any) -> Position | None:
    if not isinstance(obj, dict) or obj.get("v") != 1:
        return None
    try:
        if isinstance(obj.get("file"), dict):
            f = obj["file"]
            return FilePos(int(f["inode"]), str(f["fingerprint"]), int(f["offset"]), int(f.get("time_ns", 0)))
        if isinstance(obj.get("api"), dict):
            a = obj["api"]
            return ApiPos(int(a["time_ns"]), int(a["n"]))
    except (KeyError, TypeError, ValueError):
        return None
    return None


class CheckpointStore:
    """One small JSON file per (sink, container). Blocking I/O: call from a thread."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "logs"

    def _path(self, sink: str, container_id: str) -> Path:
        if not _SAFE.match(sink) or not _SAFE.match(container_id):
            raise ValueError(f"unsafe checkpoint name {sink!r}/{container_id!r}")
        return self.root / sink / f"{container_id}.json"

    def load(self, sink: str, container_id: str) -> Position | None:
        path = self._path(sink, container_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            pos = decode(json.loads(raw))
        except ValueError:
            pos = None
        if pos is None:
            log.warning("checkpoint %s is unreadable; starting that container afresh", path)
        return pos

    def save(self, sink: str, container_id: str, pos: Position) -> None:
        self._write(self._path(sink, container_id), encode(pos))

    def first_start(self, sink: str, now_ns: int) -> int:
        """When this sink first ran (ns since the epoch); recorded as `now_ns` if it never did.
        OSError when it cannot be recorded."""
        if not _SAFE.match(sink):
            raise ValueError(f"unsafe sink name {sink!r}")
        path = self.root / sink / "first-start"
        try:
            obj = json.loads(path.read_bytes())
            if isinstance(obj, dict) and obj.get("v") == 1 and isinstance(obj.get("time_ns"), int):
                return int(obj["time_ns"])
            log.warning("%s is unreadable; the sink's first start is now", path)
        except FileNotFoundError:
            pass
        except ValueError:
            log.warning("%s is unreadable; the sink's first start is now", path)
        self._write(path, {"v": 1, "time_ns": now_ns})
        return now_ns

    def _write(self, path: Path, obj: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        data = json.dumps(obj, separators=(",", ":")).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        # The rename itself is durable only once the directory is synced.
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def delete(self, sink: str, container_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(sink, container_id).unlink()

    def containers(self, sink: str) -> list[str]:
        d = self.root / sink
        try:
            return sorted(p.stem for p in d.glob("*.json"))
        except OSError:
            return []
