"""Issue 15: deploy/stack.yaml on a three-node swarm on this machine: what one node cannot show.

    manager = the test engine (the machine's host name); nodes 2 and 3 = dockerds in their own
    namespaces (tests/e2e/swarmnodes.py), joined over an underlay bridge.
    stack `dwtm` = deploy/stack.yaml's agent (global) and Prometheus (on the manager, with the
    shipped prometheus-swarm.yml), adapted as tests/e2e/swarmstack.py says, plus
      logsink  a line collector on the manager, on the agents' overlay network (Python stdlib);
      server   on node 3, reads what it is sent and prints the count;
      client   on node 2, idle until the test execs one send; server and client on `traffic`,
               an overlay network;
    and on every node a plain marker container that logs one line naming its node.

The agent service is the stack's own with two additions in its environment: the port
(swarmstack.py) and a syslog sink (rfc5424micro: HOST is the agent's node) to `logsink`, for the
marker and server containers only (the manager is shared with other tests' containers).

Asserted in this order (5 last, since it disturbs the rest):
1. one agent task per node, healthy, unprivileged as swarm ran it; the shipped dockerswarm_sd
   config discovers three targets, all up, `instance` = each node's host name.
2. each node's agent reports exactly its node's containers (the same set as its engine lists on
   the extra nodes; on the shared manager, between two listings taken around the scrape), each
   marker on its own node's agent only, and `node` = that node on every series.
3. the client on node 2 sends SEND bytes to the server on node 3 over the overlay: the client's
   transmit delta on node 2's agent equals the server's receive delta on node 3's agent, and the
   reverse direction likewise, on the overlay interface labelled with the overlay network and
   the stack/service/task. Bound: equal to the byte, but for ARP requests that the overlay's
   ARP proxy on the sending node answers itself (sent, never received remotely): at most
   ARP_SLACK frames, each exactly ARP_FRAME bytes. (Measured: 0 in every run so far.)
4. every node's agent ships its marker's line; every record's HOST is the node its container runs
   on (the container id in APP-NAME is checked against that node's engine).
6. every dashboard panel that filters by `$node`, evaluated at one instant, gives over all nodes
   what its per-node queries give together (sum; max/min for those; top k of the union for
   topk); the per-node panels see all three nodes; "Running containers" of each extra node equals
   its engine's count.
5. node 3's dockerd stops (SIGTERM): the other two agents keep serving and Prometheus keeps
   scraping them, Prometheus shows node 3's target down (`up` 0), each dashboard's node variable
   lists exactly the two live nodes; it starts again: node 3 runs a new agent task, Prometheus
   scrapes it, and its series (and its marker's, `--restart always`) are back.

Swarm marks a node Down after about three missed heartbeat periods and then sets its tasks'
desired state to shutdown, and the shipped discovery config (it keeps desired_state=running) drops
the target at its next refresh (30 s). With swarm's default 5 s period a stopped node's target is
therefore down for at most one refresh interval and then gone from Prometheus (so `up == 0` for
5 m, DockwatchTargetDown, cannot fire for it). (Measured here: the target down 1-15 s after
the stop, the node Down after 14 s, the target gone after 30 s.) The test sets the period to 30 s
(node Down after about a minute), so that "down" is seen first whatever the phases of scrape and
refresh.

Host-namespace series (name=""): an extra node's agent reads /proc/1/net/* of its own pid
namespace, i.e. its node's dockerd in the node's network namespace (swarmnodes.py). They are
that node's eth0 on the underlay, as on a real node (checked for node 2 against the kernel's
counters of that eth0); the manager's are the machine's. Per node, never summed across nodes
(the dashboards' host panels are by node).
"""

from __future__ import annotations

import math
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from agent import procnet
from tests.e2e.baseimage import BASE_IMAGE
from tests.e2e.harness import REPO, http_get
from tests.e2e.swarmnodes import Node, Swarm
from tests.e2e.swarmstack import deployed, gwbridge_ip, query, shipped_stack, targets, task_container
from tests.support.agentproc import Series, free_port, parse
from tests.support.dashboard_queries import dashboard_queries
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.toolbox import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

