"""Misconfiguration is loud (issue 9, item 5): each mistake gives one clear line with its fix, and
/readyz answers 503 while the agent cannot do its job. The real agent, the real engine, real peers.

Attempts are counted from the agent's own debug lines (`--log.level=debug`), never by waiting a
fixed time: "logged once" means once over at least ATTEMPTS failed attempts.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agentproc import Agent, Series, free_port, one, parse
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.peers.forward import ForwardReceiver
from tests.support.toolbox import REPO, sinks_config, until, wait_for

pytestmark = pytest.mark.docker

ATTEMPTS = 4
WAIT = 120  # s: deadlines only a broken agent reaches (a loaded machine is slow, not broken)
PREFIX = f"dwmis{uuid.uuid4().hex[:6]}-"  # this session's containers


def logtext(agent: Agent) -> str:
    return Path(agent.log.name).read_text(errors="replace")


def lines(agent: Agent, needle: str, level: str | None = None) -> list[str]:
    tag = f" level={level} " if level else ""
    return [ln for ln in logtext(agent).splitlines() if needle in ln and tag in ln]


def engine_attempts(agent: Agent) -> int:
    got = re.findall(r"engine: attempt (\d+) failed", logtext(agent))
    return max((int(n) for n in got), default=0)


def serving(agent: Agent) -> Agent:
    wait_for(lambda: agent.get("/healthz")[0] == 200, timeout=WAIT, what=f"agent serving ({agent.log.name})")
    return agent


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a unix socket path must fit in 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix="dwmis-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- the engine: no socket, a socket we may not open ---------------------------------------------------
def test_no_socket_and_no_sidecar_flag_is_an_error_until_the_engine_answers(
    engine: Engine, short_dir: Path
) -> None:
    """No socket where DOCKER_HOST points and no --sidecar (in a container, /.dockerenv: this used
    to switch to sidecar mode silently with /readyz 200): one ERROR line with the fix, 503; once the
    socket appears, the agent connects, says so once, and is ready."""
    sock = short_dir / "docker.sock"
    agent = serving(Agent(engine, env={"DOCKER_HOST": f"unix://{sock}"}, docker_host=False).start(False))
    try:
        wait_for(lambda: engine_attempts(agent) >= ATTEMPTS, timeout=WAIT, what=f"{ATTEMPTS} attempts")
        status, body = agent.get("/readyz")
        assert status == 503 and "cannot connect to the Docker engine" in body
        errors = lines(agent, "cannot connect to the Docker engine", "error")
        assert len(errors) == 1, logtext(agent)
        assert f"unix://{sock}: No such file or directory" in errors[0]
        assert "mount the socket" in errors[0] and "--group-add" in errors[0] and "--sidecar" in errors[0]
        assert lines(agent, "cannot connect to the Docker engine") == errors  # not on every attempt
        assert not lines(agent, "sidecar mode")
        assert one(agent.scrape(), "dockwatch_engine_connected") == 0

        os.symlink(engine.socket_path, sock)  # the socket is mounted now
        wait_for(lambda: agent.get("/readyz")[0] == 200, timeout=WAIT, what="ready once the engine answers")
        back = lines(agent, "connected to unix://")
        assert len(back) == 1 and "failed attempts" in back[0], logtext(agent)
        assert one(agent.scrape(), "dockwatch_engine_connected") == 1
    finally:
        assert agent.stop() == 0, logtext(agent)


def test_socket_not_permitted_names_its_group(engine_session: Engine, short_dir: Path) -> None:
    """A socket this process may not open (root without capabilities, as the deploy files run it,
    and a socket of another user and group): "cannot connect ... permission denied" once, with the
    group to add, and 503."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop capabilities")
    sock = short_dir / "docker.sock"
    gid = 4242
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(sock))
        listener.listen()
        os.chown(sock, 65534, gid)
        os.chmod(sock, 0o660)
        no_caps = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
        agent = serving(
            Agent(
                engine_session, env={"DOCKER_HOST": f"unix://{sock}"}, docker_host=False, prefix=no_caps
            ).start(False)
        )
        try:
            wait_for(lambda: engine_attempts(agent) >= ATTEMPTS, timeout=WAIT, what=f"{ATTEMPTS} attempts")
            errors = lines(agent, "cannot connect to the Docker engine")
            assert len(errors) == 1 and " level=error " in errors[0], logtext(agent)
            assert "Permission denied" in errors[0] and f"--group-add {gid}" in errors[0]
            assert agent.get("/readyz")[0] == 503
        finally:
            assert agent.stop() == 0, logtext(agent)


