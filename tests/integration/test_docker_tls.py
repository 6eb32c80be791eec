"""DOCKER_HOST=tcp:// with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, against a real dockerd on TLS.

The shared test engine listens on a unix socket only, so this module starts a second, short-lived
dockerd that cannot disturb it: its own data root, exec root (so its own containerd), pidfile,
unix socket and config file, a cgroup parent of its own, no iptables, no ip_forward sysctl, and a
TCP listener on 127.0.0.1 only, with `--tlsverify` and certificates the test makes (a CA, the
engine's certificate for 127.0.0.1, a client certificate). Its default network is a bridge this
test creates with a TEST-NET-style address (198.18.x.1/24) and deletes afterwards. Not
`--bridge=none`: dockerd then deletes the host's `docker0`, the shared engine's bridge (moby's
removeDefaultBridgeInterface). Its containers use `--network none`. It is stopped, and its
bridge, cgroups and directory removed, at the end of the module.

The docker CLI is given exactly the environment the agent is given, to show both read it alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.agentproc import REPO, free_port, one, parse
from tests.support.certs import PKI, make_pki
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.toolbox import wait_for

pytestmark = pytest.mark.docker


@dataclass
class TLSEngine:
    tcp: str  # tcp://127.0.0.1:PORT (TLS)
    local: Engine  # the same daemon over its private unix socket, for setup
    pki: PKI
    certs: Path  # a DOCKER_CERT_PATH: ca.pem, cert.pem, key.pem (the client's)
    root: Path


@pytest.fixture(scope="module")
def tls_engine() -> Iterator[TLSEngine]:
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd not installed")
    # Short: containerd's sockets live under the exec root (unix socket paths max 107 bytes).
    root = Path(tempfile.mkdtemp(prefix="dwtls-", dir="/tmp"))
    pki = make_pki(root / "pki")
    certs = root / "client"
    certs.mkdir()
    shutil.copy(pki.ca.cert, certs / "ca.pem")
    shutil.copy(pki.client.cert, certs / "cert.pem")
    shutil.copy(pki.client.key, certs / "key.pem")
    (root / "daemon.json").write_text("{}\n")  # not the host's /etc/docker/daemon.json
    # Its own bridge, never docker0: see the module docstring.
    bridge = f"dwtls{uuid.uuid4().hex[:6]}"
    had_docker0 = Path("/sys/class/net/docker0").exists()
    port = free_port()
    sock = root / "docker.sock"
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 - lives as long as dockerd
    proc: subprocess.Popen[bytes] | None = None
    local: Engine | None = None
    try:
        subprocess.run(
            ["ip", "link", "add", "name", bridge, "type", "bridge"], check=True, capture_output=True
        )
        subprocess.run(
            ["ip", "addr", "add", f"198.18.{int(bridge[-2:], 16)}.1/24", "dev", bridge],
            check=True,
            capture_output=True,
        )
        proc = subprocess.Popen(
            [
                "dockerd",
                f"--config-file={root / 'daemon.json'}",
                f"--data-root={root / 'data'}",
                f"--exec-root={root / 'exec'}",
                f"--pidfile={root / 'dockerd.pid'}",
                f"--host=unix://{sock}",
                f"--host=tcp://127.0.0.1:{port}",
                "--tlsverify",
                f"--tlscacert={pki.ca.cert}",
                f"--tlscert={pki.server.cert}",
                f"--tlskey={pki.server.key}",
                f"--bridge={bridge}",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                f"--cgroup-parent=/{root.name}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        local = Engine(host=f"unix://{sock}", root=root, owned=True, proc=proc)
        wait_for(local.ping, timeout=60, interval=0.2, what=f"the TLS dockerd (log: {root / 'dockerd.log'})")
        # The shared engine's bridge is still there (the whole point of our own bridge).
        assert Path("/sys/class/net/docker0").exists() or not had_docker0, "the TLS dockerd removed docker0"
        local.ensure_busybox_image()
        yield TLSEngine(f"tcp://127.0.0.1:{port}", local, pki, certs, root)
    finally:
        if local is not None:
            local.cleanup()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        # Mounts the daemon may leave behind under its own root, then the directory itself.
        mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(str(root))), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        # The empty cgroup parent it made, in each controller (v1) or the unified tree (v2).
        cgroups = Path("/sys/fs/cgroup")
        for d in [*cgroups.glob(f"*/{root.name}"), cgroups / root.name]:
            with contextlib.suppress(OSError):
                d.rmdir()
        assert Path("/sys/class/net/docker0").exists() or not had_docker0, "docker0 vanished"


def docker_env(e: TLSEngine, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKWATCH_"))}
    return {**env, "DOCKER_HOST": e.tcp, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(e.certs), **extra}


class EnvAgent:
    """The agent as `dockwatch run` with only environment variables telling it where dockerd is."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / f"agent-{uuid.uuid4().hex[:6]}.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "run",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--path.state={tmp / 'state'}",
                "--log.level=debug",
            ],
            env={**env, "PYTHONPATH": str(REPO)},
            cwd=REPO,
            stdout=open(self.log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> tuple[int, str]:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


@contextlib.contextmanager
def env_agent(env: dict[str, str], tmp: Path) -> Iterator[EnvAgent]:
    a = EnvAgent(env, tmp)
    try:
        yield a
    finally:
        a.stop()


def test_the_docker_cli_and_the_agent_read_the_same_environment(
    tls_engine: TLSEngine, tmp_path: Path
) -> None:
    env = docker_env(tls_engine)
    res = subprocess.run(
        ["docker", "version", "--format", "{{json .Server}}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    server_version = json.loads(res.stdout)["Version"]
    name = f"dwt-tls-{uuid.uuid4().hex[:6]}"
    with env_agent(env, tmp_path) as agent:
        wait_for(
            lambda: agent.get("/readyz")[0] == 200, timeout=30, what=f"agent ready over TLS ({agent.log})"
        )
        m = parse(agent.get("/metrics")[1])
        assert one(m, "dockwatch_engine_connected") == 1
        (info,) = m["dockwatch_build_info"]
        assert info[0]["engine_version"] == server_version
        # A container started on that engine reaches the agent through the TLS event stream.
        tls_engine.local.run("--network", "none", BUSYBOX_IMAGE, "sleep", "600", name=name)

        def listed() -> bool:
            return any(
                lbl["name"] == name
                for lbl, _ in parse(agent.get("/metrics")[1]).get("dockwatch_container_info", [])
            )

        wait_for(listed, timeout=30, what="the TLS engine's container on /metrics")
        assert agent.stop() == 0, agent.log.read_text()[-3000:]


def not_ready_because(agent: EnvAgent, *words: str) -> str:
    def why() -> str:
        status, body = agent.get("/readyz")
        return body if status == 503 and all(w in body for w in words) else ""

    return str(wait_for(why, timeout=30, what=f"/readyz to say {words} ({agent.log})"))


def test_an_engine_it_cannot_verify_is_not_trusted(tls_engine: TLSEngine, tmp_path: Path) -> None:
    certs = tmp_path / "other"
    certs.mkdir()
    shutil.copy(tls_engine.pki.other_ca.cert, certs / "ca.pem")
    shutil.copy(tls_engine.certs / "cert.pem", certs / "cert.pem")
    shutil.copy(tls_engine.certs / "key.pem", certs / "key.pem")
    with env_agent(docker_env(tls_engine, DOCKER_CERT_PATH=str(certs)), tmp_path) as agent:
        not_ready_because(agent, "certificate verify failed")
        assert "dockwatch_engine_connected 0.0" in agent.get("/metrics")[1]


def test_without_a_client_certificate_the_engine_refuses(tls_engine: TLSEngine, tmp_path: Path) -> None:
    certs = tmp_path / "ca-only"
    certs.mkdir()
    shutil.copy(tls_engine.certs / "ca.pem", certs / "ca.pem")
    with env_agent(docker_env(tls_engine, DOCKER_CERT_PATH=str(certs)), tmp_path) as agent:
        # dockerd ends the handshake with a TLS alert: no client certificate it can verify.
        not_ready_because(agent, "bad certificate")
        assert "dockwatch_engine_connected 0.0" in agent.get("/metrics")[1]


def test_plain_tcp_to_the_tls_port_is_not_ready(tls_engine: TLSEngine, tmp_path: Path) -> None:
    env = docker_env(tls_engine)
    del env["DOCKER_TLS_VERIFY"]  # as with the CLI: no TLS asked for, plain HTTP to a TLS port
    with env_agent(env, tmp_path) as agent:
        not_ready_because(agent, "400")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"DOCKER_HOST": "ssh://me@engine"}, "DOCKER_HOST: 'ssh://me@engine' is not supported"),
        (
            {
                "DOCKER_HOST": "tcp://127.0.0.1:1",
                "DOCKER_TLS_VERIFY": "1",
                "DOCKER_CERT_PATH": "/nonexistent",
            },
            "DOCKER_CERT_PATH: '/nonexistent' has no readable ca.pem",
        ),
    ],
)
def test_unusable_docker_environment_is_one_error(env: dict[str, str], says: str) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKWATCH_"))}
    res = subprocess.run(
        [sys.executable, "-m", "agent", "run"],
        env={**base, **env, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], res.stderr
