"""Engine API models for issue 11, from JSON shaped like dockerd 20.10's (API 1.41) answers."""

from __future__ import annotations

import ipaddress

from agent.docker.models import Container, Network, PublishedPort, Service, ServicePort

NETWORK_VERBOSE = {
    "Name": "shop_back",
    "Id": "lja7i4o38a4731zxilpo0v5mr",
    "Scope": "swarm",
    "Driver": "overlay",
    "EnableIPv6": False,
    "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]},
    "Internal": False,
    "Attachable": True,
    "Ingress": False,
    "Containers": None,
    "Services": {
        "shop_db": {
            "VIP": "10.0.1.2",
            "Ports": [],
            "LocalLBIndex": 259,
            "Tasks": [
                {
                    "Name": "shop_db.1.2odwpxtbds8anrl5p725sv52y",
                    "EndpointID": "10f301f8",
                    "EndpointIP": "10.0.1.3",
                    "Info": {"Host IP": "192.0.2.1"},
                }
            ],
        },
        # The network's load-balancer endpoints are listed under an empty name.
        "": {"VIP": "", "Ports": [], "Tasks": [{"Name": "shop_back-endpoint", "EndpointIP": "10.0.1.5"}]},
    },
}

SERVICE = {
    "ID": "4zrg7",
    "Spec": {
        "Name": "shop_web",
        "Labels": {"com.docker.stack.namespace": "shop"},
        "EndpointSpec": {
            "Mode": "vip",
            "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080}],
        },
    },
    "Endpoint": {
        "Spec": {"Mode": "vip"},
        "Ports": [
            {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"},
            {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 5353, "PublishMode": "host"},
        ],
        "VirtualIPs": [
            {"NetworkID": "mugywuzf2s3rds8egn16ihezm", "Addr": "10.0.0.4/24"},
            {"NetworkID": "lja7i4o38a4731zxilpo0v5mr", "Addr": "10.0.1.6/24"},
        ],
    },
}


def test_network_verbose() -> None:
    n = Network.from_api(NETWORK_VERBOSE)
    assert (n.name, n.driver, n.scope, n.attachable, n.internal, n.ingress, n.ipv6) == (
        "shop_back",
        "overlay",
        "swarm",
        True,
        False,
        False,
        False,
    )
    assert n.subnets == (ipaddress.ip_network("10.0.1.0/24"),) and n.gateways == ("10.0.1.1",)
    (svc,) = n.services
    assert (svc.name, svc.vip, [(t.name, t.ip) for t in svc.tasks]) == (
        "shop_db",
        "10.0.1.2",
        [("shop_db.1.2odwpxtbds8anrl5p725sv52y", "10.0.1.3")],
    )


def test_network_list_entry_without_gateway_or_services() -> None:
    raw = {"Name": "host", "Id": "h", "Scope": "local", "Driver": "host", "IPAM": {"Config": []}}
    n = Network.from_api(raw)
    assert n.subnets == () and n.gateways == () and n.services == ()
    macvlan = Network.from_api({"Name": "mv", "IPAM": {"Config": [{"Subnet": "10.123.45.0/24"}]}})
    assert macvlan.gateways == ("",)  # aligned with subnets


def test_service_ports_and_vips() -> None:
    s = Service.from_api(SERVICE)
    assert (s.name, s.stack, s.endpoint_mode) == ("shop_web", "shop", "vip")
    assert s.ports == (ServicePort(80, 8080, "tcp", "ingress"), ServicePort(53, 5353, "udp", "host"))
    assert s.vips == (("mugywuzf2s3rds8egn16ihezm", "10.0.0.4"), ("lja7i4o38a4731zxilpo0v5mr", "10.0.1.6"))
    dnsrr = Service.from_api(
        {"ID": "x", "Spec": {"Name": "d", "EndpointSpec": {"Mode": "dnsrr"}}, "Endpoint": {}}
    )
    assert dnsrr.endpoint_mode == "dnsrr" and dnsrr.vips == () and dnsrr.ports == ()


def test_container_published_ports() -> None:
    ports = {
        "8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}, {"HostIp": "::", "HostPort": "32768"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
        "9000/tcp": None,  # EXPOSEd, not published
    }
    assert PublishedPort.parse_all(ports) == (
        PublishedPort(53, "udp", "127.0.0.1", 5353),
        PublishedPort(8080, "tcp", "0.0.0.0", 32768),
        PublishedPort(8080, "tcp", "::", 32768),
    )
    raw = {
        "Id": "a" * 64,
        "Name": "/web",
        "Config": {"Image": "img"},
        "HostConfig": {"NetworkMode": "bridge"},
        "State": {"Pid": 7},
        "NetworkSettings": {"Networks": {}, "Ports": ports},
    }
    assert len(Container.from_inspect(raw).ports) == 3
    assert Container.from_inspect({**raw, "NetworkSettings": {"Ports": None}}).ports == ()