# --- the host's /proc ------------------------------------------------------------------------------------
def test_procfs_that_is_not_there_is_not_ready(engine: Engine) -> None:
    agent = serving(Agent(engine, "--path.procfs=/nonexistent").start(False))
    try:
        # The engine answered (the inventory is loaded), and still: not ready, because of /proc.
        wait_for(lambda: one(agent.scrape(), "dockwatch_engine_connected") == 1, timeout=WAIT, what="engine")
        status, body = agent.get("/readyz")
        assert status == 503 and "--path.procfs /nonexistent" in body
        said = lines(agent, "--path.procfs /nonexistent")
        assert len(said) == 1 and " level=error " in said[0] and "mount the host's /proc" in said[0]
    finally:
        assert agent.stop() == 0, logtext(agent)


# --- a misspelled environment variable ----------------------------------------------------------------
def test_misspelled_environment_variable_is_refused(engine_session: Engine) -> None:
    agent = Agent(engine_session, env={"DOCKWATCH_LOG_LEVL": "debug"}).start(False)
    assert agent.proc is not None
    assert agent.proc.wait(timeout=WAIT) == 2
    out = logtext(agent).strip().splitlines()
    assert out == [
        "dockwatch: error: environment variable DOCKWATCH_LOG_LEVL: unknown; did you mean "
        "DOCKWATCH_LOG_LEVEL? (dockwatch --help lists each option's variable)"
    ]


# --- a dead sink ----------------------------------------------------------------------------------------
def logger(engine: Engine, n: int) -> str:
    script = f"i=0; while [ $i -lt {n} ]; do echo line-$i; i=$((i+1)); sleep 0.02; done; sleep 600"
    return engine.run(BUSYBOX_IMAGE, "sh", "-c", script, name=f"{PREFIX}{uuid.uuid4().hex[:8]}")


def fluentd_config(tmp: Path, address: str) -> Path:
    sink = {
        "name": "central",
        "driver": "fluentd",
        "options": {"fluentd-address": address, "fluentd-async": "true", "fluentd-request-ack": "true"},
        "include": {"name": f"^{PREFIX}"},
    }
    return sinks_config(tmp, [sink])


async def test_dead_sink_is_logged_once_then_once_when_it_recovers(engine: Engine, tmp_path: Path) -> None:
    """Not a WARNING per retry (54 in 4 minutes): the first failure, then (every 5 minutes, see
    tests/unit/test_log_delivery.py) a summary, and one line when the sink takes batches again."""
    async with ForwardReceiver() as rx:
        await rx.stop()  # dead from the start
        cfg = fluentd_config(tmp_path, rx.address)
        agent = Agent(engine, f"--config={cfg}", f"--path.state={tmp_path / 'state'}")
        await asyncio.to_thread(agent.start)
        try:
            n = 100
            cid = await asyncio.to_thread(logger, engine, n)

            def retries() -> float:
                return one(agent.scrape(), "dockwatch_log_sink_retries_total", sink="central")

            await asyncio.to_thread(wait_for, lambda: retries() >= 6, WAIT, 0.2, "six retries")
            first = lines(agent, "sink central: cannot deliver")
            assert len(first) == 1 and " level=warn " in first[0], logtext(agent)
            assert f":{rx.port}" in first[0] and "retrying" in first[0]
            # sinks: debug only
            assert not [ln for ln in lines(agent, "will retry") if " level=debug " not in ln]
            assert not lines(agent, "delivering again")

            await rx.start()
            await until(
                lambda: (
                    len({e.record.get("log") for e in rx.events if e.record.get("container_id") == cid}) >= n
                ),
                timeout=WAIT,
                what=f"{n} lines once the receiver is back",
            )
            back = await asyncio.to_thread(
                wait_for, lambda: lines(agent, "sink central: delivering again"), WAIT, 0.1, "recovery line"
            )
            assert len(back) == 1 and " level=info " in back[0] and "failed attempts" in back[0]
            assert len(lines(agent, "sink central: cannot deliver")) == 1
        finally:
            assert await asyncio.to_thread(agent.stop) == 0, logtext(agent)


