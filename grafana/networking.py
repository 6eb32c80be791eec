"""Issue 11's dashboards: "Networks & ports" (dockwatch-networks) and "Service map"
(dockwatch-service-map).

The service map is Grafana's Node Graph panel fed by one Prometheus query whose series carry the
labels the panel reads: `id`, `source`, `target` (and the value, renamed `mainstat`). A frame
with a `source` field is the edges frame; with edges only, the panel makes the nodes from them.
Node ids: `<node>/<container>`, `service/<name>`, `host/<node>`, `external` (or `external/<ip>`
with --collector.connections-external-ips). Each connection between two containers of this host is
seen from both ends; the map draws it from the client's end, and from the server's end only
where the client is no local container (a service, another host, external).
"""

from __future__ import annotations

from exporters.prometheus import names as n
from grafana.panels import Json, Panel, dashboard, instant, link_to, query_var, stat, t, ts, variables
from grafana.queries import CONTAINER, HOSTNS, JOB, NODE, SERVICE_BY, STACK, per_node, sel

NEEDS_TIER = "enable --collector.connections"
CLIENT = 'direction="client"'
SERVER = 'direction="server"'
TO_CONTAINER = 'peer_kind="container"'
NOT_CONTAINER = 'peer_kind!="container"'
EXTERNAL = 'peer_kind="external"'
SERVICE = 'service=~"$service"'
SWEEP = 'collector="connections"'
NEEDS_MANAGER = "swarm managers only"


def _net_var() -> Json:
    return query_var("network", "Network", f"label_values({sel(n.NETWORK_INFO, JOB, NODE)}, network)")


def _hide(*names: str, order: tuple[str, ...] = ()) -> Json:
    """Table columns: drop Prometheus's bookkeeping and `names`, put `order` first."""
    return {
        "id": "organize",
        "options": {
            "excludeByName": dict.fromkeys(("Time", "__name__", "job", "instance", *names), True),
            "indexByName": {k: i for i, k in enumerate(order)},
        },
    }


