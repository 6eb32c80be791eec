"""Every metric dockwatch exports, on one page.

Dashboard authors and reviewers read this file; README's metric table is generated from it
(`python -m exporters.prometheus.names --markdown`), grafana/ builds its queries on these names, and
each per-namespace kernel counter is declared once, with the file, section and field it is read
from: the renderer's tables and the collector's field selection (MIB_FIELDS, handed to
agent/netstats.py by the composition root) are derived at the bottom of this file.

Label scheme:
  IDENTITY  on every per-container series, so dashboards filter without joins.
  device    series add `interface` and `network` (the Docker network the interface is on).
Where cAdvisor has the identical meaning we use its name and its `name`, `image`, `interface` labels,
so existing dashboards' network panels keep working.

A network namespace is reported once, attributed to its owner: `container:X` joiners appear only on
`dockwatch_container_info` (with `netns_owner`), host-network containers likewise; the host's own
namespace, when exported, has `name=""` and `image=""` like cAdvisor's root cgroup, so the usual
`image!=""` container filters leave it out.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    INFO = "gauge"  # exposed as gauge with value 1 (Prometheus text format has no info type)


# Labels on every per-container series, in exposition order.
IDENTITY: tuple[str, ...] = (
    "node",
    "name",
    "image",
    "compose_project",
    "compose_service",
    "stack",
    "service",
    "task",
)
DEVICE: tuple[str, ...] = ("interface", "network")


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    # Where the number comes from: kernel file and field, or the agent itself.
    source: str = ""
    # For a per-namespace kernel counter, where its value is in the collected sample: ("dev", a
    # procnet.DevCounters attribute), or a net/snmp or net/netstat (section, field).
    value_from: tuple[str, str] | None = None


# net/dev's column words (net/core/net-procfs.c) -> procnet.DevCounters' attribute words.
_DEV_ATTR = {"errs": "errors", "drop": "dropped"}


def _dev(name: str, help_: str, column: str) -> Metric:
    """A net/dev counter; `column` as the kernel's header names it: "rx bytes", "tx drop"."""
    direction, word = column.split()
    attr = f"{direction}_{_DEV_ATTR.get(word, word)}"
    return Metric(name, Kind.COUNTER, help_, IDENTITY + DEVICE, f"net/dev {column}", ("dev", attr))


# The kernel file each MIB section is in (net/ipv4/proc.c): Tcp and Udp in net/snmp, TcpExt in
# net/netstat.
_MIB_FILE = {"Tcp": "net/snmp", "Udp": "net/snmp", "TcpExt": "net/netstat"}


def _tcp(name: str, kind: Kind, help_: str, section: str, field: str) -> Metric:
    """A per-namespace TCP counter or gauge read from `field` of the Tcp or TcpExt section."""
    source = f"{_MIB_FILE[section]} {section} {field}"
    return Metric(name, kind, help_, IDENTITY, source, (section, field))


# --- per interface (net/dev) -------------------------------------------------------------------
RX_BYTES = _dev("container_network_receive_bytes_total", "Bytes received.", "rx bytes")
RX_PACKETS = _dev("container_network_receive_packets_total", "Packets received.", "rx packets")
RX_ERRORS = _dev("container_network_receive_errors_total", "Receive errors.", "rx errs")
RX_DROPPED = _dev("container_network_receive_packets_dropped_total", "Received packets dropped.", "rx drop")
TX_BYTES = _dev("container_network_transmit_bytes_total", "Bytes transmitted.", "tx bytes")
TX_PACKETS = _dev("container_network_transmit_packets_total", "Packets transmitted.", "tx packets")
TX_ERRORS = _dev("container_network_transmit_errors_total", "Transmit errors.", "tx errs")
TX_DROPPED = _dev(
    "container_network_transmit_packets_dropped_total", "Transmitted packets dropped.", "tx drop"
)