T = TypeVar("T")

STACK = "dwtm"
SEND = 1 << 20
ARP_FRAME = 42  # Ethernet header + ARP body; veths do not pad
ARP_SLACK = 2
SERVER_PORT = 9000
SYSLOG_PORT = 5140
HEARTBEAT = "30s"
# The line collector: each received line appended to /out/records.log.
COLLECTOR = f"""
import socketserver, threading
lock = threading.Lock()
out = open('/out/records.log', 'ab', buffering=0)
class Lines(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            with lock:
                out.write(line)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(('', {SYSLOG_PORT}), Lines).serve_forever()
"""
# A reader that drains each connection to its end (busybox `nc -l` would close at its own stdin's end).
SERVER = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('', {SERVER_PORT}))
s.listen()
print('listening', flush=True)
while True:
    c, _ = s.accept()
    n = 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        n += len(b)
    c.close()
    print('received', n, flush=True)
"""
# RFC 5424: <PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID SD MSG
RECORD = re.compile(r"^<\d+>1 (\S+) (\S+) (\S+) (\S+) (\S+) - (.*)$")


def settled(read: Callable[[], T], what: str, timeout: float = 30) -> T:
    """`read()` once two consecutive reads agree (counters that stopped moving)."""
    last: list[T] = []

    def same() -> T | None:
        now = read()
        if last and last[-1] == now:
            return now
        last.append(now)
        return None

    value: T = wait_for(same, timeout=timeout, interval=0.5, what=what)
    return value


def scrape(url: str) -> dict[str, Series]:
    return parse(http_get(f"{url}/metrics", timeout=15))


def select(m: dict[str, Series], metric: str, **want: str) -> Series:
    return [(lbl, v) for lbl, v in m.get(metric, []) if all(lbl.get(k) == w for k, w in want.items())]


def running_names(engine: Engine) -> set[str]:
    return set(engine.docker("ps", "--format", "{{.Names}}").split())


def agent_task(engine: Engine) -> str:
    return task_container(engine, f"{STACK}_dockwatch")


@dataclass
class Cluster:
    swarm: Swarm
    engines: dict[str, Engine]  # node name -> its engine
    prom: str
    agent_port: int
    markers: dict[str, str]  # node name -> its marker container's name

    def agent_url(self, node: str) -> str:
        """The manager's agent on its docker_gwbridge address; an extra node's on the node's address
        (the port it publishes in mode host, through that node's userland proxy)."""
        if node == self.swarm.hostname:
            return (
                f"http://{gwbridge_ip(self.engines[node], agent_task(self.engines[node]))}:{self.agent_port}"
            )
        return f"http://{self.node(node).address}:{self.agent_port}"

    def node(self, name: str) -> Node:
        return next(n for n in self.swarm.nodes if n.name == name)


def stack_for_test(
    engine: Engine, agent_image: str, agent_port: int, n2: Node, n3: Node, logdir: Path
) -> dict[str, Any]:
    stack = shipped_stack(engine, agent_image, agent_port)
    agent = stack["services"]["dockwatch"]
    # The default tag ({{.ID}}): swarm would expand other {{...}} in a service's environment itself.
    agent["environment"]["DOCKWATCH_LOGS_SINKS"] = yaml.safe_dump(
        [
            {
                "name": "central",
                "driver": "syslog",
                "options": {
                    "syslog-address": f"tcp://logsink:{SYSLOG_PORT}",
                    "syslog-format": "rfc5424micro",
                },
                "include": {"name": rf"^({STACK}-mark-|{STACK}_server\.)"},
            }
        ]
    )

    def on(constraint: str) -> dict[str, Any]:
        return {"placement": {"constraints": [constraint]}}

    stack["services"]["logsink"] = {
        "image": BASE_IMAGE,
        "command": ["python3", "-c", COLLECTOR],
        "volumes": [{"type": "bind", "source": str(logdir), "target": "/out"}],
        "networks": ["monitoring"],
        # dnsrr: `logsink` resolves to the task; a service VIP needs IPVS, which this kernel lacks.
        "deploy": {"endpoint_mode": "dnsrr", **on("node.role == manager")},
        "stop_grace_period": "1s",
    }
    stack["services"]["server"] = {
        "image": BASE_IMAGE,
        "command": ["python3", "-c", SERVER],
        "networks": ["traffic"],
        "deploy": {"endpoint_mode": "dnsrr", **on(f"node.hostname == {n3.name}")},
        "stop_grace_period": "1s",
    }
    stack["services"]["client"] = {
        "image": BUSYBOX_IMAGE,
        "command": ["sleep", "3600"],
        "networks": ["traffic"],
        "deploy": on(f"node.hostname == {n2.name}"),
        "stop_grace_period": "1s",
    }
    stack["networks"]["traffic"] = {"driver": "overlay"}
    return stack


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus package is not installed")
def test_three_nodes(engine: Engine, swarm: Swarm, agent_image: str, tmp_path: Path) -> None:
    took: dict[str, float] = {}
    t0 = mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        took[name] = now - mark
        mark = now

    # Kept well apart from the scrape interval: see the module's docstring.
    engine.docker("swarm", "update", "--dispatcher-heartbeat", HEARTBEAT)
    n2, n3 = swarm.add_nodes(2, [agent_image, BASE_IMAGE, BUSYBOX_IMAGE])
    engines = {swarm.hostname: engine, n2.name: n2.engine, n3.name: n3.engine}
    token = uuid.uuid4().hex[:6]
    markers = {}
    for name, eng in engines.items():
        markers[name] = f"{STACK}-mark-{token}-{name}"
        # No network: a marker needs none, and the shared engine's docker0 is not this test's.
        eng.run(
            "--network",
            "none",
            "--restart",
            "always",
            "--stop-timeout",
            "1",
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            f"echo marker of {name}; exec sleep 3600",
            name=markers[name],
        )
    phase("nodes")

    logdir = tmp_path / "logs"
    logdir.mkdir()
    agent_port = free_port()
    stack = stack_for_test(engine, agent_image, agent_port, n2, n3, logdir)
    with deployed(engine, stack, STACK, tmp_path):
        prom_task = wait_for(
            lambda: task_container(engine, f"{STACK}_prometheus"), timeout=90, what="Prometheus"
        )
        c = Cluster(swarm, engines, f"http://{gwbridge_ip(engine, prom_task)}:9090", agent_port, markers)
        agents_and_discovery(c)
        phase("1 agents, discovery")
        each_node_reports_its_own(c)
        phase("2 own containers")
        overlay_bytes_match(c, n2, n3)
        phase("3 overlay traffic")
        logs_name_their_node(c, logdir)
        phase("4 logs")
        dashboards_add_up(c)
        phase("6 dashboards")
        node_stops_and_returns(c, n3)
        phase("5 node down/up")
    phase("teardown of the stack")
    took["total (without node teardown)"] = time.monotonic() - t0
    print("\n" + "\n".join(f"  {k}: {v:.0f} s" for k, v in took.items()))


def agents_and_discovery(c: Cluster) -> None:
    """1. One healthy, unprivileged agent task per node; three targets up, instance = node."""
    names = set(c.engines)

    def running_per_node() -> bool:
        out = c.engines[c.swarm.hostname].docker(
            "service", "ps", f"{STACK}_dockwatch", "--filter", "desired-state=running",
            "--format", "{{.Node}} {{.CurrentState}}",
        )  # fmt: skip
        running = [line.split()[0] for line in out.splitlines() if line.split()[1] == "Running"]
        assert sorted(running) == sorted(names), out
        return True

    # Swarm reports a task with a healthcheck Running once it is healthy.
    wait_for(running_per_node, timeout=180, interval=1, what="one running agent task per node")
    for name, eng in c.engines.items():
        state = eng.inspect(agent_task(eng))
        assert state["State"]["Health"]["Status"] == "healthy", name
        hc = state["HostConfig"]
        assert hc["Privileged"] is False, name
        assert not hc["CapAdd"], name
        assert hc["CapDrop"] == ["ALL"], name
        assert hc["PidMode"] != "host", name
        assert hc["ReadonlyRootfs"] is True, name

    def three_up() -> list[dict[str, Any]]:
        ts = targets(c.prom)
        assert sorted(t["labels"]["instance"] for t in ts) == sorted(names), ts
        for t in ts:
            assert t["health"] == "up", f"{t['scrapeUrl']}: {t['lastError']}"
        return ts

    for t in wait_for(three_up, timeout=120, interval=1, what="Prometheus to scrape three agents"):
        d = t["discoveredLabels"]
        assert d["__meta_dockerswarm_node_hostname"] == t["labels"]["instance"]
        assert d["__meta_dockerswarm_service_name"] == f"{STACK}_dockwatch"
        assert d["__meta_dockerswarm_network_name"] == "dockwatch-monitoring"


def exactly_its_containers(eng: Engine, url: str) -> dict[str, Series]:
    """A scrape whose containers are the engine's, listed just before and just after it."""
    before = running_names(eng)
    m = scrape(url)
    after = running_names(eng)
    got = {lbl["name"] for lbl, _ in m["dockwatch_container_info"]}
    # The manager is shared: others' containers may come and go around the scrape.
    assert before & after <= got <= before | after, got ^ (before & after)
    return m


def each_node_reports_its_own(c: Cluster) -> None:
    """2. Each agent: exactly its node's containers, every series labelled with its node."""
    for name, eng in c.engines.items():
        url = c.agent_url(name)
        m = wait_for(
            partial(exactly_its_containers, eng, url),
            timeout=60,
            interval=1,
            what=f"{name}'s agent to list its engine's containers",
        )
        got = {lbl["name"] for lbl, _ in m["dockwatch_container_info"]}
        for other, marker in c.markers.items():
            assert (marker in got) == (other == name), (name, marker)
        nodes = {lbl["node"] for series in m.values() for lbl, _ in series if "node" in lbl}
        assert nodes == {name}, nodes

    for name, marker in c.markers.items():
        res = wait_for(
            partial(query, c.prom, f'dockwatch_container_info{{name="{marker}"}}'),
            timeout=60,
            interval=1,
            what=f"{marker} in Prometheus",
        )
        assert [(r["metric"]["node"], r["metric"]["instance"]) for r in res] == [(name, name)], res

    # Node 2's host namespace is node 2's: its eth0 between two kernel reads around a scrape.
    n2 = c.swarm.nodes[0]

    def kernel_rx() -> int:
        pid = n2.dockerd_pid()
        assert pid is not None
        return procnet.parse_net_dev(Path(f"/proc/{pid}/net/dev").read_text())["eth0"].rx_bytes

    before = kernel_rx()
    host = select(scrape(c.agent_url(n2.name)), "container_network_receive_bytes_total", name="")
    after = kernel_rx()
    assert [lbl["interface"] for lbl, _ in host] == ["eth0"], host
    assert host[0][0]["node"] == n2.name
    assert before <= host[0][1] <= after, (before, host, after)


@dataclass(frozen=True)
class Dev:
    tx_bytes: float
    tx_packets: float
    rx_bytes: float
    rx_packets: float


def overlay_bytes_match(c: Cluster, n2: Node, n3: Node) -> None:
    """3. Client tx on node 2's agent == server rx on node 3's agent (and back), on the overlay."""
    net = f"{STACK}_traffic"
    client = wait_for(lambda: task_container(n2.engine, f"{STACK}_client"), timeout=60, what="the client")
    server = wait_for(lambda: task_container(n3.engine, f"{STACK}_server"), timeout=60, what="the server")
    wait_for(lambda: "listening" in n3.engine.docker("logs", server), timeout=60, what="the server to listen")
    ip = n3.engine.inspect(server)["NetworkSettings"]["Networks"][net]["IPAddress"]
    who = {
        "client": (n2, n2.engine.inspect(client)["Name"].lstrip("/"), f"{STACK}_client"),
        "server": (n3, n3.engine.inspect(server)["Name"].lstrip("/"), f"{STACK}_server"),
    }

    def dev(role: str) -> tuple[Dev, dict[str, str]]:
        node, name, service = who[role]
        m = scrape(c.agent_url(node.name))
        one = {}
        for metric in ("transmit_bytes", "transmit_packets", "receive_bytes", "receive_packets"):
            got = select(m, f"container_network_{metric}_total", name=name, network=net)
            assert len(got) == 1, (role, metric, got)
            one[metric] = got[0]
        labels = one["transmit_bytes"][0]
        assert (labels["node"], labels["stack"], labels["service"]) == (node.name, STACK, service), labels
        assert labels["task"].startswith(f"{service}.1."), labels
        return Dev(*(one[k][1] for k in one)), labels

    def both() -> tuple[Dev, Dev]:
        return dev("client")[0], dev("server")[0]

    before = settled(both, "quiet overlay counters before the send")
    n2.engine.docker("exec", client, "sh", "-c", f"head -c {SEND} /dev/zero | nc {ip} {SERVER_PORT}")
    wait_for(
        lambda: f"received {SEND}" in n3.engine.docker("logs", server),
        timeout=60,
        what="the server to read every byte",
    )
    after = settled(both, "the overlay counters to stop moving after the send")
    (cb, sb), (ca, sa) = before, after
    for sent_b, sent_p, got_b, got_p, what in (
        (ca.tx_bytes - cb.tx_bytes, ca.tx_packets - cb.tx_packets, sa.rx_bytes - sb.rx_bytes,
         sa.rx_packets - sb.rx_packets, "client tx / server rx"),
        (sa.tx_bytes - sb.tx_bytes, sa.tx_packets - sb.tx_packets, ca.rx_bytes - cb.rx_bytes,
         ca.rx_packets - cb.rx_packets, "server tx / client rx"),
    ):  # fmt: skip
        arp = sent_p - got_p
        print(f"\n  {what}: {sent_b:.0f} / {got_b:.0f} bytes, {sent_p:.0f} / {got_p:.0f} packets")
        assert 0 <= arp <= ARP_SLACK, (what, sent_p, got_p)
        assert sent_b - got_b == ARP_FRAME * arp, (what, sent_b, got_b, sent_p, got_p)
    assert sa.rx_bytes - sb.rx_bytes > SEND


def logs_name_their_node(c: Cluster, logdir: Path) -> None:
    """4. Every node's agent ships its marker's line; each record's HOST is its container's node."""
    path = logdir / "records.log"

    def records() -> list[tuple[str, str, str]]:
        out = []
        for line in path.read_text(errors="replace").splitlines():
            m = RECORD.match(line)
            assert m, line
            _, host, app, _, _, msg = m.groups()
            out.append((host, app, msg))
        return out

    def every_marker() -> list[tuple[str, str, str]]:
        got = records()
        assert {msg for _, _, msg in got} >= {f"marker of {n}" for n in c.engines}, got
        return got

    got = wait_for(every_marker, timeout=60, interval=1, what="every node's marker line at the collector")
    ids = {n: set(e.docker("ps", "-aq", "--no-trunc").split()) for n, e in c.engines.items()}
    for host, app, msg in got:
        assert host in c.engines, (host, msg)
        # APP-NAME is the default tag, the container's short id: a container of HOST's engine.
        assert any(i.startswith(app) for i in ids[host]), (host, app, msg)
        if msg.startswith("marker of "):
            assert msg == f"marker of {host}", (host, msg)
    n3 = c.swarm.nodes[1].name
    assert (n3, f"received {SEND}") in {(h, msg) for h, _, msg in got}, "the server task's line from node 3"


def _key(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(metric.items()))


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def combine(expr: str, parts: list[list[dict[str, Any]]]) -> dict[Any, float] | list[float]:
    """What the query over all nodes must return, from its per-node results."""
    head = expr.lstrip()
    # label_replace / label_join only rename labels (the legend's `group`): combine what they wrap.
    while head.startswith(("label_replace(", "label_join(")):
        head = head[head.index("(") + 1 :].lstrip()
    if head.startswith("topk("):
        k = int(head[len("topk(") : head.index(",")])
        return sorted((float(r["value"][1]) for part in parts for r in part), reverse=True)[:k]
    groups: dict[Any, list[float]] = {}
    for part in parts:
        for r in part:
            groups.setdefault(_key(r["metric"]), []).append(float(r["value"][1]))
    agg: Callable[[list[float]], float] = sum
    if head.startswith("max"):
        agg = max
    elif head.startswith("min"):
        agg = min
    elif any(len(v) > 1 for v in groups.values()) and not head.startswith(("sum", "count")):
        raise AssertionError(f"no rule to combine per-node results of: {expr}")
    return {k: agg(v) for k, v in groups.items()}


def dashboards_add_up(c: Cluster) -> None:
    """6. Each $node panel over all nodes == its per-node queries combined, at one instant."""
    names = list(c.engines)

    # Long enough ago that every scrape stamped before it has been stored (scrape timeout 10 s),
    # with two scrapes of every agent in the minute before it, both successful (rate() needs two
    # samples in its 1m window; the first scrapes of a task fail until its agent listens).
    def instant() -> float | None:
        at = time.time() - 11
        up = 'up{job="dockwatch"}[1m]'
        full = query(c.prom, f"count_over_time({up}) >= 2 and min_over_time({up}) == 1", at)
        return at if len(full) == len(names) else None

    at = wait_for(instant, timeout=150, interval=1, what="two good scrapes of every agent in a minute")
    started = time.monotonic()
    whole = list(dashboard_queries(values={"job": "dockwatch"}))
    # The value goes into a PromQL string (`node=~"$node"`): its regex escapes need escaping too.
    per = {
        n: list(dashboard_queries(values={"job": "dockwatch", "node": re.escape(n).replace("\\", "\\\\")}))
        for n in names
    }
    compared, nonempty, problems = 0, 0, []
    by_source: dict[tuple[str, str], list[list[dict[str, Any]]]] = {}
    for i, q in enumerate(whole):
        if not q.source.startswith("panel") or not re.search(r"\$\{?node\b", q.raw):
            continue
        parts = [query(c.prom, per[n][i].expr, at) for n in names]
        got = query(c.prom, q.expr, at)
        by_source[(q.dashboard, q.source)] = parts
        want = combine(q.expr, parts)
        compared += 1
        nonempty += bool(got)
        if isinstance(want, list):
            have = sorted((float(r["value"][1]) for r in got), reverse=True)
            ok = len(have) == len(want) and all(_close(a, b) for a, b in zip(have, want, strict=True))
        else:
            have_d = {_key(r["metric"]): float(r["value"][1]) for r in got}
            limited = re.search(r"\band on \([^)]*\) topk\((\d+),", q.expr)
            if limited:  # `X and on (...) topk(k, Y)`: the top k of all nodes, among each node's top k
                keys_ok = have_d.keys() <= want.keys() and len(have_d) == min(int(limited[1]), len(want))
            else:
                keys_ok = have_d.keys() == want.keys()
            ok = keys_ok and all(_close(have_d[k], want[k]) for k in have_d)
        if not ok:
            problems.append(f"{q.dashboard} {q.source}: all nodes {got} != per node {want}")
    print(
        f"\n  dashboards: {compared} $node panel queries compared, {nonempty} non-empty,"
        f" {(len(names) + 1) * compared} queries in {time.monotonic() - started:.0f} s"
    )
    assert not problems, "\n".join(problems)
    assert compared > 50 and nonempty > 40, (compared, nonempty)

    # Every node is in the per-node panels, and per-node counts are the engines' own.
    traffic = [parts for (uid, src), parts in by_source.items() if "'Traffic by node'" in src]
    assert traffic
    for parts in traffic:
        assert [[r["metric"]["node"] for r in part] for part in parts] == [[n] for n in names], parts
    running = next(parts for (uid, src), parts in by_source.items() if "'Running containers'" in src)
    for name, part in zip(names, running, strict=True):
        if name != c.swarm.hostname:  # the manager's count moves with other tests' containers
            assert [float(r["value"][1]) for r in part] == [len(running_names(c.engines[name]))], name


def node_variables(c: Cluster) -> list[set[str]]:
    qs = [q for q in dashboard_queries(values={"job": "dockwatch"}) if q.source == "variable node"]
    # Every dashboard has its node variable (a new dashboard is checked here too).
    assert len(qs) == len(list((REPO / "grafana" / "dashboards").glob("*.json"))), qs
    return [{r["metric"]["node"] for r in query(c.prom, q.expr)} for q in qs]


def node_stops_and_returns(c: Cluster, n3: Node) -> None:
    """5. Node 3's engine stops, then starts again."""
    live = [n for n in c.engines if n != n3.name]
    old_task = agent_task(n3.engine)
    stopped = time.time()
    n3.stop()

    # The others keep serving their node's containers, and Prometheus keeps scraping them. (Not
    # dockwatch_engine_connected: the manager's agent may be relisting a busy shared engine.)
    for name in live:
        m = scrape(c.agent_url(name))
        assert select(m, "dockwatch_container_info", name=c.markers[name], node=name), name

    def n3_down() -> dict[str, Any]:
        ts = {t["labels"]["instance"]: t for t in targets(c.prom)}
        assert ts[n3.name]["health"] == "down", ts[n3.name]
        for name in live:
            t = ts[name]
            assert t["health"] == "up", t
            assert _scraped_after(t) > stopped, t
        return ts

    wait_for(n3_down, timeout=60, interval=1, what=f"Prometheus to see {n3.name} down")
    assert [float(r["value"][1]) for r in query(c.prom, f'up{{job="dockwatch",instance="{n3.name}"}}')] == [0]
    # Its series went stale with the failed scrape: the node variable lists the live nodes only.
    wait_for(
        lambda: all(v == set(live) for v in node_variables(c)),
        timeout=30,
        interval=1,
        what="the node variables to list the live nodes",
    )

    restarted = time.time()
    n3.start()
    new_task = wait_for(
        lambda: (t := agent_task(n3.engine)) and t != old_task and t,
        timeout=120,
        interval=1,
        what=f"a new agent task on {n3.name}",
    )
    assert new_task != old_task

    def resumed() -> bool:
        t = next(t for t in targets(c.prom) if t["labels"]["instance"] == n3.name)
        assert t["health"] == "up" and _scraped_after(t) > restarted, t
        for expr in (
            f'dockwatch_build_info{{node="{n3.name}"}}',
            f'dockwatch_container_info{{node="{n3.name}",name="{c.markers[n3.name]}"}}',
        ):
            res = query(c.prom, f"timestamp({expr}) > {restarted}")
            assert len(res) == 1, (expr, res)
        return True

    wait_for(resumed, timeout=150, interval=1, what=f"{n3.name}'s series to resume in Prometheus")
    assert all(v == set(c.engines) for v in node_variables(c))


def _scraped_after(target: dict[str, Any]) -> float:
    """A target's last scrape time, Unix seconds (the API gives RFC 3339 with nanoseconds)."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", target["lastScrape"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()