def networks() -> Json:
    c = CONTAINER
    net = 'network=~"$network"'
    nets = f"{JOB},{NODE},{net}"
    key = "on (job, instance, node, network_id)"  # two networks may share a name
    flags = "driver, scope, internal, attachable, ingress, ipv6"
    per_net = f"{sel(n.NETWORK_CONTAINERS, nets)} * {key} group_left ({flags}) {sel(n.NETWORK_INFO, nets)}"
    # One row per subnet (a dual-stack network has two); networks without IPAM (host, none) too.
    net_rows = f"{sel(n.NETWORK_SUBNET, nets)} * {key} group_left ({flags}) ({per_net}) or {key} ({per_net})"
    port_key = "on (job, instance, node, name, container_port, protocol, host_ip, host_port)"
    # The tier's state where it has one; -1 ("not checked") for ports it has not swept.
    port_rows = (
        f"{sel(n.PUBLISHED_PORT_LISTENING, c)} or {port_key} ({sel(n.CONTAINER_PUBLISHED_PORT, c)} - 2)"
    )
    port_mappings = [
        {
            "type": "value",
            "options": {
                "1": {"text": "listening", "color": "green", "index": 0},
                "0": {"text": "NOT LISTENING", "color": "red", "index": 1},
                "-1": {"text": "not checked (--collector.connections)", "color": "text", "index": 2},
            },
        }
    ]
    detail = [link_to("dockwatch-container", "Container detail")]
    panels = [
        stat(
            "Networks", "Docker networks the engines list.", "short", t(f"count({sel(n.NETWORK_INFO, nets)})")
        ),
        stat(
            "Attached containers",
            "Network attachments of running containers (a container on two networks counts twice).",
            "short",
            t(f"sum({sel(n.NETWORK_CONTAINERS, nets)})"),
        ),
        stat(
            "Published ports",
            "Host bindings of the selected containers' published ports.",
            "short",
            t(f"count({sel(n.CONTAINER_PUBLISHED_PORT, c)})"),
        ),
        stat(
            "Published, nothing listening",
            "Published ports with no listener where Docker forwards them (nothing, or loopback only).",
            "short",
            # One port is bound on 0.0.0.0 and :: (two series): counted once, by its worst binding.
            t(
                "sum(1 - max by (node, name, container_port, protocol) "
                f"({sel(n.PUBLISHED_PORT_LISTENING, c)}))"
            ),
            no_value=NEEDS_TIER,
            extra_defaults={
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                }
            },
            options={"colorMode": "background"},
        ),
        stat(
            "Listening sockets",
            "TCP listeners and bound UDP sockets in the selected containers.",
            "short",
            t(f"sum({sel(n.LISTENING_SOCKETS, c)})"),
            no_value=NEEDS_TIER,
        ),
        stat(
            "Swarm service ports",
            "Published ports of swarm services (from a manager's service list).",
            "short",
            # Every manager lists the same services: one port counted once, not once per manager.
            t(
                "count(max by (stack, service, target_port, published_port, protocol, publish_mode) "
                f"({sel(n.SERVICE_PUBLISHED_PORT, JOB, NODE, STACK, SERVICE)}))"
            ),
            no_value=NEEDS_MANAGER,
        ),
        Panel(
            "table",
            "Networks",
            "Every Docker network: driver, scope, flags, subnet and gateway, and how many running "
            "containers of the node are attached (Value).",
            "short",
            [instant(net_rows)],
            w=24,
            h=8,
            transformations=[
                _hide(order=("node", "network", "driver", "scope", "subnet", "gateway")),
                {"id": "organize", "options": {"renameByName": {"Value": "containers"}}},
            ],
        ),
        Panel(
            "table",
            "Published ports and what listens behind them",
            "Each host binding of a published port and whether anything in the container listens "
            "where Docker forwards it: listening, NOT LISTENING (state: not_listening, or "
            "loopback_only when the app binds 127.0.0.1 / ::1), or not checked without "
            "--collector.connections.",
            "none",
            [instant(port_rows)],
            w=24,
            h=8,
            links=detail,
            extra_defaults={"mappings": port_mappings},
            transformations=[
                _hide(
                    "image",
                    "task",
                    order=("node", "name", "container_port", "protocol", "host_ip", "host_port", "state"),
                ),
                {"id": "organize", "options": {"renameByName": {"Value": "listening"}}},
            ],
        ),
        Panel(
            "table",
            "What listens",
            "Listening sockets per container: TCP in LISTEN, UDP bound and unconnected (Value: "
            "sockets; SO_REUSEPORT makes several). Docker's embedded DNS is left out.",
            "short",
            [instant(f"sum by (node, name, protocol, address, port) ({sel(n.LISTENING_SOCKETS, c)})")],
            w=12,
            h=9,
            links=detail,
            no_value=NEEDS_TIER,
            transformations=[_hide(order=("node", "name", "protocol", "address", "port"))],
        ),
        Panel(
            "table",
            "Container attachments",
            "Each container's networks and its addresses there.",
            "none",
            [instant(f"{sel(n.CONTAINER_NETWORK, c, net)}")],
            w=12,
            h=9,
            links=detail,
            transformations=[
                _hide("Value", "image", "task", order=("node", "name", "network", "ip_address"))
            ],
        ),
        Panel(
            "table",
            "Swarm services: published ports",
            "Each swarm service's published ports: target (container) and published port, protocol, and "
            "publish mode (ingress: the routing mesh on every node; host: only where a task runs).",
            "none",
            [instant(f"{sel(n.SERVICE_PUBLISHED_PORT, JOB, NODE, STACK, SERVICE)}")],
            w=12,
            h=7,
            no_value=NEEDS_MANAGER,
            transformations=[_hide("Value", order=("stack", "service", "published_port", "target_port"))],
        ),
        Panel(
            "table",
            "Swarm services: virtual IPs",
            "Each swarm service's virtual IP per network: the address clients' sockets show, which the "
            "service map resolves to the service.",
            "none",
            [instant(f"{sel(n.SERVICE_VIRTUAL_IP, JOB, NODE, STACK, SERVICE)}")],
            w=12,
            h=7,
            no_value=NEEDS_MANAGER,
            transformations=[_hide("Value", order=("stack", "service", "network", "virtual_ip"))],
        ),
        ts(
            "Containers per network",
            "Running containers attached to each network, per node.",
            "short",
            t(f"sum by (node, network) ({sel(n.NETWORK_CONTAINERS, nets)})", "{{node}}/{{network}}"),
        ),
        ts(
            "Published ports with nothing listening",
            "Per container: published ports where nothing listens (or only on loopback).",
            "short",
            t(
                "sum by (node, name) (1 - max by (node, name, container_port, protocol) "
                f"({sel(n.PUBLISHED_PORT_LISTENING, c)}))",
                "{{node}}/{{name}}",
            ),
            links=detail,
            no_value=NEEDS_TIER,
        ),
        Panel(
            "table",
            "Host namespace: what listens",
            "Listening sockets of the host's own namespace (with --collector.host-netns): host-network "
            "containers listen here.",
            "short",
            [instant(f"sum by (node, protocol, address, port) ({sel(n.LISTENING_SOCKETS, HOSTNS)})")],
            w=24,
            h=7,
            no_value=NEEDS_TIER,
            transformations=[_hide(order=("node", "protocol", "address", "port"))],
        ),
    ]
    templating = [*variables(), _net_var()]
    return dashboard(
        "dockwatch-networks",
        "dockwatch / Networks & ports",
        "Docker networks (driver, subnet, attached containers), each container's attachments, "
        "published ports with whether anything listens behind them, and swarm services' ports and VIPs.",
        panels,
        templating,
    )