# --- per namespace: TCP (net/snmp Tcp:, net/netstat TcpExt:, net/sockstat) ----------------------
# IPv4 and IPv6 share the Tcp: MIB in Linux. A new Tcp or TcpExt counter is one `_tcp(...)` here:
# the collector reads its field and the renderer exports it; then put it on a dashboard panel
# (grafana/, a test wants every metric on one) and regenerate README's table and the dashboards.
TCP_ESTABLISHED = _tcp(
    "container_network_tcp_connections_established",
    Kind.GAUGE,
    "TCP connections in ESTABLISHED or CLOSE-WAIT state (IPv4 and IPv6).",
    "Tcp",
    "CurrEstab",
)
TCP_INUSE = Metric(
    "container_network_tcp_sockets_in_use",
    Kind.GAUGE,
    "TCP sockets in use, all states but TIME-WAIT, by IP version.",
    (*IDENTITY, "ip_version"),
    "net/sockstat TCP inuse, net/sockstat6 TCP6 inuse",
)
TCP_TIME_WAIT = Metric(
    "container_network_tcp_sockets_time_wait",
    Kind.GAUGE,
    "TCP sockets in TIME-WAIT (IPv4 and IPv6).",
    IDENTITY,
    "net/sockstat TCP tw",
)
TCP_ACTIVE_OPENS = _tcp(
    "container_network_tcp_active_opens_total",
    Kind.COUNTER,
    "Outgoing TCP connection attempts (SYN sent).",
    "Tcp",
    "ActiveOpens",
)
TCP_PASSIVE_OPENS = _tcp(
    "container_network_tcp_passive_opens_total",
    Kind.COUNTER,
    "Incoming TCP connections accepted into SYN-RECV.",
    "Tcp",
    "PassiveOpens",
)
TCP_FAILED = _tcp(
    "container_network_tcp_failed_connection_attempts_total",
    Kind.COUNTER,
    "TCP connection attempts that failed (SYN-SENT/SYN-RECV to CLOSED, or SYN-RECV to LISTEN).",
    "Tcp",
    "AttemptFails",
)
TCP_ESTAB_RESETS = _tcp(
    "container_network_tcp_established_resets_total",
    Kind.COUNTER,
    "TCP connections reset from ESTABLISHED or CLOSE-WAIT.",
    "Tcp",
    "EstabResets",
)
TCP_OUT_RSTS = _tcp(
    "container_network_tcp_resets_sent_total",
    Kind.COUNTER,
    "TCP segments sent with the RST flag.",
    "Tcp",
    "OutRsts",
)
TCP_RETRANS = _tcp(
    "container_network_tcp_retransmitted_segments_total",
    Kind.COUNTER,
    "TCP segments retransmitted.",
    "Tcp",
    "RetransSegs",
)
TCP_IN_SEGS = _tcp(
    "container_network_tcp_segments_received_total",
    Kind.COUNTER,
    "TCP segments received, including those in error.",
    "Tcp",
    "InSegs",
)
TCP_OUT_SEGS = _tcp(
    "container_network_tcp_segments_sent_total",
    Kind.COUNTER,
    "TCP segments sent, excluding retransmissions.",
    "Tcp",
    "OutSegs",
)
TCP_IN_ERRS = _tcp(
    "container_network_tcp_receive_errors_total",
    Kind.COUNTER,
    "TCP segments received in error (bad checksum, short).",
    "Tcp",
    "InErrs",
)
TCP_LISTEN_OVERFLOWS = _tcp(
    "container_network_tcp_listen_overflows_total",
    Kind.COUNTER,
    "Times a listening socket's accept queue was full.",
    "TcpExt",
    "ListenOverflows",
)
TCP_LISTEN_DROPS = _tcp(
    "container_network_tcp_listen_drops_total",
    Kind.COUNTER,
    "SYNs dropped on a listening socket (overflows included).",
    "TcpExt",
    "ListenDrops",
)
TCP_TIMEOUTS = _tcp(
    "container_network_tcp_timeouts_total",
    Kind.COUNTER,
    "TCP retransmission timer expirations.",
    "TcpExt",
    "TCPTimeouts",
)
TCP_SYN_RETRANS = _tcp(
    "container_network_tcp_syn_retransmits_total",
    Kind.COUNTER,
    "SYN and SYN/ACK retransmissions.",
    "TcpExt",
    "TCPSynRetrans",
)
TCP_ABORT_TIMEOUT = _tcp(
    "container_network_tcp_aborted_on_timeout_total",
    Kind.COUNTER,
    "TCP connections aborted because a timer expired too often.",
    "TcpExt",
    "TCPAbortOnTimeout",
)

