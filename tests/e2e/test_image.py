"""The agent's image, built from the repo's Dockerfile: what it runs as, what it needs, what it reports.

Each agent container here is reached on its bridge address (the host routes to docker0), and
each measured peer is one this test made; counters are compared with the kernel's own
/proc/<pid>/net/dev, read on the host at a moment when the namespace is quiet.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import procnet
from tests.e2e.harness import http_get
from tests.support.agentproc import Series, parse
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.toolbox import wait_for

pytestmark = pytest.mark.docker

BLOB = 200 * 1024  # one HTTP body, so the counters clearly move


def logs(engine: Engine, container: str) -> str:
    """stdout and stderr of a container (the agent logs to stderr)."""
    res = subprocess.run(
        ["docker", "logs", container], env=engine.env, capture_output=True, text=True, timeout=30, check=True
    )
    return res.stdout + res.stderr


def kernel_dev(pid: int, iface: str = "eth0") -> procnet.DevCounters:
    return procnet.parse_net_dev(Path(f"/proc/{pid}/net/dev").read_text())[iface]


def ip_of(engine: Engine, container: str) -> str:
    return str(engine.inspect(container)["NetworkSettings"]["IPAddress"])


def series(metrics: dict[str, Series], metric: str, **want: str) -> list[tuple[dict[str, str], float]]:
    return [(lbl, v) for lbl, v in metrics.get(metric, []) if all(lbl.get(k) == w for k, w in want.items())]


def web_server(engine: Engine) -> str:
    """A busybox httpd with a BLOB-sized file, on the default bridge."""
    return engine.run(
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        f"mkdir -p /www && dd if=/dev/zero of=/www/blob bs={BLOB} count=1 2>/dev/null"
        " && exec httpd -f -p 8080 -h /www",
    )


def fetch_blob(engine: Engine, server: str, times: int = 3) -> None:
    """A throwaway busybox client downloads the blob `times` times (container to container)."""
    url = f"http://{ip_of(engine, server)}:8080/blob"
    wait_for(lambda: engine.ok("exec", server, "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/blob"))
    loop = f"for i in $(seq {times}); do wget -q -O /dev/null {url} || exit 1; done"
    engine.docker("run", "--rm", "--label", "dockwatch.test=1", BUSYBOX_IMAGE, "sh", "-c", loop)


def quiet_equal(
    scrape: Callable[[], dict[str, Series]],
    pid: int,
    check: Callable[[dict[str, Series], procnet.DevCounters], bool],
    timeout: float = 30,
) -> dict[str, Series]:
    """Scrape until the kernel's eth0 counters stood still around the scrape and `check` holds."""

    def attempt() -> dict[str, Series] | None:
        before = kernel_dev(pid)
        m = scrape()
        return m if kernel_dev(pid) == before and check(m, before) else None

    return wait_for(attempt, timeout=timeout, interval=0.2, what="agent counters equal to the kernel's")


def run_agent(engine: Engine, image: str, *opts: str, args: tuple[str, ...] = ()) -> str:
    """The image as docs/run.md runs it: socket, /proc, Docker's data root; no privileges."""
    root = engine.docker("info", "--format", "{{.DockerRootDir}}")
    return engine.run(
        "--cap-drop",
        "ALL",
        "--read-only",
        "-v",
        f"{engine.socket_path}:/var/run/docker.sock:ro",
        "-v",
        "/proc:/host/proc:ro",
        "-v",
        f"{root}:/host/var/lib/docker:ro",
        "--health-interval",
        "1s",
        *opts,
        image,
        *args,
    )