# --- the service map ---------------------------------------------------------------------------------
def _edges() -> str:
    """PromQL: one series per (source, target) with labels id/source/target; value = connections."""
    c, h = CONTAINER, HOSTNS

    agg = "sum by (node, name, peer_kind, peer)"

    def peer_id(which: str, to: str, containers: bool = True) -> str:
        """Label `to` with the peer's node id: <node>/<name> for a container, <kind>/<peer> else."""
        elsewhere = sel(n.PEER_CONNECTIONS, which, NOT_CONTAINER)
        other = f'label_join({agg} ({elsewhere}), "{to}", "/", "peer_kind", "peer")'
        if not containers:
            return other
        here = sel(n.PEER_CONNECTIONS, which, TO_CONTAINER)
        local = f'label_join({agg} ({here}), "{to}", "/", "node", "peer")'
        return f"({local} or {other})"

    def own(expr: str, host: bool, to: str) -> str:
        """Label `to` with this namespace's node id: <node>/<name>, or host/<node>."""
        if host:
            tagged = f'label_replace({expr}, "kind", "host", "node", ".*")'
            return f'label_join({tagged}, "{to}", "/", "kind", "node")'
        return f'label_join({expr}, "{to}", "/", "node", "name")'

    views = [
        own(peer_id(f"{c},{CLIENT}", "target"), False, "source"),
        own(peer_id(f"{h},{CLIENT}", "target"), True, "source"),
        # Server ends whose client is no local container (else its client end drew the edge).
        own(peer_id(f"{c},{SERVER}", "source", containers=False), False, "target"),
        own(peer_id(f"{h},{SERVER}", "source", containers=False), True, "target"),
    ]
    # `or` keeps the first view of a pair seen from both ends (client view first).
    union = " or ".join(f"sum by (source, target) ({v})" for v in views)
    tidy = f'label_replace(label_replace({union}, "source", "external", "source", "external/external"), '
    tidy += '"target", "external", "target", "external/external")'
    return f'label_join({tidy}, "id", " -> ", "source", "target")'


def _as_node_graph(panel: Json) -> Json:
    """A table panel built by panels.py, turned into a Node Graph panel (same query, table frames)."""
    panel["type"] = "nodeGraph"
    panel["options"] = {"nodes": {"mainStatUnit": "short"}, "edges": {"mainStatUnit": "short"}}
    panel["fieldConfig"]["defaults"].pop("custom", None)
    panel["targets"][0]["refId"] = "edges"  # getNodeGraphDataFrames also picks frames by this refId
    return panel