# --- per namespace: UDP (net/snmp Udp:, net/snmp6 Udp6*) ---------------------------------------
_UDP_LABELS = (*IDENTITY, "ip_version")


def _udp(name: str, help_: str, field: str) -> Metric:
    """A UDP counter: IPv4 from net/snmp's Udp section, IPv6 from net/snmp6's Udp6 fields."""
    source = f"net/snmp Udp {field}, net/snmp6 Udp6{field}"
    return Metric(name, Kind.COUNTER, help_, _UDP_LABELS, source, ("Udp", field))


UDP_IN = _udp("container_network_udp_datagrams_received_total", "UDP datagrams delivered.", "InDatagrams")
UDP_OUT = _udp("container_network_udp_datagrams_sent_total", "UDP datagrams sent.", "OutDatagrams")
UDP_NO_PORTS = _udp(
    "container_network_udp_no_port_total", "UDP datagrams received for a port nobody listens on.", "NoPorts"
)
UDP_IN_ERRORS = _udp(
    "container_network_udp_receive_errors_total", "UDP datagrams that could not be delivered.", "InErrors"
)
UDP_RCVBUF = _udp(
    "container_network_udp_receive_buffer_errors_total", "UDP receive buffer overflows.", "RcvbufErrors"
)
UDP_SNDBUF = _udp("container_network_udp_send_buffer_errors_total", "UDP send buffer errors.", "SndbufErrors")
UDP_INUSE = Metric(
    "container_network_udp_sockets_in_use",
    Kind.GAUGE,
    "UDP sockets in use.",
    _UDP_LABELS,
    "net/sockstat UDP inuse, net/sockstat6 UDP6 inuse",
)

# --- opt-in tier: TCP sockets by state (net/tcp + net/tcp6; ~10 ms per namespace) ---------------
TCP_STATES = Metric(
    "container_network_tcp_connections",
    Kind.GAUGE,
    "TCP sockets by state, IPv4 and IPv6 (opt-in: --collector.tcp-states; refreshed on its own interval).",
    (*IDENTITY, "state"),
    "net/tcp, net/tcp6 st column",
)

# --- inventory and events ----------------------------------------------------------------------
CONTAINER_INFO = Metric(
    "dockwatch_container_info",
    Kind.INFO,
    "One series per running container; network_mode and netns_owner show shared namespaces.",
    (*IDENTITY, "container_id", "network_mode", "netns_owner", "node_id"),
    "docker inspect",
)
CONTAINER_HEALTH = Metric(
    "dockwatch_container_healthy",
    Kind.GAUGE,
    "1 if the healthcheck reports healthy, 0 if unhealthy or starting (only containers with one).",
    IDENTITY,
    "docker inspect State.Health / health_status events",
)
CONTAINER_EVENTS = Metric(
    "dockwatch_container_events_total",
    Kind.COUNTER,
    "Docker events per container (running or recently exited) since the agent started; die, kill, "
    "oom, restart, start (and health_status with a healthcheck) exist at 0 from its first sight.",
    (*IDENTITY, "action"),
    "docker /events",
)