def test_image_metadata(engine: Engine, agent_image: str) -> None:
    cfg = engine.inspect(agent_image)["Config"]
    assert cfg["Entrypoint"] == ["/opt/dockwatch/bin/dockwatch", "run"]
    assert cfg["User"] in ("", "0")
    assert "9105/tcp" in cfg["ExposedPorts"]
    assert cfg["Healthcheck"]["Test"][0] == "CMD"
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["DOCKWATCH_PATH_PROCFS"] == "/host/proc"
    assert env["DOCKWATCH_PATH_DOCKER_ROOT"] == "/host/var/lib/docker"
    assert env["DOCKWATCH_PATH_STATE"] == "/var/lib/dockwatch"
    labels = cfg["Labels"]
    for key in ("title", "description", "licenses", "version", "base.name"):
        assert labels[f"org.opencontainers.image.{key}"], key
    version = engine.docker(
        "run", "--rm", "--entrypoint", "/opt/dockwatch/bin/dockwatch", agent_image, "--version"
    )
    assert version.startswith("dockwatch ")


def test_root_without_capabilities_reports_peer_traffic_equal_to_kernel(
    engine: Engine, agent_image: str
) -> None:
    server = web_server(engine)
    fetch_blob(engine, server)
    agent = run_agent(engine, agent_image)
    host_config = engine.inspect(agent)["HostConfig"]
    assert (
        host_config["Privileged"] is False and not host_config["CapAdd"] and host_config["PidMode"] != "host"
    )

    # The HEALTHCHECK's one-liner against /healthz, as the engine runs it.
    wait_for(
        lambda: engine.inspect(agent)["State"]["Health"]["Status"] == "healthy",
        timeout=30,
        interval=0.5,
        what="the image's HEALTHCHECK to pass",
    )
    url = f"http://{ip_of(engine, agent)}:9105"
    wait_for(lambda: http_get(url + "/readyz") is not None, timeout=30, what="agent ready")
    name = engine.inspect(server)["Name"].lstrip("/")

    def check(m: dict[str, Series], k: procnet.DevCounters) -> bool:
        rx = series(m, "container_network_receive_bytes_total", name=name, interface="eth0")
        tx = series(m, "container_network_transmit_bytes_total", name=name, interface="eth0")
        return len(rx) == len(tx) == 1 and rx[0][1] == k.rx_bytes and tx[0][1] == k.tx_bytes

    m = quiet_equal(lambda: parse(http_get(url + "/metrics")), engine.pid(server), check)
    (lbl, tx), *_ = series(m, "container_network_transmit_bytes_total", name=name, interface="eth0")
    assert tx > 3 * BLOB
    assert lbl["network"] == "bridge" and lbl["image"] == BUSYBOX_IMAGE
    assert series(m, "dockwatch_engine_connected")[0][1] == 1


def test_non_root_needs_the_socket_group(engine: Engine, agent_image: str) -> None:
    """What docs/run.md says about --user: metrics work with the socket's group, and only then."""
    server = web_server(engine)
    fetch_blob(engine, server, times=1)
    gid = str(os.stat(engine.socket_path).st_gid)
    with_group = run_agent(engine, agent_image, "--user", "65534:65534", "--group-add", gid)
    without = run_agent(engine, agent_image, "--user", "65534:65534")
    name = engine.inspect(server)["Name"].lstrip("/")

    url = f"http://{ip_of(engine, with_group)}:9105"
    m = wait_for(
        lambda: series(
            parse(http_get(url + "/metrics")),
            "container_network_transmit_bytes_total",
            name=name,
            interface="eth0",
        ),
        timeout=30,
        what="the non-root agent's series for the peer",
    )
    assert m[0][1] > BLOB

    # Without the group the engine refuses the socket: alive (/healthz) but never ready.
    bad = f"http://{ip_of(engine, without)}:9105"
    wait_for(lambda: http_get(bad + "/healthz") is not None, timeout=30, what="agent without group alive")
    wait_for(
        lambda: "Permission denied" in logs(engine, without),
        timeout=30,
        what="the permission error in the log",
    )
    with pytest.raises(Exception, match="503"):
        http_get(bad + "/readyz")
    assert series(parse(http_get(bad + "/metrics")), "dockwatch_engine_connected")[0][1] == 0
    said = [ln for ln in logs(engine, without).splitlines() if "cannot connect to the Docker engine" in ln]
    assert len(said) == 1 and f"--group-add {gid}" in said[0]  # the fix, once (issue 9)


