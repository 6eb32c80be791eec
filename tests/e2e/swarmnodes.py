"""A swarm on this one machine: the test engine as manager, extra nodes as dockerds in namespaces.

    host network namespace                     one namespace set per extra node
    test engine (manager, the machine's name)
      └ br-dwt<tok>  198.18.K.1 ── veth ── eth0 198.18.K.2   dockerd, host name dwt<tok>-n2
                                 └─ veth ── eth0 198.18.K.3   dockerd, host name dwt<tok>-n3

The underlay is a bridge with an address from 198.18.0.0/15 (RFC 2544's benchmarking range:
never a Docker address pool, never this machine's network); swarm's control, gossip and VXLAN
traffic crosses it as it would cross a switch. Each extra node's dockerd runs in its own
- network namespace: its eth0 on that bridge, a default route via the manager's address;
- UTS namespace: the node's host name, which swarm, the agent's `node` label and Prometheus's
  `instance` all use;
- mount namespace: a private /run, and the manager's socket directory and data root with the
  node's own bound over them, so a service's bind sources written with the manager's paths name
  each node's own socket and data root, as /var/run/docker.sock and /var/lib/docker do on real
  nodes;
- pid namespace with its own /proc: dockerd is pid 1 there, so a container that bind-mounts /proc
  sees the node's processes, and /proc/1 (what the agent reads as the host's network namespace)
  is the node's dockerd in the node's network namespace, as on a real node. Stopping that
  dockerd ends every process of the node, like a machine going down.
`nsenter --net` + `unshare`, not `ip netns exec`: the latter remounts /sys, and dockerd then finds
no devices cgroup. Extra nodes keep dockerd's userland proxy (the default), so a port a task
publishes in `mode: host` answers on the node's underlay address from the host.

Teardown (`swarm_on`'s exit, also after a failure): each node's dockerd by its pid, its network
namespace (which takes its veth along), its directory; then the manager leaves the swarm, the
docker_gwbridge swarm made is removed, and the bridge.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.engine import Engine
from tests.support.toolbox import wait_for

UNDERLAY_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
TOOLS = ("ip", "nsenter", "unshare", "dockerd")


def sh(*args: str, check: bool = True, timeout: float = 60) -> str:
    res = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine has an address or a route in."""
    nets = []
    for line in sh("ip", "-4", "-o", "addr", "show").splitlines():
        words = line.split()
        if "inet" in words:
            nets.append(ipaddress.ip_interface(words[words.index("inet") + 1]).network)
    for line in sh("ip", "-4", "route", "show", "table", "all").splitlines():
        word = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            if word not in ("default", "broadcast", "local", "unreachable"):
                nets.append(ipaddress.ip_network(word, strict=False))
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


@dataclass
class Underlay:
    """The bridge the nodes' eth0 hang on; the manager advertises its address."""

    bridge: str
    net: ipaddress.IPv4Network

    @property
    def gateway(self) -> str:
        return str(self.net.network_address + 1)

    def address(self, index: int) -> str:
        return str(self.net.network_address + index)

    @classmethod
    def create(cls, token: str) -> Underlay:
        used = _used_networks()
        for net in UNDERLAY_RANGE.subnets(new_prefix=24):
            if net.network_address.packed[2] == 0 or any(net.overlaps(u) for u in used):
                continue
            # "br-" like Docker's own bridges, so agents leave it out of the host namespace's series.
            u = cls(f"br-dwt{token}", net)
            sh("ip", "link", "add", u.bridge, "type", "bridge")
            try:
                sh("ip", "addr", "add", f"{u.gateway}/{net.prefixlen}", "dev", u.bridge)
                sh("ip", "link", "set", u.bridge, "up")
            except Exception:
                u.remove()
                raise
            return u
        raise RuntimeError(f"no free /24 in {UNDERLAY_RANGE}")

    def remove(self) -> None:
        sh("ip", "link", "del", self.bridge, check=False)


