"""Prometheus text exposition (format 0.0.4) of the per-container families.

Hundreds of containers times ~50 series each: the identity label string of a container is
rendered once and reused until the container changes, and lines are joined once. That is what
keeps /metrics cheap; prometheus_client's generic path formats every label of every sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agent.docker.models import Container
from agent.netstats import CollectResult, Membership
from agent.procnet import DevCounters
from exporters.prometheus import names as n


def escape(value: str) -> str:
    """Label value escaping per the text format: backslash, double quote, newline."""
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in pairs)


class Renderer:
    def __init__(self) -> None:
        # container id -> (the Container object it was rendered from, node, label string)
        self._ident: dict[str, tuple[Container, str, str]] = {}

    def identity(self, c: Container | None, node: str) -> str:
        """`node="..",name="..",...` for a container, or the host namespace when c is None."""
        if c is None:
            return _labels(zip(n.IDENTITY, (node, "", "", "", "", "", "", ""), strict=True))
        hit = self._ident.get(c.id)
        if hit is not None and hit[0] is c and hit[1] == node:
            return hit[2]
        s = _labels(
            zip(
                n.IDENTITY,
                (node, c.name, c.image, c.compose_project, c.compose_service, c.stack, c.service, c.task),
                strict=True,
            )
        )
        self._ident[c.id] = (c, node, s)
        return s

    def forget_except(self, live: Iterable[str]) -> None:
        keep = set(live)
        for cid in [k for k in self._ident if k not in keep]:
            del self._ident[cid]

    def render(
        self,
        node: str,
        node_id: str,
        result: CollectResult,
        container_events: Mapping[str, Mapping[str, int]],
        known: Mapping[str, Container],
        health: Iterable[Container],
    ) -> str:
        out: list[str] = []
        add = out.append
        samples = result.samples
        idents = [self.identity(s.owner, node) for s in samples]

        def head(m: n.Metric) -> None:
            add(f"# HELP {m.name} {m.help}\n# TYPE {m.name} {m.kind.value}\n")

        # Per interface.
        dev_rows: list[tuple[str, DevCounters]] = []
        for ident, s in zip(idents, samples, strict=True):
            for iface, ctr in s.devices.items():
                net = escape(s.networks.get(iface, ""))
                dev_rows.append((f'{ident},interface="{escape(iface)}",network="{net}"', ctr))
        for metric, attr in n.DEVICE_METRICS:
            head(metric)
            name = metric.name
            for labels, ctr in dev_rows:
                add(f"{name}{{{labels}}} {getattr(ctr, attr)}\n")

        # Per namespace: TCP MIB.
        for metric, section, field in n.TCP_MIB_METRICS:
            head(metric)
            name = metric.name
            for ident, s in zip(idents, samples, strict=True):
                v = s.mib.get(section, {}).get(field)
                if v is not None:
                    add(f"{name}{{{ident}}} {v}\n")
        head(n.TCP_TIME_WAIT)
        for ident, s in zip(idents, samples, strict=True):
            tw = s.sockstat.get("TCP", {}).get("tw")
            if tw is not None:
                add(f"{n.TCP_TIME_WAIT.name}{{{ident}}} {tw}\n")
        for metric, v4, v6 in ((n.TCP_INUSE, "TCP", "TCP6"), (n.UDP_INUSE, "UDP", "UDP6")):
            head(metric)
            for ident, s in zip(idents, samples, strict=True):
                for ver, proto in (("4", v4), ("6", v6)):
                    v = s.sockstat.get(proto, {}).get("inuse")
                    if v is not None:
                        add(f'{metric.name}{{{ident},ip_version="{ver}"}} {v}\n')

        # Per namespace: UDP, v4 from net/snmp, v6 from net/snmp6.
        for metric, field in n.UDP_METRICS:
            head(metric)
            for ident, s in zip(idents, samples, strict=True):
                v = s.mib.get("Udp", {}).get(field)
                if v is not None:
                    add(f'{metric.name}{{{ident},ip_version="4"}} {v}\n')
                v = s.udp6.get(field)
                if v is not None:
                    add(f'{metric.name}{{{ident},ip_version="6"}} {v}\n')

        # Opt-in: TCP states.
        if any(s.tcp_states is not None for s in samples):
            head(n.TCP_STATES)
            for ident, s in zip(idents, samples, strict=True):
                for state, count in (s.tcp_states or {}).items():
                    add(f'{n.TCP_STATES.name}{{{ident},state="{state}"}} {count}\n')

        # Inventory: info per container, health, per-container event counters.
        head(n.CONTAINER_INFO)
        for m in result.members:
            add(f"{n.CONTAINER_INFO.name}{{{self._info_labels(m, node, node_id)}}} 1\n")
        head(n.CONTAINER_HEALTH)
        for c in health:
            if c.health:
                ok = 1 if c.health == "healthy" else 0
                add(f"{n.CONTAINER_HEALTH.name}{{{self.identity(c, node)}}} {ok}\n")
        head(n.CONTAINER_EVENTS)
        for cid, counts in container_events.items():
            kc = known.get(cid)
            if kc is None:
                continue
            ident = self.identity(kc, node)
            for action, count in sorted(counts.items()):
                add(f'{n.CONTAINER_EVENTS.name}{{{ident},action="{escape(action)}"}} {count}\n')
        return "".join(out)

    def _info_labels(self, m: Membership, node: str, node_id: str) -> str:
        c = m.container
        mode = c.network_mode
        if mode.startswith("container:"):
            mode = "container"
        owner = "host" if m.owner is None else m.owner.name
        extra = _labels(
            (("container_id", c.id), ("network_mode", mode), ("netns_owner", owner), ("node_id", node_id))
        )
        return f"{self.identity(c, node)},{extra}"