def _sidecar_reports_app_traffic(engine: Engine, agent_image: str, *opts: str) -> None:
    app = web_server(engine)
    fetch_blob(engine, app)
    engine.run(
        "--network",
        f"container:{app}",
        "--cap-drop",
        "ALL",
        "--read-only",
        "--user",
        "65534:65534",
        *opts,
        agent_image,
        "--sidecar",
        "--sidecar.name",
        "app",
    )

    # From inside the app, over its loopback: the scrape itself does not touch eth0.
    def scrape() -> dict[str, Series]:
        out = engine.docker(
            "exec", app, "wget", "-q", "-O", "-", "http://127.0.0.1:9105/metrics", check=False
        )
        return parse(out) if out else {}

    def check(m: dict[str, Series], k: procnet.DevCounters) -> bool:
        rx = series(m, "container_network_receive_bytes_total")
        tx = series(m, "container_network_transmit_bytes_total")
        return [(lbl["name"], lbl["interface"], v) for lbl, v in rx] == [("app", "eth0", k.rx_bytes)] and [
            v for _, v in tx
        ] == [k.tx_bytes]

    m = quiet_equal(scrape, engine.pid(app), check, timeout=15)
    assert series(m, "container_network_transmit_bytes_total")[0][1] > 3 * BLOB


def test_sidecar_as_in_sidecar_compose(engine: Engine, agent_image: str) -> None:
    """deploy/sidecar-compose.yaml's settings: non-root, no socket, no host /proc, own /proc."""
    _sidecar_reports_app_traffic(engine, agent_image, "-e", "DOCKWATCH_PATH_PROCFS=/proc")


def test_sidecar_plain_image_defaults(engine: Engine, agent_image: str) -> None:
    """`docker run --network container:app dockwatch --sidecar ...` with nothing else set."""
    _sidecar_reports_app_traffic(engine, agent_image)


def test_log_shipping_needs_root(engine: Engine, agent_image: str, tmp_path: Path) -> None:
    """Docker's json logs are root's (0640 in a 0710 data root): root without capabilities reads
    them; a non-root --user, even with the socket's group, ships nothing."""
    marker = f"dockwatch-e2e-{os.getpid()}-{tmp_path.name}"
    logger = engine.run(BUSYBOX_IMAGE, "sh", "-c", f"echo {marker}; exec sleep 3600")
    gid = str(os.stat(engine.socket_path).st_gid)
    urls = {}
    for who, user in (("root", ()), ("nonroot", ("--user", "65534:65534", "--group-add", gid))):
        state = tmp_path / who
        state.mkdir()
        state.chmod(0o1777)
        sink = ("--log-sink", "json-file", "--log-opt", "path=/var/lib/dockwatch/out")
        agent = run_agent(engine, agent_image, *user, "-v", f"{state}:/var/lib/dockwatch", args=sink)
        urls[who] = f"http://{ip_of(engine, agent)}:9105"

    shipped = tmp_path / "root" / "out" / logger / f"{logger}-json.log"
    wait_for(lambda: marker in shipped.read_text(), timeout=30, what="the root agent to ship the line")

    def following(who: str) -> float:
        m = parse(http_get(urls[who] + "/metrics"))
        return sum(v for _, v in series(m, "dockwatch_log_sink_containers"))

    # The non-root agent follows the same containers (the engine API tells it about them), but
    # opening the logger's file is refused: nothing of it is shipped. (Other tests' containers on
    # this shared engine may use other drivers, read through the API; they are not looked at.)
    wait_for(lambda: following("nonroot") >= 1, timeout=30, what="the non-root agent's log pipeline")
    assert following("root") >= 1
    assert not (tmp_path / "nonroot" / "out" / logger).exists()

    # ... and says so: the refusal is counted (and warned about once), not silent. The count is
    # every container the non-root agent cannot open, so at least the logger.
    def permission_denied(who: str) -> float:
        m = parse(http_get(urls[who] + "/metrics"))
        return sum(v for _, v in series(m, "dockwatch_log_containers_unreadable", reason="permission"))

    wait_for(lambda: permission_denied("nonroot") >= 1, timeout=30, what="unreadable{reason=permission}")
    assert permission_denied("root") == 0