# --- Docker networking (issue 11): networks, published ports, listeners, who talks to whom ------
# Always on, from the Engine API (rendered by exporters/prometheus/netmap.py). Networks carry `node`
# only: each agent reports the networks its engine lists (a swarm network: where it has tasks).
# `network_id` keeps two networks of one name apart (the engine allows it), so joins use it.
NETWORK_INFO = Metric(
    "dockwatch_network_info",
    Kind.INFO,
    "One series per Docker network the engine lists: driver, scope and flags.",
    ("node", "network", "network_id", "driver", "scope", "internal", "attachable", "ingress", "ipv6"),
    "docker GET /networks",
)
NETWORK_SUBNET = Metric(
    "dockwatch_network_subnet_info",
    Kind.INFO,
    "One series per subnet of a Docker network (IPAM config), with its gateway.",
    ("node", "network", "network_id", "subnet", "gateway"),
    "docker GET /networks IPAM.Config",
)
NETWORK_CONTAINERS = Metric(
    "dockwatch_network_containers",
    Kind.GAUGE,
    "Running containers on this node attached to the network (container:X joiners are not attached).",
    ("node", "network", "network_id"),
    "docker inspect NetworkSettings.Networks",
)
CONTAINER_NETWORK = Metric(
    "dockwatch_container_network_info",
    Kind.INFO,
    "One series per network a container is attached to, with its addresses there.",
    (*IDENTITY, "network", "ip_address", "ipv6_address"),
    "docker inspect NetworkSettings.Networks",
)
CONTAINER_PUBLISHED_PORT = Metric(
    "dockwatch_container_published_port_info",
    Kind.INFO,
    "One series per host binding of a container's published port.",
    (*IDENTITY, "container_port", "protocol", "host_ip", "host_port"),
    "docker inspect NetworkSettings.Ports",
)
SERVICE_PUBLISHED_PORT = Metric(
    "dockwatch_service_published_port_info",
    Kind.INFO,
    "One series per published port of a swarm service (swarm managers only); publish_mode ingress "
    "(routing mesh) or host.",
    ("node", "stack", "service", "target_port", "published_port", "protocol", "publish_mode"),
    "docker GET /services Endpoint.Ports",
)
SERVICE_VIRTUAL_IP = Metric(
    "dockwatch_service_virtual_ip_info",
    Kind.INFO,
    "One series per virtual IP of a swarm service, by network (swarm managers only): the address "
    "clients connect to, which --collector.connections resolves to the service.",
    ("node", "stack", "service", "network", "virtual_ip"),
    "docker GET /services Endpoint.VirtualIPs",
)
# Opt-in connection tier (--collector.connections; its own interval, never on the scrape path).
LISTENING_SOCKETS = Metric(
    "container_network_listening_sockets",
    Kind.GAUGE,
    "Sockets listening in the namespace: TCP in LISTEN, UDP bound and unconnected (opt-in: "
    "--collector.connections). Docker's embedded DNS (127.0.0.11) is left out.",
    (*IDENTITY, "protocol", "address", "port"),
    "net/tcp, net/tcp6 st 0A; net/udp, net/udp6 st 07",
)
PEER_CONNECTIONS = Metric(
    "container_network_tcp_peer_connections",
    Kind.GAUGE,
    "Established TCP connections by peer and server port (opt-in: --collector.connections). direction: "
    "client (this namespace connected out) or server (it accepted); peer_kind: container, service, "
    "host or external; port: the server's port.",
    (*IDENTITY, "direction", "peer_kind", "peer", "peer_service", "port"),
    "net/tcp, net/tcp6 st 01, peers resolved from docker inspect, /services, /networks",
)
PUBLISHED_PORT_LISTENING = Metric(
    "dockwatch_container_published_port_listening",
    Kind.GAUGE,
    "1 if something in the container listens where its published port forwards to, 0 if not "
    "(opt-in: --collector.connections); state: listening, loopback_only (only on 127.0.0.1 or ::1, "
    "which Docker's forwarding cannot reach) or not_listening.",
    (*IDENTITY, "container_port", "protocol", "host_ip", "host_port", "state"),
    "docker inspect NetworkSettings.Ports joined with net/tcp{,6}, net/udp{,6}",
)

