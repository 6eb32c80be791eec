"""Second peer for issue 14: Debian's netdata (1.37) against dockwatch, same containers, same run.

Usage (as root, with docker.io, busybox-static and Debian's `netdata` installed; netdata's own
system service need not run and is not used):

    python3 bench/netdata.py [--window=S] [--settle=S] [--configs=minimal,default] [--scoped=1] N [N ...]

For each N it starts N idle busybox containers on the tests' private engine (unique name prefix;
DWBENCH_PREFIX reuses an interrupted run's), then runs at once, over one measuring window:
  - dockwatch in interval mode, collecting every 1 s (`--collector.interval=1s`), nobody scraping;
    it collects every container on the engine (it has no filter);
  - one netdata per config in the foreground, `update every = 1`, its own config/cache/lib/log
    dirs in a temp dir, web API on a free loopback port; `minimal` = only proc.plugin's
    /proc/net/dev and cgroups.plugin (the two that make per-container network charts), external
    plugins, health, ML, registry and statsd off; `default` = the package's defaults, only dirs,
    port, update every and `max cgroups to allow` set. `--scoped=1`: netdata names, maps and
    charts only the bench's N containers (on a shared engine with hundreds of other containers
    its one-at-a-time discovery takes hours).
Each runs in its own cpuacct cgroup (cgroup v1 here), so the CPU figure includes every
descendant, also the short-lived ones (netdata's cgroup-name.sh and cgroup-network runs).
It waits until dockwatch tracks the engine's containers and each netdata has a
cgroup_<name>.net_* chart per bench container (/api/v1/charts), lets them settle, then measures
CPU over the same window; it also reports the CPU spent from start until all were seen,
netdata's per-thread CPU in the window (its internal plugins are threads: PLUGIN[proc netdev],
PLUGIN[cgroups], ...), and RSS at the end of the window.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.support.agentproc import Agent, free_port, one  # noqa: E402
from tests.support.engine import BUSYBOX_IMAGE, Engine, test_engine  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
CPUACCT = Path("/sys/fs/cgroup/cpuacct")
NETDATA = "/usr/sbin/netdata"
PLUGINS = "/usr/lib/netdata/plugins.d"
STOCK = "/usr/lib/netdata/conf.d"
WEB = "/usr/share/netdata/web"
# This run's containers, whoever else shares the engine; DWBENCH_PREFIX reuses those of an
# interrupted run (starting hundreds of containers on a busy engine takes long).
PREFIX = os.environ.get("DWBENCH_PREFIX") or f"dwnd-{uuid.uuid4().hex[:6]}"
LABEL = f"dockwatch.bench.netdata={PREFIX}"

# proc.plugin modules other than /proc/net/dev, off in the minimal config.
PROC_MODULES = (
    "/proc/stat /proc/uptime /proc/loadavg /proc/sys/kernel/random/entropy_avail /proc/pressure "
    "/proc/interrupts /proc/softirqs /proc/vmstat /proc/meminfo /sys/kernel/mm/ksm /sys/block/zram "
    "/sys/devices/system/edac/mc /sys/devices/system/node /proc/pagetypeinfo /proc/net/wireless "
    "/proc/net/sockstat /proc/net/sockstat6 /proc/net/netstat /proc/net/snmp /proc/net/snmp6 "
    "/proc/net/sctp/snmp /proc/net/softnet_stat /proc/net/ip_vs/stats /sys/class/infiniband "
    "/proc/net/stat/conntrack /proc/net/stat/synproxy /proc/diskstats /proc/mdstat /proc/net/rpc/nfsd "
    "/proc/net/rpc/nfs /proc/spl/kstat/zfs/arcstats /proc/spl/kstat/zfs/pool/state /sys/fs/btrfs ipc "
    "/sys/class/power_supply"
).split()
INTERNAL_OFF = "timex idlejitter tc diskspace checks netdata monitoring statsd".split()
EXTERNAL = "apps python.d charts.d go.d node.d fping ioping perf slabinfo nfacct cups freeipmi ebpf".split()
# Per-interface counters the minimal config charts for every interface, as dockwatch exports
# them for every container (the default, `auto`, charts a counter only once it is non-zero).
NETDEV_ON = "bandwidth packets errors drops".split()
NETDEV_OFF = "fifo compressed,frames, collisions, carrier counters,speed,duplex,operstate,carrier,mtu"


def netdata_conf(tmp: Path, port: int, minimal: bool, scope: list[str]) -> str:
    lines = [
        "[global]",
        "  run as user = root",
        "  hostname = dwbench",
        "[db]",
        "  update every = 1",
        "  mode = ram",
        "[directories]",
        f"  config = {tmp}/etc",
        f"  stock config = {STOCK}",
        f"  log = {tmp}/log",
        f"  cache = {tmp}/cache",
        f"  lib = {tmp}/lib",
        f"  home = {tmp}",
        f"  lock = {tmp}/lock",
        f"  plugins = {PLUGINS}",
        f"  web = {WEB}",
        f"  registry = {tmp}/registry",
        "[logs]",
        f"  error = {tmp}/log/error.log",
        "  access = none",
        "  debug = none",
        "[web]",
        f"  bind to = 127.0.0.1:{port}",
        "[registry]",
        "  enabled = no",
        "[cloud]",
        "  # no claiming here",
        "[plugin:cgroups]",
        "  update every = 1",
        # The default, 1000, is below what a shared engine plus N = 500 makes; past it netdata
        # stops adding cgroups and some bench containers would never be charted.
        "  max cgroups to allow = 5000",
    ]
    if scope:
        # Only these containers' cgroups (the path under the cgroup root is /docker/<id> here),
        # named (cgroup-name.sh) and mapped (cgroup-network): the shared engine also runs other
        # sessions' containers, hundreds of them, and netdata discovers one at a time.
        pattern = " ".join(f"/docker/{cid[:12]}*" for cid in scope) + " !*"
        lines += [f"  enable by default cgroups matching = {pattern}"]
        lines += [f"  run script to rename cgroups matching = {pattern}"]
    if minimal:
        lines += ["[health]", "  enabled = no", "[ml]", "  enabled = no", "[statsd]", "  enabled = no"]
        lines += ["[plugins]", "  proc = yes", "  cgroups = yes", "  enable running new plugins = no"]
        lines += [f"  {p} = no" for p in INTERNAL_OFF + EXTERNAL]
        lines += ["[plugin:proc]", "  /proc/net/dev = yes"] + [f"  {m} = no" for m in PROC_MODULES]
        lines += ["[plugin:proc:/proc/net/dev]"]
        lines += [f"  {k} for all interfaces = yes" for k in NETDEV_ON]
        lines += [f"  {k} for all interfaces = no" for k in NETDEV_OFF.split(",")]
        lines += [
            "[plugin:cgroups]",
            # cgroups.plugin's container charts other than network: off, network is the comparison.
            "  enable cpuacct stat (total CPU) = no",
            "  enable cpuacct usage (per core CPU) = no",
            "  enable cpuacct cpu throttling = no",
            "  enable cpuacct cpu shares = no",
            "  enable memory = no",
            "  enable detailed memory = no",
            "  enable memory limits fail count = no",
            "  enable swap memory = no",
            "  enable blkio bandwidth = no",
            "  enable blkio operations = no",
            "  enable blkio throttle bandwidth = no",
            "  enable blkio throttle operations = no",
            "  enable blkio queued operations = no",
            "  enable blkio merged operations = no",
            "  enable cpu pressure = no",
            "  enable io some pressure = no",
            "  enable io full pressure = no",
            "  enable memory some pressure = no",
            "  enable memory full pressure = no",
            "  enable systemd services = no",
        ]
    return "\n".join(lines) + "\n"


# --- CPU accounting ------------------------------------------------------------------------------
class Group:
    """A cpuacct cgroup (v1) for one peer: its usage counts every descendant, short-lived included."""

    def __init__(self, name: str) -> None:
        self.path = CPUACCT / name
        self.path.mkdir()

    def join(self) -> None:  # in the child, before exec
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def cpu(self) -> float:
        return int((self.path / "cpuacct.usage").read_text()) / 1e9

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)  # the last processes are still exiting


def proc_cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def threads(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (netdata's plugins are threads), summed over same names."""
    out: dict[str, float] = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (t / "comm").read_text().strip()
            f = (t / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / TICK
    return out


def until(cond: Callable[[], bool], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(what)
        time.sleep(0.5)
    return time.monotonic() - t0


# --- containers ----------------------------------------------------------------------------------
def scale_to(eng: Engine, n: int) -> list[str]:
    have = eng.docker("ps", "-q", "--filter", f"label={LABEL}").split()
    for i in range(len(have), n):
        eng.docker("run", "-d", "--label", LABEL, "--name", f"{PREFIX}-{i}", BUSYBOX_IMAGE, "sleep", "86400")
    return [f"{PREFIX}-{i}" for i in range(n)]


def cleanup(eng: Engine) -> None:
    eng.remove(f"label={LABEL}")


# --- the peers -----------------------------------------------------------------------------------
def cgroup_charts(port: int, names: list[str]) -> tuple[int, int, int]:
    """(bench containers with any cgroup_<name>.* chart, those with a net chart, all cgroup net charts)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/charts", timeout=30) as resp:
        charts = json.load(resp)["charts"]
    groups = {c.split(".", 1)[0].removeprefix("cgroup_") for c in charts if c.startswith("cgroup_")}
    net = [c for c in charts if c.startswith("cgroup_") and ".net_" in c]
    netgroups = {c.split(".", 1)[0].removeprefix("cgroup_") for c in net}
    return sum(1 for n in names if n in groups), sum(1 for n in names if n in netgroups), len(net)


class Netdata:
    def __init__(self, eng: Engine, names: list[str], minimal: bool, scope: list[str]) -> None:
        self.names = names
        self.label = ("minimal" if minimal else "default") + (", scoped" if scope else "")
        self.tmp = Path(tempfile.mkdtemp(prefix="dwbench-netdata-"))
        for d in ("etc", "log", "cache", "lib", "lock", "registry"):
            (self.tmp / d).mkdir()
        self.port = free_port()
        self.conf = self.tmp / "netdata.conf"
        self.conf.write_text(netdata_conf(self.tmp, self.port, minimal, scope))
        self.grp = Group(f"{PREFIX}-netdata-{'min' if minimal else 'def'}")
        self.env = {
            **os.environ,
            "DOCKER_HOST": eng.host,  # cgroup-name.sh names containers with `docker inspect`
            "DO_NOT_TRACK": "1",  # no anonymous statistics from the bench
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.out = open(self.tmp / "stdout.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [NETDATA, "-D", "-c", str(self.conf)],
            stdout=self.out,
            stderr=subprocess.STDOUT,
            env=self.env,
            preexec_fn=self.grp.join,
        )

    def charts(self) -> tuple[int, int, int]:
        assert self.proc is not None
        assert self.proc.poll() is None, f"netdata exited {self.proc.returncode}: see {self.tmp}"
        try:
            return cgroup_charts(self.port, self.names)
        except OSError:
            return (0, 0, 0)

    def charted(self, k: int) -> Callable[[], bool]:
        """Condition: every bench container has any chart (k=0) or a net chart (k=1)."""
        return lambda: self.charts()[k] >= len(self.names)

    def pids(self) -> list[int]:
        return [int(p) for p in (self.grp.path / "cgroup.procs").read_text().split()]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.out.close()
        # Plugins netdata started may outlive it for a moment: wait for the group to empty.
        until(lambda: not self.pids(), 60, "netdata's children exit")
        self.grp.remove()
        if os.environ.get("DWBENCH_KEEP") is None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def measure(
    eng: Engine, names: list[str], configs: list[str], scoped: bool, window: float, settle: float
) -> list[dict[str, object]]:
    """dockwatch and every netdata config at once, over the same window (the same churn from
    others on the shared engine; each in its own cgroup, so their CPU is told apart)."""
    running = len(eng.docker("ps", "-q").split())  # dockwatch tracks every container on the engine
    scope = eng.docker("inspect", "-f", "{{.Id}}", *names).split() if scoped else []
    nds = [Netdata(eng, names, cfg == "minimal", scope) for cfg in configs]
    dgrp = Group(f"{PREFIX}-dockwatch")
    agent = Agent(eng, "--collector.interval=1s", "--log.level=info")
    # The agent joins its cgroup before exec (the Agent helper starts it with Popen).
    agent.prefix = ["sh", "-c", f'echo $$ > {dgrp.path}/cgroup.procs && exec "$@"', "sh"]
    try:
        t0 = time.monotonic()
        for nd in nds:
            nd.start()
        agent.start()
        assert agent.proc is not None
        # Others' containers come and go on the shared engine: most of them, and every bench one.
        want = max(len(names), int(running * 0.9))
        until(lambda: one(agent.scrape(), "dockwatch_containers_tracked") >= want, 600, "dockwatch sees all")
        dw_disc = (time.monotonic() - t0, dgrp.cpu())
        nd_disc = []
        for nd in nds:
            until(
                nd.charted(0),
                1800,
                f"netdata charts every bench container ({nd.tmp})",
            )
            with contextlib.suppress(TimeoutError):  # `auto` charts an interface only once it counts
                until(nd.charted(1), 30, "net charts")
            nd_disc.append((time.monotonic() - t0, nd.grp.cpu()))
        time.sleep(settle)
        th0 = [threads(nd.proc.pid) for nd in nds if nd.proc]
        n0, d0, t0 = [nd.grp.cpu() for nd in nds], dgrp.cpu(), time.monotonic()
        time.sleep(window)
        ncpu, dcpu = [nd.grp.cpu() - c for nd, c in zip(nds, n0, strict=True)], dgrp.cpu() - d0
        wall = time.monotonic() - t0
        th1 = [threads(nd.proc.pid) for nd in nds if nd.proc]
        running_after = len(eng.docker("ps", "-q").split())
        tracked = one(agent.scrape(), "dockwatch_containers_tracked")
        charts = [nd.charts() for nd in nds]
        nd_rss, dw_rss = [rss_mib(nd.pids()) for nd in nds], rss_mib([agent.proc.pid])
    finally:
        agent.stop()
        dgrp.remove()
        for nd in nds:
            nd.stop()
    rows = []
    for i, nd in enumerate(nds):
        # Per thread, in % of a core; the rest of the group is children (external plugins, helpers).
        per = {k: (v - th0[i].get(k, 0.0)) / wall * 100 for k, v in th1[i].items()}
        busy = sorted(((v, k) for k, v in per.items() if v >= 0.05), reverse=True)
        groups, netgroups, all_net = charts[i]
        rows.append(
            {
                "config": nd.label,
                "running": f"{running}/{running_after}",
                "dw_tracked": tracked,
                "dw_cpu": dcpu / wall * 100,
                "nd_cpu": ncpu[i] / wall * 100,
                "threads": ", ".join(f"{k} {v:.1f}" for v, k in busy),
                "children": ncpu[i] / wall * 100 - sum(per.values()),
                "charts": f"{netgroups}/{len(names)} ({groups} with any; {all_net} cgroup net charts)",
                "dw_rss": dw_rss,
                "nd_rss": nd_rss[i],
                "dw_disc": f"{dw_disc[0]:.0f} s, {dw_disc[1]:.1f} s CPU",
                "nd_disc": f"{nd_disc[i][0]:.0f} s, {nd_disc[i][1]:.1f} s CPU",
            }
        )
    return rows


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
    window = float(opts.get("window", "60"))
    settle = float(opts.get("settle", "10"))
    configs = opts.get("configs", "minimal,default").split(",")
    sizes = [int(a) for a in args] or [100]
    rows = []
    with test_engine() as eng:
        try:
            for n in sizes:
                names = scale_to(eng, n)
                for r in measure(eng, names, configs, "scoped" in opts, window, settle):
                    rows.append((n, r["config"], r))
                    print(f"N={n}: {r}", file=sys.stderr, flush=True)
        finally:
            cleanup(eng)
    print(f"window {window:.0f} s after {settle:.0f} s settling; CPU in % of a core, all peers in one window")
    print(
        "| bench N | running on the engine (start/end) | netdata config | dockwatch CPU | netdata CPU "
        "| netdata threads (% of a core) | netdata children | bench containers with net charts "
        "| dockwatch RSS | netdata RSS | until all seen: dockwatch | netdata |"
    )
    print("|---:|---|---|---:|---:|---|---:|---|---:|---:|---|---|")
    for n, cfg, r in rows:
        print(
            f"| {n} | {r['running']} | {cfg} | {r['dw_cpu']:.1f} % | {r['nd_cpu']:.1f} % | {r['threads']} "
            f"| {r['children']:.1f} % | {r['charts']} | {r['dw_rss']:.0f} MiB | {r['nd_rss']:.0f} MiB "
            f"| {r['dw_disc']} | {r['nd_disc']} |"
        )


if __name__ == "__main__":
    main()
