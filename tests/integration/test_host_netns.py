"""Issue 9 item 1 on a real engine: a `container:X` joiner of a host-network container is the host.

The agent runs in two shapes: as root on the host (`pip install . && dockwatch run`), and as the
image documents it (`--cap-drop ALL`, the host's /proc mounted read-only), reproduced without the
image: a private mount namespace with a read-only bind of /proc, and setpriv dropping every
capability (uid 0 keeps none, as in a `--cap-drop ALL` container). In that shape /proc/1/ns/net
and the links of containers with Docker's default capabilities cannot be read, while a container
that itself runs with `--cap-drop ALL` has a readable link: the case that was exported twice.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agentproc import Agent, Series, scrape_until, select
from tests.support.engine import BUSYBOX_IMAGE, Engine

pytestmark = pytest.mark.docker

RX = "container_network_receive_bytes_total"
INFO = "dockwatch_container_info"


def capless_with_readonly_proc(mnt: Path) -> list[str]:
    """A command prefix: /proc bound read-only at `mnt` in a private mount namespace, then exec
    with no capabilities at all (what `--cap-drop ALL -v /proc:/host/proc:ro` gives the image)."""
    script = (
        f"mount --bind /proc {mnt} && mount -o remount,bind,ro {mnt} && "
        'exec setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all -- "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]


@pytest.fixture(params=["root", "cap-drop-all"])
def agent(
    request: pytest.FixtureRequest, engine_session: Engine, tmp_path: Path
) -> Iterator[tuple[Agent, str]]:
    if request.param == "root":
        a = Agent(engine_session)
    else:
        mnt = tmp_path / "host-proc"
        mnt.mkdir()
        wrap = capless_with_readonly_proc(mnt)
        # The shape is what it claims: /proc read-only, and pid 1's namespace link hidden from us.
        probe = subprocess.run(
            [*wrap, "sh", "-c", f"grep ' {mnt} ' /proc/self/mountinfo; stat -L {mnt}/1/ns/net"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        options = probe.stdout.split()[5].split(",") if probe.stdout else []
        assert "ro" in options, probe
        assert probe.returncode != 0 and "Permission denied" in probe.stderr, probe
        a = Agent(engine_session, f"--path.procfs={mnt}", prefix=wrap)
    a.start()
    yield a, request.param
    assert a.stop() == 0, a.logtext()


def uid() -> str:
    return uuid.uuid4().hex[:8]


def test_joiners_of_a_host_network_container_are_the_host(engine: Engine, agent: tuple[Agent, str]) -> None:
    a, _ = agent
    hostc, j_ro, j_nested, j_default = (f"dwt-hn-{p}-{uid()}" for p in ("h", "j", "jj", "jd"))
    engine.run("--network", "host", BUSYBOX_IMAGE, "sleep", "600", name=hostc)
    # --cap-drop ALL: this joiner's own ns link is readable even to a capability-less agent.
    engine.run(
        "--cap-drop", "ALL", "--network", f"container:{hostc}", BUSYBOX_IMAGE, "sleep", "600", name=j_ro
    )
    engine.run(
        "--cap-drop", "ALL", "--network", f"container:{j_ro}", BUSYBOX_IMAGE, "sleep", "600", name=j_nested
    )
    engine.run("--network", f"container:{hostc}", BUSYBOX_IMAGE, "sleep", "600", name=j_default)
    ours = {hostc, j_ro, j_nested, j_default}

    def seen(m: dict[str, Series]) -> bool:
        return ours <= {lbl["name"] for lbl, _ in m.get(INFO, [])}

    m = scrape_until(a, seen, timeout=10, what="the four containers in the inventory")
    info = {lbl["name"]: lbl for lbl, _ in m[INFO] if lbl["name"] in ours}
    assert {n: lbl["netns_owner"] for n, lbl in info.items()} == dict.fromkeys(ours, "host")
    assert info[hostc]["network_mode"] == "host" and info[j_ro]["network_mode"] == "container"

    # None of them has series of its own: the host's interfaces are not exported a second time.
    # What Docker says of them (issue 11's inventory) is theirs: the host-network container is
    # attached to the `host` network, with no address of its own; the joiners to none.
    inventory = (INFO, "dockwatch_container_events_total", "dockwatch_container_network_info")
    for metric, series in m.items():
        if metric not in inventory:
            assert not [lbl for lbl, _ in series if lbl.get("name") in ours], metric
    attached = [
        (lbl["name"], lbl["network"], lbl["ip_address"])
        for lbl, _ in m["dockwatch_container_network_info"]
        if lbl["name"] in ours
    ]
    assert attached == [(hostc, "host", "")]
    # The host namespace is exported once: one series per host interface, name="", no veths.
    host_ifaces = [lbl["interface"] for lbl, _ in select(m[RX], name="")]
    assert host_ifaces and len(host_ifaces) == len(set(host_ifaces))
    assert all(not i.startswith(("veth", "docker", "br-")) for i in host_ifaces)
    one_per_ns = m["container_network_tcp_connections_established"]
    assert m["dockwatch_network_namespaces_tracked"][0][1] == len(one_per_ns)
    assert len(select(one_per_ns, name="")) == 1