def service_map() -> Json:
    c = CONTAINER
    detail = [link_to("dockwatch-container", "Container detail")]
    peer_cols = ("node", "name", "direction", "peer_kind", "peer", "peer_service", "port")
    panels = [
        stat(
            "Connections",
            "Established TCP connections of the selected containers, counted at the client's end "
            "(a connection between two containers here is not counted twice).",
            "short",
            t(f"sum({sel(n.PEER_CONNECTIONS, c, CLIENT)})"),
            no_value=NEEDS_TIER,
        ),
        stat(
            "Accepted",
            "Established TCP connections the selected containers accepted (server end).",
            "short",
            t(f"sum({sel(n.PEER_CONNECTIONS, c, SERVER)})"),
            no_value=NEEDS_TIER,
        ),
        stat(
            "Peers",
            "Distinct (container, peer, port) pairs with connections.",
            "short",
            t(f"count({sel(n.PEER_CONNECTIONS, c)})"),
            no_value=NEEDS_TIER,
        ),
        stat(
            "External connections",
            "Connections with addresses that are no container, service or this host.",
            "short",
            t(f"sum({sel(n.PEER_CONNECTIONS, c, EXTERNAL)})"),
            no_value=NEEDS_TIER,
        ),
        stat(
            "Tier sweep duration",
            "Wall time of the connection tier's last sweep of every namespace (it runs on its own "
            "interval, never at scrape time).",
            "s",
            t(f"max({per_node(sel(n.COLLECTOR_DURATION, JOB, SWEEP))})"),
            w=8,
            no_value=NEEDS_TIER,
        ),
        Panel(
            "table",
            "Who talks to whom",
            "Containers, services, hosts and external peers as nodes, established TCP connections as "
            "edges (from client to server; the number is connections). A container's id is "
            "node/name; services, hosts and external peers are prefixed by their kind.",
            "short",
            [instant(_edges())],
            w=24,
            h=14,
            no_value=NEEDS_TIER,
        ),
        Panel(
            "table",
            "Connections by peer",
            "Each container's established connections by peer and server port, from both ends: "
            "direction client (it connected out) or server (it accepted). Both ends of a connection "
            "between two containers here show the same port.",
            "short",
            [instant(f"sum by ({', '.join(peer_cols)}) ({sel(n.PEER_CONNECTIONS, c)})")],
            w=24,
            h=9,
            links=detail,
            no_value=NEEDS_TIER,
            transformations=[_hide(order=peer_cols)],
        ),
        Panel(
            "table",
            "Service to service",
            "Client-side connections aggregated by the services at both ends (swarm stack/service or "
            "compose project/service; peer_service is the peer's swarm service).",
            "short",
            [
                instant(
                    f"sum by ({SERVICE_BY}, peer_kind, peer_service, port) "
                    f"({sel(n.PEER_CONNECTIONS, c, CLIENT)})"
                )
            ],
            w=24,
            h=7,
            no_value=NEEDS_TIER,
            transformations=[_hide(order=("stack", "service", "compose_project", "compose_service"))],
        ),
        ts(
            "Outgoing connections by peer",
            "Connections each container holds to each peer and port (client end).",
            "short",
            t(
                f"sum by (node, name, peer, port) ({sel(n.PEER_CONNECTIONS, c, CLIENT)})",
                "{{node}}/{{name}} → {{peer}}:{{port}}",
            ),
            links=detail,
            no_value=NEEDS_TIER,
        ),
        ts(
            "Accepted connections by peer kind",
            "Connections each container accepted, by the kind of client: container, service, host or "
            "external.",
            "short",
            t(
                f"sum by (node, name, peer_kind, port) ({sel(n.PEER_CONNECTIONS, c, SERVER)})",
                "{{node}}/{{name}}:{{port}} ← {{peer_kind}}",
            ),
            links=detail,
            no_value=NEEDS_TIER,
        ),
        Panel(
            "table",
            "Host namespace connections",
            "Connections of the host's own namespace (with --collector.host-netns), where host-network "
            "containers' sockets are, by peer and server port.",
            "short",
            [instant(f"sum by (node, direction, peer_kind, peer, port) ({sel(n.PEER_CONNECTIONS, HOSTNS)})")],
            w=24,
            h=7,
            no_value=NEEDS_TIER,
            transformations=[_hide(order=("node", "direction", "peer_kind", "peer", "port"))],
        ),
    ]
    dash: Json = dashboard(
        "dockwatch-service-map",
        "dockwatch / Service map",
        "Who talks to whom: containers, swarm services, hosts and external peers, and the established "
        "TCP connections between them (needs --collector.connections).",
        panels,
        variables(),
    )
    for p in dash["panels"]:
        if p["title"] == "Who talks to whom":
            _as_node_graph(p)
            p["transformations"] = [
                {"id": "organize", "options": {"renameByName": {"Value": "mainstat"}}},
            ]
    return dash
