"""Typed models for the Engine API objects dockwatch uses; raw JSON stops here."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Labels Docker itself sets: compose and swarm identity.
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
STACK_NAMESPACE = "com.docker.stack.namespace"
SWARM_SERVICE = "com.docker.swarm.service.name"
SWARM_TASK = "com.docker.swarm.task.name"
SWARM_NODE_ID = "com.docker.swarm.node.id"
# A container opts out of log shipping everywhere with this label set to "false".
LOGS_OPT_OUT = "dockwatch.logs"


class EngineError(Exception):
    """The engine answered with an error, or could not be reached (`unreachable`: no connection
    could be made at all, e.g. no socket, a socket we may not open, nothing listening)."""

    def __init__(self, message: str, status: int = 0, unreachable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.unreachable = unreachable


class NotFound(EngineError):
    """The object (container, network) no longer exists."""


@dataclass(frozen=True, slots=True)
class Version:
    """GET /version: the engine's release and the newest API version it speaks."""

    version: str  # the engine's release, e.g. 27.3.1
    api_version: str  # e.g. 1.47

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Version:
        return cls(version=str(raw.get("Version") or ""), api_version=str(raw.get("ApiVersion") or "1.24"))


@dataclass(frozen=True, slots=True)
class Info:
    """GET /info, the parts the agent uses: the host's name and its swarm node."""

    name: str  # the Docker host's name (what `docker info` shows as Name)
    node_id: str = ""  # Swarm.NodeID: "" when the engine is not in a swarm

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Info:
        swarm = raw.get("Swarm")
        node_id = swarm.get("NodeID") if isinstance(swarm, Mapping) else ""
        return cls(name=str(raw.get("Name") or ""), node_id=str(node_id or ""))


@dataclass(frozen=True, slots=True)
class NetworkAttachment:
    """One entry of a container's NetworkSettings.Networks."""

    name: str
    network_id: str
    ip: str = ""
    prefix_len: int = 0
    ipv6: str = ""
    ipv6_prefix_len: int = 0
    mac: str = ""

    @property
    def subnet(self) -> ipaddress.IPv4Network | None:
        if not self.ip or not self.prefix_len:
            return None
        return ipaddress.IPv4Network(f"{self.ip}/{self.prefix_len}", strict=False)

    @property
    def subnet6(self) -> ipaddress.IPv6Network | None:
        if not self.ipv6 or not self.ipv6_prefix_len:
            return None
        return ipaddress.IPv6Network(f"{self.ipv6}/{self.ipv6_prefix_len}", strict=False)


@dataclass(frozen=True, slots=True)
class NetworkTask:
    """A swarm task's endpoint on a network (GET /networks/{id}?verbose=true, Services.*.Tasks)."""

    name: str
    ip: str


@dataclass(frozen=True, slots=True)
class NetworkService:
    """A swarm service as a network's verbose inspect shows it: its VIP there and its tasks' IPs."""

    name: str
    vip: str
    tasks: tuple[NetworkTask, ...] = ()


@dataclass(frozen=True, slots=True)
class Network:
    """An engine network (from GET /networks) with its IPAM subnets."""

    id: str
    name: str
    driver: str
    scope: str
    subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # IPAM Config[].Gateway, aligned with `subnets` ("" where the engine gives none).
    gateways: tuple[str, ...] = ()
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    ipv6: bool = False
    # Only from a verbose inspect of a swarm-scoped network (GET /networks/{id}?verbose=true).
    services: tuple[NetworkService, ...] = ()

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Network:
        subnets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        gateways: list[str] = []
        for cfg in (raw.get("IPAM") or {}).get("Config") or []:
            sub = cfg.get("Subnet")
            if sub:
                try:
                    subnets.append(ipaddress.ip_network(sub, strict=False))
                except ValueError:
                    continue
                gateways.append(str(cfg.get("Gateway") or ""))
        services = tuple(
            NetworkService(
                name=str(name),
                vip=str(svc.get("VIP") or ""),
                tasks=tuple(
                    NetworkTask(name=str(t.get("Name") or ""), ip=str(t.get("EndpointIP") or ""))
                    for t in svc.get("Tasks") or ()
                    if isinstance(t, Mapping)
                ),
            )
            for name, svc in sorted((raw.get("Services") or {}).items())
            if isinstance(svc, Mapping) and name  # "" holds the network's load balancer endpoints
        )
        return cls(
            id=raw.get("Id", ""),
            name=raw.get("Name", ""),
            driver=raw.get("Driver", ""),
            scope=raw.get("Scope", ""),
            subnets=tuple(subnets),
            gateways=tuple(gateways),
            internal=bool(raw.get("Internal")),
            attachable=bool(raw.get("Attachable")),
            ingress=bool(raw.get("Ingress")),
            ipv6=bool(raw.get("EnableIPv6")),
            services=services,
        )


