"""Exposition cost alone: our renderer against prometheus_client's generic path, same series.

Usage:

    python3 bench/render.py [namespaces=500] [rounds=30]

Builds N synthetic namespaces shaped like the agent's real collection (one interface, every TCP
MIB, UDP and sockstat field, an info series, events), so N=500 gives ~20k series like the
500-container row of bench/collect.py. Then, in this process, CPU time (time.process_time) per
rendering of:
  - ours, text format 0.0.4 (identity label strings cached, as in a running agent), and with a
    fresh renderer (every identity string formatted again, as on the first scrape);
  - ours, OpenMetrics 1.0 (what Prometheus asks for), and with a `name[]` filter of 3 families;
  - the peer: the same families built as prometheus_client Counter/GaugeMetricFamily objects and
    rendered by prometheus_client.exposition.generate_latest (its generic path).
Prints the median and min over the rounds and the peer/ours ratio. No docker engine needed.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

from agent.docker.models import Container  # noqa: E402
from agent.netstats import CollectResult, Membership, NetnsSample  # noqa: E402
from agent.procnet import DevCounters  # noqa: E402
from exporters.prometheus import names as n  # noqa: E402
from exporters.prometheus import render as render_mod  # noqa: E402

Renderer = render_mod.Renderer


def workload(count: int) -> tuple[CollectResult, dict[str, dict[str, int]], dict[str, Container]]:
    samples, members, events, known = [], [], {}, {}
    for i in range(count):
        c = Container(
            id=f"{i:064x}",
            name=f"shop_web.{i}.abcdefghijkl",
            image="registry.example/shop/web:1.2.3",
            image_id="sha256:x",
            pid=1000 + i,
            network_mode="bridge",
            labels={
                "com.docker.stack.namespace": "shop",
                "com.docker.swarm.service.name": "shop_web",
                "com.docker.swarm.task.name": f"shop_web.{i}.abcdefghijkl",
            },
        )
        samples.append(
            NetnsSample(
                inode=i,
                owner=c,
                devices={"eth0": DevCounters(*(1_000_000 + i + k for k in range(8)))},
                networks={"eth0": "shop_front"},
                mib={
                    "Tcp": {f: 12345 + i for _, s, f in n.TCP_MIB_METRICS if s == "Tcp"},
                    "TcpExt": {f: 23 + i for _, s, f in n.TCP_MIB_METRICS if s == "TcpExt"},
                    "Udp": {f: 7 + i for _, f in n.UDP_METRICS},
                },
                udp6={f: 3 for _, f in n.UDP_METRICS},
                sockstat={"TCP": {"inuse": 9, "tw": 10}, "TCP6": {"inuse": 11}, "UDP": {"inuse": 2}},
            )
        )
        members.append(Membership(c, i, c))
        events[c.id] = {"start": 1, "health_status": 3}
        known[c.id] = c
    return CollectResult(samples=samples, members=members), events, known


class Generic(Collector):
    """The same series as prometheus_client metric families: its generic exposition path."""

    def __init__(self, res: CollectResult, events: dict[str, dict[str, int]], known: dict[str, Container]):
        self.res, self.events, self.known = res, events, known

    def collect(self) -> Iterator[Metric]:
        node = "node-1"

        def ident(c: Container) -> list[str]:
            return [node, c.name, c.image, c.compose_project, c.compose_service, c.stack, c.service, c.task]

        def fam(m: n.Metric, extra: tuple[str, ...] = ()) -> CounterMetricFamily | GaugeMetricFamily:
            labels = [*n.IDENTITY, *extra]
            if m.kind is n.Kind.COUNTER:
                return CounterMetricFamily(m.name.removesuffix("_total"), m.help, labels=labels)
            return GaugeMetricFamily(m.name, m.help, labels=labels)

        samples = self.res.samples
        for metric, attr in n.DEVICE_METRICS:
            f = fam(metric, n.DEVICE)
            for s in samples:
                assert s.owner is not None
                for iface, ctr in s.devices.items():
                    f.add_metric([*ident(s.owner), iface, s.networks[iface]], getattr(ctr, attr))
            yield f
        for metric, section, field in n.TCP_MIB_METRICS:
            f = fam(metric)
            for s in samples:
                assert s.owner is not None
                f.add_metric(ident(s.owner), s.mib[section][field])
            yield f
        f = fam(n.TCP_TIME_WAIT)
        for s in samples:
            assert s.owner is not None
            f.add_metric(ident(s.owner), s.sockstat["TCP"]["tw"])
        yield f
        for metric, v4, v6 in ((n.TCP_INUSE, "TCP", "TCP6"), (n.UDP_INUSE, "UDP", "UDP6")):
            f = fam(metric, ("ip_version",))
            for s in samples:
                assert s.owner is not None
                for ver, proto in (("4", v4), ("6", v6)):
                    if (v := s.sockstat.get(proto, {}).get("inuse")) is not None:
                        f.add_metric([*ident(s.owner), ver], v)
            yield f
        for metric, field in n.UDP_METRICS:
            f = fam(metric, ("ip_version",))
            for s in samples:
                assert s.owner is not None
                f.add_metric([*ident(s.owner), "4"], s.mib["Udp"][field])
                f.add_metric([*ident(s.owner), "6"], s.udp6[field])
            yield f
        f = fam(n.CONTAINER_INFO, ("container_id", "network_mode", "netns_owner", "node_id"))
        for m in self.res.members:
            f.add_metric([*ident(m.container), m.container.id, "bridge", m.container.name, "nid"], 1)
        yield f
        f = fam(n.CONTAINER_EVENTS, ("action",))
        for cid, counts in self.events.items():
            for action, count in sorted(counts.items()):
                f.add_metric([*ident(self.known[cid]), action], count)
        yield f


def cpu_ms(fn: Callable[[], object], rounds: int) -> tuple[float, float, int]:
    fn()  # warm: identity cache, imports
    times = []
    size = 0
    for _ in range(rounds):
        t0 = time.process_time()
        out = fn()
        times.append((time.process_time() - t0) * 1e3)
        size = len(out) if isinstance(out, str | bytes) else size
    return statistics.median(times), min(times), size


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    res, events, known = workload(count)
    r = Renderer()
    health = list(known.values())

    def ours() -> object:  # before the Exposition (older commits), render() returned the text
        return r.render("node-1", "nid", res, events, known, health)

    rows: list[tuple[str, Callable[[], object]]] = [("ours, text 0.0.4", ours)]
    # The OpenMetrics and filter entry points exist from the commit that added them on.
    if hasattr(render_mod, "Exposition"):

        def ours_om() -> str:
            return r.render("node-1", "nid", res, events, known, health).text(openmetrics=True)

        wanted = frozenset({n.RX_BYTES.name, n.TX_BYTES.name, n.TCP_FAILED.name})

        def ours_filtered() -> str:
            return r.render("node-1", "nid", res, events, known, health).text(names=wanted)

        def ours_text() -> str:
            return r.render("node-1", "nid", res, events, known, health).text()

        rows = [
            ("ours, text 0.0.4", ours_text),
            ("ours, OpenMetrics 1.0", ours_om),
            ("ours, name[] filter (3 families)", ours_filtered),
        ]

    def ours_cold() -> str:  # a fresh renderer: every identity label string formatted again
        return str(Renderer().render("node-1", "nid", res, events, known, health))

    rows.append(("ours, text 0.0.4, cold identity cache", ours_cold))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Generic(res, events, known))
    rows.append(("prometheus_client generate_latest", lambda: generate_latest(registry)))

    results = {label: cpu_ms(fn, rounds) for label, fn in rows}
    series = sum(1 for line in ours_body(r, res, events, known, health).splitlines() if line[:1] != "#")
    peer = results["prometheus_client generate_latest"][0]
    print(f"{count} namespaces, {series} series, {rounds} rounds, CPU ms per rendering (process_time)\n")
    print("| rendering | median | min | body | peer / this |")
    print("|---|---:|---:|---:|---:|")
    for label, (med, low, size) in results.items():
        print(f"| {label} | {med:.1f} ms | {low:.1f} ms | {size / 1024:.0f} KiB | {peer / med:.1f}x |")


def ours_body(r: Renderer, res: CollectResult, events, known, health) -> str:  # type: ignore[no-untyped-def]
    out = r.render("node-1", "nid", res, events, known, health)
    return out if isinstance(out, str) else out.text()


if __name__ == "__main__":
    main()
