"""Where `dockwatch top` gets its samples: a running agent's /metrics (`--url`), or standalone.

Both give the same `Sample` (see model.py). The --url source reads the agent's exposition with
prometheus_client's parser and maps the series back by the names declared once in
exporters/prometheus/names.py: like app.py, this module composes agent/ and exporters/. The
standalone source lives in collect.py, the one adapter to the agent's collection code.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Protocol

from prometheus_client.parser import text_string_to_metric_families

from agent.procnet import DevCounters, Socket
from agent.top.model import HOST_NAME, Iface, NsCounters, Sample
from exporters.prometheus import names as n


class SourceError(Exception):
    """The source could not be read this time (agent or engine unreachable); str() says why."""


class Source(Protocol):
    label: str  # shown in the header: the URL, or "standalone"

    async def start(self) -> None: ...

    async def sample(self) -> Sample: ...

    async def sockets(self, ns: NsCounters) -> list[tuple[str, Socket]] | None:
        """The namespace's ("tcp" | "udp", socket)s, or None where the source has none."""
        ...

    async def close(self) -> None: ...


# Series name → where its value goes.
_DEVICE = {m.name: attr for m, attr in n.DEVICE_METRICS}
_MIB = {m.name: (section, field) for m, section, field in n.TCP_MIB_METRICS}
_DEV_ATTRS = tuple(attr for _, attr in n.DEVICE_METRICS)


class _Acc:
    """One namespace's series while the exposition is read."""

    def __init__(self, labels: Mapping[str, str]) -> None:
        self.labels = dict(labels)
        self.dev: dict[tuple[str, str], dict[str, int]] = {}
        self.mib: dict[str, dict[str, int]] = {}
        self.time_wait: int | None = None
        self.states: dict[str, int] | None = None


def from_exposition(text: str, mono: float, wall: float, duration: float = 0.0) -> Sample:
    """An agent's /metrics body → a Sample (pure: the caller stamps when it was read)."""
    accs: dict[tuple[str, str], _Acc] = {}
    ids: dict[tuple[str, str], str] = {}  # (node, name) → container id
    members: dict[tuple[str, str], list[str]] = {}  # (node, netns owner) → other members
    node = ""

    def acc(labels: Mapping[str, str]) -> _Acc:
        k = (labels.get("node", ""), labels.get("name", ""))
        a = accs.get(k)
        if a is None:
            a = accs[k] = _Acc(labels)
        return a

    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            lb = s.labels
            if s.name in _DEVICE:
                d = acc(lb).dev.setdefault((lb.get("interface", ""), lb.get("network", "")), {})
                d[_DEVICE[s.name]] = int(s.value)
            elif s.name in _MIB:
                section, field = _MIB[s.name]
                acc(lb).mib.setdefault(section, {})[field] = int(s.value)
            elif s.name == n.TCP_TIME_WAIT.name:
                acc(lb).time_wait = int(s.value)
            elif s.name == n.TCP_STATES.name:
                a = acc(lb)
                a.states = a.states or {}
                a.states[lb.get("state", "")] = int(s.value)
            elif s.name == n.CONTAINER_INFO.name:
                nd, name, owner = lb.get("node", ""), lb.get("name", ""), lb.get("netns_owner", "")
                ids[(nd, name)] = lb.get("container_id", "")
                if owner != name:  # a container:X joiner, or a host-network container
                    owner_name = "" if owner == "host" else owner
                    members.setdefault((nd, owner_name), []).append(name)
    out: list[NsCounters] = []
    for (nd, name), a in accs.items():
        node = node or nd
        lb = a.labels
        ifaces = tuple(
            Iface(iface, net, DevCounters(**{k: v[k] for k in _DEV_ATTRS}))
            for (iface, net), v in sorted(a.dev.items())
            if all(k in v for k in _DEV_ATTRS)
        )
        cid = ids.get((nd, name), "")
        out.append(
            NsCounters(
                key=f"{nd}/{cid or name or 'host'}",
                name=name or HOST_NAME,
                ifaces=ifaces,
                mib=a.mib,
                time_wait=a.time_wait,
                tcp_states=a.states,
                container_id=cid,
                image=lb.get("image", ""),
                node=nd,
                project=lb.get("compose_project", "") or lb.get("stack", ""),
                service=lb.get("compose_service", "") or lb.get("service", ""),
                members=tuple(sorted(members.get((nd, name), []))),
            )
        )
    return Sample(mono=mono, wall=wall, namespaces=tuple(out), node=node, duration=duration)


def metrics_url(url: str) -> str:
    """`http://host:9105` → `http://host:9105/metrics`; a URL with a path is kept as given."""
    if "://" not in url:
        url = "http://" + url
    scheme, _, rest = url.partition("://")
    if "/" not in rest or (rest.endswith("/") and rest.count("/") == 1):
        url = f"{scheme}://{rest.rstrip('/')}/metrics"
    return url


class MetricsSource:
    """Samples from a running agent: GET /metrics, stamped with the middle of the request.

    urllib in a thread: one GET every few seconds needs no event-loop HTTP client, and the agent's
    own Engine API client speaks only to the engine."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = metrics_url(url)
        self.label = self.url
        self.timeout = timeout
        # No proxy from the environment: the agent is reached directly, as aiohttp did by default.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    async def start(self) -> None:
        pass

    def _get(self) -> str:
        try:
            with self._opener.open(self.url, timeout=self.timeout) as resp:
                if resp.status != 200:
                    raise SourceError(f"{self.url}: HTTP {resp.status}")
                return str(resp.read().decode("utf-8", errors="replace"))  # the exposition is UTF-8
        except urllib.error.HTTPError as exc:
            exc.close()
            raise SourceError(f"{self.url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:  # TimeoutError is an OSError
            raise SourceError(f"{self.url}: {type(exc).__name__}: {exc}") from exc

    async def sample(self) -> Sample:
        m0, w0 = time.monotonic(), time.time()
        body = await asyncio.to_thread(self._get)
        m1, w1 = time.monotonic(), time.time()
        # The agent collects while it answers: the middle of the request is the best estimate.
        try:
            return await asyncio.to_thread(from_exposition, body, (m0 + m1) / 2, (w0 + w1) / 2, m1 - m0)
        except ValueError as exc:
            raise SourceError(f"{self.url}: not a Prometheus exposition: {exc}") from exc

    async def sockets(self, ns: NsCounters) -> list[tuple[str, Socket]] | None:
        return None  # /metrics has no per-socket data (it would be unbounded cardinality)

    async def close(self) -> None:
        pass