@dataclass(frozen=True, slots=True)
class PublishedPort:
    """One host binding of a container port (NetworkSettings.Ports["8080/tcp"][i])."""

    container_port: int
    protocol: str  # tcp, udp, sctp
    host_ip: str
    host_port: int

    @classmethod
    def parse_all(cls, ports: Mapping[str, Any] | None) -> tuple[PublishedPort, ...]:
        """Every binding; an exposed port with no binding (value null) publishes nothing."""
        out: list[PublishedPort] = []
        for key, bindings in sorted((ports or {}).items()):
            port, _, proto = str(key).partition("/")
            if not port.isdigit():
                continue
            for b in bindings or ():
                hp = str((b or {}).get("HostPort") or "")
                if hp.isdigit():
                    ip = str(b.get("HostIp") or "")
                    out.append(cls(int(port), proto or "tcp", ip, int(hp)))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A swarm service's published port (Endpoint.Ports[i])."""

    target_port: int
    published_port: int
    protocol: str
    publish_mode: str  # ingress (routing mesh) or host


@dataclass(frozen=True, slots=True)
class Service:
    """A swarm service (GET /services, managers only): its published ports and virtual IPs."""

    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    endpoint_mode: str = ""  # vip or dnsrr
    ports: tuple[ServicePort, ...] = ()
    vips: tuple[tuple[str, str], ...] = ()  # (network id, address without the prefix length)

    @property
    def stack(self) -> str:
        return self.labels.get(STACK_NAMESPACE, "")

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Service:
        spec = raw.get("Spec") or {}
        ep = raw.get("Endpoint") or {}
        ports = tuple(
            ServicePort(
                target_port=int(p.get("TargetPort") or 0),
                published_port=int(p.get("PublishedPort") or 0),
                protocol=str(p.get("Protocol") or "tcp"),
                publish_mode=str(p.get("PublishMode") or "ingress"),
            )
            for p in ep.get("Ports") or ()
            if isinstance(p, Mapping)
        )
        vips = tuple(
            (str(v.get("NetworkID") or ""), str(v.get("Addr") or "").partition("/")[0])
            for v in ep.get("VirtualIPs") or ()
            if isinstance(v, Mapping) and v.get("Addr")
        )
        mode = (ep.get("Spec") or {}).get("Mode") or (spec.get("EndpointSpec") or {}).get("Mode") or ""
        return cls(
            id=str(raw.get("ID") or ""),
            name=str(spec.get("Name") or ""),
            labels=dict(spec.get("Labels") or {}),
            endpoint_mode=str(mode),
            ports=ports,
            vips=vips,
        )


