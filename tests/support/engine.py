"""A private Docker engine for the tests: its own data root, exec root and socket.

The tests start it themselves (so `pytest` works on a fresh machine once `docker.io` and
`busybox-static` are installed), or reuse one already answering on the same socket, or use
the engine named by DOCKWATCH_TEST_DOCKER_HOST. Test images are made with `docker import`
from a root filesystem built here: no registry is needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.toolbox import wait_for

BUSYBOX_IMAGE = "dockwatch-test/busybox:latest"
ENGINE_ROOT = Path(os.environ.get("DOCKWATCH_TEST_ENGINE_ROOT", "/tmp/dwtest-engine"))
# Applets the test images link to the static busybox.
APPLETS = (
    "sh ash cat cp dd echo env false grep head hostname httpd id ifconfig ip kill ls mkdir "
    "nc netstat ping printf ps rm route seq sleep tail tee timeout touch true uname wc wget xargs yes"
).split()


@dataclass
class Engine:
    """Handle on the test engine: the docker CLI bound to it, and restart for the chaos tests."""

    host: str  # unix:///path/docker.sock
    root: Path
    owned: bool
    proc: subprocess.Popen[bytes] | None = None
    _made: list[tuple[str, str]] = field(default_factory=list)

    @property
    def socket_path(self) -> str:
        return self.host.removeprefix("unix://")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    # --- CLI -----------------------------------------------------------------------------------
    def docker(self, *args: str, check: bool = True, timeout: float = 120, input: bytes | None = None) -> str:
        res = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, timeout=timeout, input=input
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {res.stderr.decode(errors='replace')}")
        return res.stdout.decode(errors="replace").strip()

    def ok(self, *args: str, timeout: float = 60) -> bool:
        """True when `docker <args>` exits 0 (e.g. an exec that may fail while a server starts)."""
        res = subprocess.run(["docker", *args], env=self.env, capture_output=True, timeout=timeout)
        return res.returncode == 0

    def inspect(self, obj: str) -> dict[str, Any]:
        data = json.loads(self.docker("inspect", obj))
        return dict(data[0])

    def pid(self, container: str) -> int:
        return int(self.inspect(container)["State"]["Pid"])

    def run(self, *args: str, name: str | None = None) -> str:
        """`docker run -d` a container that the session cleans up; returns its full id."""
        name = name or f"dwt-{uuid.uuid4().hex[:8]}"
        cid = self.docker("run", "-d", "--name", name, "--label", "dockwatch.test=1", *args)
        self._made.append(("container", cid))
        return cid

    def network(self, name: str, *args: str) -> str:
        nid = self.docker("network", "create", "--label", "dockwatch.test=1", *args, name)
        self._made.append(("network", nid))
        return nid

    def remove(self, *filters: str, check: bool = True) -> None:
        """`docker rm -f -v` every container matching the `ps` filters ("label=x", "name=^/p"), 25
        at a time: the CLI sends one call's removals all at once, and dockerd 20.10 was seen to
        stop answering removals midway through 500 of them."""
        args = [a for f in filters for a in ("--filter", f)]
        ids = self.docker("ps", "-aq", *args).split()
        for i in range(0, len(ids), 25):
            self.docker("rm", "-f", "-v", *ids[i : i + 25], check=check, timeout=300)

    def cleanup(self) -> None:
        """Remove what this handle made, newest first (containers before their networks)."""
        for kind, obj in reversed(self._made):
            if kind == "container":
                self.docker("rm", "-f", "-v", obj, check=False)
            else:
                self.docker("network", "rm", obj, check=False)
        self._made.clear()

    def reset(self) -> None:
        """Clear what an interrupted earlier session left in this data root; images stay (cache).

        dockerd restores its containers, networks, volumes and swarm membership from the data
        root, so a session killed midway hands the next one a swarm advertised on an underlay that
        no longer exists and, if two sessions shared the engine, two networks of one compose name
        ("network dwtcompose_default is ambiguous"). Called only on an engine whose dockerd this
        session started and found answering (Engine.start sets `owned`): no other session can be
        using it yet.
        """
        if self.docker("info", "--format", "{{.Swarm.LocalNodeState}}") != "inactive":
            self.docker("swarm", "leave", "--force", check=False, timeout=120)
        self.remove(check=False)
        builtin = {"bridge", "host", "none"}

        def no_networks_left() -> bool:
            # The ingress sandbox outlives `swarm leave` for a moment and holds docker_gwbridge.
            self.docker("network", "prune", "-f", check=False)
            left = set(self.docker("network", "ls", "--format", "{{.Name}}").split()) - builtin
            return not left

        wait_for(no_networks_left, timeout=60, interval=0.5, what="old networks to be removed")
        volumes = self.docker("volume", "ls", "-q").split()
        if volumes:
            self.docker("volume", "rm", "-f", *volumes, check=False)

    # --- lifecycle -----------------------------------------------------------------------------
    def ping(self) -> bool:
        res = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            env=self.env,
            capture_output=True,
            timeout=10,
        )
        return res.returncode == 0

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - lives as long as dockerd
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--iptables=false",
                f"--data-root={self.root / 'data'}",
                f"--exec-root={self.root / 'exec'}",
                f"--pidfile={self.root / 'dockerd.pid'}",
                f"--host={self.host}",
                "--userland-proxy=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # Minutes, not seconds, where the data root holds many containers: dockerd restores each
        # one's sandbox before it answers.
        wait_for(self.ping, timeout=300, interval=0.2, what=f"dockerd on {self.host} (log: {log.name})")
        # Ours only if the dockerd that answers is the one started here: another session's, still
        # restoring the same data root when we pinged, holds the pid file and ours exits.
        self.owned = self.proc.poll() is None and self._pidfile_pid() == self.proc.pid

    def stop(self) -> None:
        pid = self._dockerd_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            if self.proc is not None and self.proc.pid == pid:
                return self.proc.poll() is not None
            return False

        wait_for(gone, timeout=60, interval=0.1, what="dockerd to exit")

    def restart(self) -> None:
        """Stop and start dockerd on the same socket (the agent must survive this)."""
        self.stop()
        self.start()

    def _dockerd_pid(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        return self._pidfile_pid()

    def _pidfile_pid(self) -> int | None:
        """The pid the running dockerd wrote (the daemon that answers on this data root)."""
        try:
            return int((self.root / "dockerd.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    # --- images ------------------------------------------------------------------------------------
    def ensure_busybox_image(self) -> str:
        if self.docker("images", "-q", BUSYBOX_IMAGE):
            return BUSYBOX_IMAGE
        busybox = shutil.which("busybox")
        if busybox is None:
            raise RuntimeError("busybox not found: install Debian's busybox-static")
        with tempfile.TemporaryDirectory() as tmp:
            tar_path = Path(tmp) / "rootfs.tar"
            with tarfile.open(tar_path, "w") as tar:
                for d in ("bin", "tmp", "etc", "proc", "sys", "dev", "var/www"):
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o1777 if d == "tmp" else 0o755
                    tar.addfile(info)
                tar.add(busybox, arcname="bin/busybox")
                for applet in APPLETS:
                    info = tarfile.TarInfo(f"bin/{applet}")
                    info.type = tarfile.SYMTYPE
                    info.linkname = "busybox"
                    tar.addfile(info)
            self.docker("import", "--change", 'CMD ["sh"]', str(tar_path), BUSYBOX_IMAGE, timeout=300)
        return BUSYBOX_IMAGE


@contextlib.contextmanager
def test_engine() -> Iterator[Engine]:
    """The engine for a test session; started here unless one already answers."""
    given = os.environ.get("DOCKWATCH_TEST_DOCKER_HOST")
    if given:
        eng = Engine(host=given, root=ENGINE_ROOT, owned=False)
        if not eng.ping():
            raise RuntimeError(f"DOCKWATCH_TEST_DOCKER_HOST={given} does not answer")
    else:
        eng = Engine(host=f"unix://{ENGINE_ROOT / 'docker.sock'}", root=ENGINE_ROOT, owned=False)
        if not eng.ping():
            if shutil.which("dockerd") is None:
                raise RuntimeError("dockerd not found: install Debian's docker.io (see README, Tests)")
            eng.start()
            if eng.owned:
                eng.reset()
    eng.ensure_busybox_image()
    try:
        yield eng
    finally:
        eng.cleanup()
        # An engine the tests started is stopped in CI (and by tests/run.sh) so nothing is left
        # running; otherwise it stays up for fast reruns, and other test sessions may share it.
        if eng.owned and (os.environ.get("CI") or os.environ.get("DOCKWATCH_TEST_STOP_ENGINE")):
            eng.stop()