# --- self metrics (registered on the agent's own registry) --------------------------------------
DOCKER_EVENTS = Metric(
    "dockwatch_docker_events_total",
    Kind.COUNTER,
    "Docker events received, by type and action.",
    ("type", "action"),
    "docker /events",
)
COLLECTOR_SUCCESS = Metric(
    "dockwatch_scrape_collector_success",
    Kind.GAUGE,
    "1 if the collector's last run returned and read all it could still see; 0 if it raised or "
    "part of it failed (its series are then missing; the rest of the scrape is served).",
    ("collector",),
    "agent",
)
COLLECTOR_DURATION = Metric(
    "dockwatch_scrape_collector_duration_seconds",
    Kind.GAUGE,
    "Wall time of the collector's last run (netns, tcp_states on its own interval, logs).",
    ("collector",),
    "agent",
)
CONTAINERS_TRACKED = Metric(
    "dockwatch_containers_tracked",
    Kind.GAUGE,
    "Running containers in the agent's inventory.",
    (),
    "agent",
)
NETNS_TRACKED = Metric(
    "dockwatch_network_namespaces_tracked",
    Kind.GAUGE,
    "Distinct network namespaces read on the last scrape.",
    (),
    "agent",
)
ENGINE_CONNECTED = Metric(
    "dockwatch_engine_connected",
    Kind.GAUGE,
    "1 while the agent follows the engine's event stream.",
    (),
    "agent",
)
ENGINE_RECONNECTS = Metric(
    "dockwatch_engine_reconnects_total",
    Kind.COUNTER,
    "Times the agent lost and re-established the engine connection.",
    (),
    "agent",
)
BUILD_INFO = Metric(
    "dockwatch_build_info",
    Kind.INFO,
    "Agent version and the engine it talks to.",
    ("version", "engine_version", "api_version", "node", "node_id"),
    "agent",
)

# --- the agent process (families.ProcessMetrics, as client_python's ProcessCollector, from /proc/self) -
# The names and help every client_python and Go exporter uses, so process dashboards work as is.
PROCESS_CPU = Metric(
    "process_cpu_seconds_total",
    Kind.COUNTER,
    "Total user and system CPU time spent in seconds.",
    (),
    "/proc/self/stat utime+stime",
)
PROCESS_RSS = Metric(
    "process_resident_memory_bytes", Kind.GAUGE, "Resident memory size in bytes.", (), "/proc/self/stat rss"
)
PROCESS_VMS = Metric(
    "process_virtual_memory_bytes", Kind.GAUGE, "Virtual memory size in bytes.", (), "/proc/self/stat vsize"
)
PROCESS_START = Metric(
    "process_start_time_seconds",
    Kind.GAUGE,
    "Start time of the process since unix epoch in seconds.",
    (),
    "/proc/self/stat starttime, /proc/stat btime",
)
PROCESS_OPEN_FDS = Metric(
    "process_open_fds", Kind.GAUGE, "Number of open file descriptors.", (), "/proc/self/fd"
)
PROCESS_MAX_FDS = Metric(
    "process_max_fds",
    Kind.GAUGE,
    "Maximum number of open file descriptors.",
    (),
    "/proc/self/limits Max open files",
)