@dataclass
class Node:
    """One extra swarm node: a dockerd in its own network, UTS, mount and pid namespaces."""

    name: str  # host name, also the network namespace's name
    index: int  # its underlay address is .index
    underlay: Underlay
    workdir: Path
    # Manager path -> the node's directory bound over it, in mount order.
    binds: list[tuple[str, Path]]
    socket_path: str  # the manager's socket path, which is the node's too inside its namespace
    data_root: str
    proc: subprocess.Popen[bytes] | None = None
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = Engine(
            host=f"unix://{self.host_path(self.socket_path)}", root=self.workdir, owned=False
        )

    @property
    def address(self) -> str:
        return self.underlay.address(self.index)

    @property
    def veth(self) -> str:
        # "veth" like Docker's, so agents leave the host end out of the host namespace's series.
        return f"veth{self.underlay.bridge.removeprefix('br-dwt')}{self.index}"

    def host_path(self, path: str) -> Path:
        """Where a path inside the node's mount namespace is on the host (longest bind wins)."""
        best = max((t for t, _ in self.binds if path == t or path.startswith(t.rstrip("/") + "/")), key=len)
        source = dict(self.binds)[best]
        return source / os.path.relpath(path, best)

    # --- lifecycle -------------------------------------------------------------------------------
    def create_network(self) -> None:
        ns, u = self.name, self.underlay
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", self.veth, "master", u.bridge, "up")
        sh("ip", "-n", ns, "addr", "add", f"{self.address}/{u.net.prefixlen}", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", u.gateway)

    def start(self) -> None:
        """Start (or restart) the node's dockerd; returns once its API answers."""
        q = shlex.quote
        script = [f"hostname {q(self.name)}"]
        for target, source in self.binds:
            source.mkdir(parents=True, exist_ok=True)
            script += [f"mkdir -p {q(target)}", f"mount --bind {q(str(source))} {q(target)}"]
        script.append(
            "exec dockerd --iptables=false --ip6tables=false"
            f" --host=unix://{q(self.socket_path)} --data-root={q(self.data_root)}"
        )
        log = open(self.workdir / "dockerd.log", "ab")  # noqa: SIM115 - lives as long as dockerd
        # --kill-child: should unshare itself be killed, dockerd (pid 1 of the node) goes too.
        self.proc = subprocess.Popen(
            [
                "nsenter",
                f"--net=/var/run/netns/{self.name}",
                "unshare",
                "--uts",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "--propagation",
                "private",
                "sh",
                "-ec",
                "\n".join(script),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(
            lambda: self.proc is not None and self.proc.poll() is None and self.engine.ping(),
            timeout=60,
            interval=0.2,
            what=f"dockerd of {self.name} (log: {self.workdir / 'dockerd.log'})",
        )

    def dockerd_pid(self) -> int | None:
        """dockerd's pid as the host sees it: the one child of unshare."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM the node's dockerd (it stops its containers), SIGKILL it after `timeout`."""
        if self.proc is None:
            return
        pid = self.dockerd_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # pid 1 of the node's pid namespace: every process of the node dies with it.
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def destroy(self) -> None:
        """Everything the node made: dockerd, namespace (with its veth), directory."""
        try:
            self.stop()
        finally:
            sh("ip", "netns", "delete", self.name, check=False)
            sh("ip", "link", "del", self.veth, check=False)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def dockerd_log(self) -> str:
        return (self.workdir / "dockerd.log").read_text(errors="replace")[-4000:]


@dataclass
class Swarm:
    """The test engine as the only manager, plus nodes added with `add_nodes`."""

    manager: Engine
    underlay: Underlay
    token: str
    workdir: Path
    hostname: str = ""
    nodes: list[Node] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [self.hostname, *(n.name for n in self.nodes)]

    def add_nodes(self, count: int, images: list[str]) -> list[Node]:
        """Start `count` nodes, give each the images (`docker save | load`), join them as workers."""
        socket_path = self.manager.socket_path
        data_root = self.manager.docker("info", "--format", "{{.DockerRootDir}}")
        new = []
        for _ in range(count):
            index = len(self.nodes) + 2
            name = f"dwt{self.token}-n{index}"
            workdir = self.workdir / name
            binds = [("/run", workdir / "run")]
            sock_dir = os.path.realpath(os.path.dirname(socket_path))
            if sock_dir != "/run":
                binds.append((sock_dir, workdir / "sock"))
            binds.append((os.path.realpath(data_root), workdir / "data"))
            node = Node(name, index, self.underlay, workdir, binds, socket_path, data_root)
            workdir.mkdir(parents=True)
            self.nodes.append(node)  # from here on, teardown takes it down
            node.create_network()
            node.start()
            new.append(node)

        tar = self.workdir / "images.tar"
        self.manager.docker("save", "-o", str(tar), *images, timeout=300)
        errors: list[str] = []

        def load(node: Node) -> None:
            try:
                node.engine.docker("load", "-i", str(tar), timeout=300)
            except Exception as exc:  # reported below, after every load finished
                errors.append(f"{node.name}: {exc}")

        threads = [threading.Thread(target=load, args=(n,)) for n in new]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        tar.unlink()
        assert not errors, errors

        join_token = self.manager.docker("swarm", "join-token", "-q", "worker")
        for node in new:
            node.engine.docker(
                "swarm",
                "join",
                "--token",
                join_token,
                "--advertise-addr",
                node.address,
                "--listen-addr",
                f"{node.address}:2377",
                f"{self.underlay.gateway}:2377",
            )

        def all_ready() -> bool:
            out = self.manager.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}")
            ready = {line.split()[0] for line in out.splitlines() if line.endswith(" Ready")}
            return {n.name for n in new} <= ready

        wait_for(all_ready, timeout=60, interval=0.5, what="the new nodes to be Ready")
        return new


@contextlib.contextmanager
def swarm_on(engine: Engine, workdir: Path) -> Iterator[Swarm]:
    """Init a swarm on the test engine, advertised on a fresh underlay; leave it all as found."""
    state = engine.docker("info", "--format", "{{.Swarm.LocalNodeState}}")
    if state != "inactive":
        raise RuntimeError(f"the test engine is already in a swarm ({state}): another test did not leave it")
    had_gwbridge = bool(engine.docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$"))
    token = uuid.uuid4().hex[:6]
    underlay = Underlay.create(token)
    swarm = Swarm(engine, underlay, token, workdir)
    try:
        engine.docker(
            "swarm",
            "init",
            "--advertise-addr",
            underlay.gateway,
            "--listen-addr",
            f"{underlay.gateway}:2377",
        )
        swarm.hostname = engine.docker("node", "inspect", "self", "--format", "{{.Description.Hostname}}")
        yield swarm
    finally:
        try:
            for node in reversed(swarm.nodes):
                node.destroy()
        finally:
            try:
                engine.docker("swarm", "leave", "--force", check=False)
                if not had_gwbridge:  # swarm made it; leaving does not remove it
                    # Until the ingress sandbox is gone (after the leave returns) it has an endpoint.
                    wait_for(
                        lambda: (
                            engine.ok("network", "rm", "docker_gwbridge")
                            or not engine.docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$")
                        ),
                        timeout=60,
                        interval=0.5,
                        what="docker_gwbridge to be removed",
                    )
            finally:
                underlay.remove()