# --- SIGTERM with a dead sink, under `docker stop` ------------------------------------------------------
def test_docker_stop_with_a_dead_sink_lets_the_agent_exit_by_itself(engine: Engine, tmp_path: Path) -> None:
    """The agent in a container (this checkout and Python, through a read-only bind of / and chroot),
    shipping to a sink that is down; `docker stop` with Docker's default timeout (10 s, then
    SIGKILL): the default drain ends first, so the agent exits 0 and is not killed (137)."""
    dead = free_port()  # nothing listens there
    state = tmp_path / "state"
    state.mkdir()
    cfg = fluentd_config(tmp_path, f"tcp://127.0.0.1:{dead}")
    port = free_port()
    run = shlex.join(
        [
            sys.executable,
            "-m",
            "agent",
            "run",
            f"--docker.host={engine.host}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--path.docker-root={engine.root / 'data'}",
            f"--path.state={state}",
            f"--config={cfg}",
        ]
    )
    name = f"dwmisagent-{uuid.uuid4().hex[:8]}"  # not PREFIX: the sink must not follow the agent itself
    agent_cid = engine.run(
        "--network=host",
        "-v=/:/host:ro",
        f"-v={state}:/host{state}",
        "-e",
        f"PYTHONPATH={REPO}",
        "-e",
        "PYTHONDONTWRITEBYTECODE=1",
        BUSYBOX_IMAGE,
        # exec: Python is the container's pid 1, which `docker stop` signals
        *("busybox", "chroot", "/host", "/bin/sh", "-c", f"cd {shlex.quote(str(REPO))} && exec {run}"),
        name=name,
    )

    def scrape() -> dict[str, Series]:
        out = engine.docker("exec", agent_cid, "wget", "-q", "-O", "-", f"http://127.0.0.1:{port}/metrics")
        return parse(out)

    logger(engine, 50)
    wait_for(
        lambda: one(scrape(), "dockwatch_log_sink_retries_total", sink="central") >= 1,
        timeout=WAIT,
        what=f"the sink retrying (agent log: docker logs {name})",
    )
    engine.docker("stop", agent_cid, timeout=60)  # Docker's default: SIGTERM, 10 s, SIGKILL
    state_ = engine.inspect(agent_cid)["State"]
    logs = subprocess.run(
        ["docker", "logs", agent_cid], env=engine.env, capture_output=True, text=True, timeout=60
    ).stderr
    assert state_["ExitCode"] == 0, logs  # 137: SIGKILLed mid-drain
    assert "within 5s" in logs and logs.splitlines()[-1].endswith("stopped")


@pytest.mark.parametrize("fmt", ["json", "logfmt"])
def test_the_agents_own_lines_as_exporters_write_them(engine_session: Engine, fmt: str) -> None:
    """--log.format: every line the running agent writes is one JSON object, or logfmt with
    ts/level/logger/msg (what Loki, Vector or `jq` read without a custom pattern)."""
    import json

    agent = Agent(engine_session, f"--log.format={fmt}").start()
    try:
        assert one(agent.scrape(), "dockwatch_engine_connected") == 1
    finally:
        assert agent.stop() == 0, logtext(agent)
    records = logtext(agent).strip().splitlines()
    assert len(records) >= 3, records
    for line in records:
        if fmt == "json":
            rec = json.loads(line)
            assert set(rec) >= {"ts", "level", "logger", "msg"}, line
        else:
            assert re.match(
                r'^ts=\S+Z level=(debug|info|warn|error) logger=\S+ msg=("(\\.|[^"\\])*"|\S+)', line
            ), line
    msgs = [json.loads(ln)["msg"] for ln in records] if fmt == "json" else records
    assert any("serving /metrics, /healthz and /readyz on http://127.0.0.1:" in m for m in msgs)