# --- log shipping (agent/logs; per sink by its configured name) ------------------------------------
LOG_SINK_RECORDS_SENT = Metric(
    "dockwatch_log_sink_records_sent_total",
    Kind.COUNTER,
    "Log records the sink accepted (OK).",
    ("sink",),
    "agent",
)
LOG_SINK_BYTES_SENT = Metric(
    "dockwatch_log_sink_bytes_sent_total",
    Kind.COUNTER,
    "Bytes of log lines (without newline) the sink accepted.",
    ("sink",),
    "agent",
)
LOG_SINK_RETRIES = Metric(
    "dockwatch_log_sink_retries_total",
    Kind.COUNTER,
    "Batches the sink could not take now (peer down, timeout): sent again after backoff.",
    ("sink",),
    "agent",
)
LOG_SINK_RECORDS_DROPPED = Metric(
    "dockwatch_log_sink_records_dropped_total",
    Kind.COUNTER,
    "Log records never delivered: corrupt (unparsable json-file line), rejected (sink said FAIL), "
    "rotated (lines of a rotated json-file log let go unread because more than the held bound was "
    "behind the sink; counted exactly), events_overflow (docker events dropped: queue full while the "
    "sink was down, or unsent at exit).",
    ("sink", "reason"),
    "agent",
)
LOG_SINK_ROTATED_FILES_MISSED = Metric(
    "dockwatch_log_sink_rotated_files_missed_total",
    Kind.COUNTER,
    "json-file log files not read to their end before Docker deleted them: let go over the held "
    "bound, rotated away before the agent could open them, or the checkpointed file rotated away "
    "while the agent was down (whole files rotated away during that time are not seen).",
    ("sink",),
    "agent",
)
LOG_SINK_ROTATED_BYTES_MISSED = Metric(
    "dockwatch_log_sink_rotated_bytes_missed_total",
    Kind.COUNTER,
    "Bytes of those files never read: exact for files let go over the held bound; otherwise a lower "
    "bound from the container's max-size (Docker rotates a file once it holds max-size bytes).",
    ("sink",),
    "agent",
)
LOG_SINK_BACKLOG_BYTES = Metric(
    "dockwatch_log_sink_backlog_bytes",
    Kind.GAUGE,
    "Bytes of Docker's json-file logs not yet delivered to the sink (read ahead of the checkpoint).",
    ("sink",),
    "agent",
)
LOG_SINK_DELIVERY_LAG = Metric(
    "dockwatch_log_sink_delivery_lag_seconds",
    Kind.GAUGE,
    "Age of the newest record of the last delivered batch when the sink took it.",
    ("sink",),
    "agent",
)
LOG_SINK_LAST_SUCCESS = Metric(
    "dockwatch_log_sink_last_success_timestamp_seconds",
    Kind.GAUGE,
    "Unix time of the sink's last successful delivery (0: none yet).",
    ("sink",),
    "agent",
)
LOG_SINK_CONTAINERS = Metric(
    "dockwatch_log_sink_containers",
    Kind.GAUGE,
    "Containers whose logs the sink is following.",
    ("sink",),
    "agent",
)
LOG_CONTAINERS_UNREADABLE = Metric(
    "dockwatch_log_containers_unreadable",
    Kind.GAUGE,
    "Running containers whose logs cannot be read, by reason (driver_none, driver_<name> without "
    "the dual-logging cache, tty on a non-json-file driver, permission: the agent may not open "
    "Docker's json-file log, e.g. when not root).",
    ("reason",),
    "agent",
)

ALL: tuple[Metric, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Metric))


# --- derived from the declarations above, in their order (the exposition's) ----------------------
def _reading(*tables: str) -> tuple[tuple[Metric, str, str], ...]:
    """(metric, table, field) of the kernel counters read from `tables` ("dev", MIB sections)."""
    return tuple((m, v[0], v[1]) for m in ALL if (v := m.value_from) is not None and v[0] in tables)


# (metric, DevCounters attribute)
DEVICE_METRICS: tuple[tuple[Metric, str], ...] = tuple((m, f) for m, _, f in _reading("dev"))
# (metric, section, field) from the parsed net/snmp + net/netstat tables.
TCP_MIB_METRICS: tuple[tuple[Metric, str, str], ...] = _reading("Tcp", "TcpExt")
# (metric, field): IPv4 from net/snmp's Udp section, IPv6 from net/snmp6.
UDP_METRICS: tuple[tuple[Metric, str], ...] = tuple((m, f) for m, _, f in _reading("Udp"))
# Section -> the fields the collector converts (procnet.pick_net_snmp): exactly those exported.
MIB_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {sec: tuple(f for _, _, f in _reading(sec)) for sec in _MIB_FILE}
)

# net/sockstat{,6} protocol -> the fields the renderer reads. The rest are not kept: several are
# kernel-wide, not the namespace's (TCP mem/alloc/orphan, UDP mem), and move with any socket on the
# host, so an idle namespace holding them looked changed at every scrape and was rendered again.
SOCKSTAT_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"TCP": ("inuse", "tw"), "UDP": ("inuse",), "TCP6": ("inuse",), "UDP6": ("inuse",)}
)


def markdown_table() -> str:
    """The README's metric table."""
    rows = ["| metric | type | labels (besides identity) | source |", "|---|---|---|---|"]
    for m in sorted(ALL, key=lambda m: m.name):
        extra = [lbl for lbl in m.labels if lbl not in IDENTITY]
        ident = "identity + " if set(IDENTITY) <= set(m.labels) else ""
        rows.append(f"| `{m.name}` | {m.kind.value} | {ident}{', '.join(extra) or '-'} | {m.source} |")
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown_table())
