"""The only place host paths are built: procfs root, Docker's data root, the engine socket.

Inside a container the host's procfs is mounted at /host/proc (read-only) and Docker's data
root at /host/var/lib/docker; on the host they are /proc and /var/lib/docker. Tests point
these at captured files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PROCFS = "/proc"
DEFAULT_DOCKER_ROOT = "/var/lib/docker"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


@dataclass(frozen=True, slots=True)
class HostFS:
    procfs: Path = Path(DEFAULT_PROCFS)
    docker_root: Path = Path(DEFAULT_DOCKER_ROOT)

    def proc(self, pid: int | str, *parts: str) -> Path:
        """<procfs>/<pid>/<parts...>; `pid` may be "self" or "1"."""
        return self.procfs.joinpath(str(pid), *parts)

    def net(self, pid: int | str, name: str) -> Path:
        """<procfs>/<pid>/net/<name>: the file as seen from pid's network namespace."""
        return self.procfs.joinpath(str(pid), "net", name)

    def netns_inode(self, pid: int | str) -> int:
        """Inode of pid's network namespace: the identity we key namespaces by.

        stat() follows the nsfs magic link; raises OSError when the process is gone.
        """
        return os.stat(self.proc(pid, "ns", "net")).st_ino

    def container_dir(self, container_id: str) -> Path:
        return self.docker_root / "containers" / container_id