@dataclass(frozen=True, slots=True)
class Container:
    """What the agent knows about one running container (from GET /containers/{id}/json)."""

    id: str
    name: str  # without the leading "/"
    image: str  # as the user named it (Config.Image)
    image_id: str
    pid: int
    network_mode: str  # HostConfig.NetworkMode: default, bridge, host, none, container:<id>, <network>
    labels: Mapping[str, str] = field(default_factory=dict)
    env: tuple[str, ...] = ()
    networks: tuple[NetworkAttachment, ...] = ()
    log_driver: str = ""
    log_opts: Mapping[str, str] = field(default_factory=dict)  # HostConfig.LogConfig.Config (max-size, ...)
    log_path: str = ""
    health: str = ""  # "", starting, healthy, unhealthy
    tty: bool = False
    created: str = ""
    started_at: str = ""
    hostname: str = ""
    command: str = ""
    ports: tuple[PublishedPort, ...] = ()  # published ports (NetworkSettings.Ports with a binding)

    @classmethod
    def from_inspect(cls, raw: Mapping[str, Any]) -> Container:
        cfg = raw.get("Config") or {}
        host_cfg = raw.get("HostConfig") or {}
        state = raw.get("State") or {}
        nets = ((raw.get("NetworkSettings") or {}).get("Networks")) or {}
        attachments = tuple(
            NetworkAttachment(
                name=net_name,
                network_id=n.get("NetworkID") or "",
                ip=n.get("IPAddress") or "",
                prefix_len=int(n.get("IPPrefixLen") or 0),
                ipv6=n.get("GlobalIPv6Address") or "",
                ipv6_prefix_len=int(n.get("GlobalIPv6PrefixLen") or 0),
                mac=n.get("MacAddress") or "",
            )
            for net_name, n in sorted(nets.items())
            if n is not None
        )
        health = ((state.get("Health") or {}).get("Status")) or ""
        cmd = [raw.get("Path") or "", *(raw.get("Args") or [])]
        return cls(
            id=raw["Id"],
            name=(raw.get("Name") or "").lstrip("/"),
            image=cfg.get("Image") or "",
            image_id=raw.get("Image") or "",
            pid=int(state.get("Pid") or 0),
            network_mode=host_cfg.get("NetworkMode") or "",
            labels=dict(cfg.get("Labels") or {}),
            env=tuple(cfg.get("Env") or ()),
            networks=attachments,
            log_driver=((host_cfg.get("LogConfig") or {}).get("Type")) or "",
            log_opts=dict(((host_cfg.get("LogConfig") or {}).get("Config")) or {}),
            log_path=raw.get("LogPath") or "",
            health=health,
            tty=bool(cfg.get("Tty")),
            created=raw.get("Created") or "",
            started_at=state.get("StartedAt") or "",
            hostname=cfg.get("Hostname") or "",
            command=" ".join(c for c in cmd if c),
            ports=PublishedPort.parse_all((raw.get("NetworkSettings") or {}).get("Ports")),
        )

    # --- identity -------------------------------------------------------------------------------
    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def compose_project(self) -> str:
        return self.labels.get(COMPOSE_PROJECT, "")

    @property
    def compose_service(self) -> str:
        return self.labels.get(COMPOSE_SERVICE, "")

    @property
    def stack(self) -> str:
        return self.labels.get(STACK_NAMESPACE, "")

    @property
    def service(self) -> str:
        return self.labels.get(SWARM_SERVICE, "")

    @property
    def task(self) -> str:
        return self.labels.get(SWARM_TASK, "")

    @property
    def joins(self) -> str:
        """Id or name of the container whose network namespace this one joins, else ""."""
        mode = self.network_mode
        return mode.removeprefix("container:") if mode.startswith("container:") else ""

    @property
    def host_network(self) -> bool:
        return self.network_mode == "host"

    @property
    def env_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for kv in self.env:
            k, _, v = kv.partition("=")
            out[k] = v
        return out


def parse_engine_time(value: str) -> datetime | None:
    """Engine timestamps are RFC 3339 with up to 9 fractional digits; Python takes 6."""
    if not value or value.startswith("0001-"):
        return None
    head, dot, frac = value.partition(".")
    tz = ""
    if dot:
        digits = frac.rstrip("Z")
        for sep in ("+", "-"):
            if sep in digits:
                digits, tz = digits.split(sep, 1)
                tz = sep + tz
                break
        value = f"{head}.{digits[:6]:0<6}{tz or '+00:00'}"
    elif value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
