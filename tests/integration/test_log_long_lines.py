"""Rejoining at the 1 MiB limit, against the real engine: lines of 1 MiB - 1, 1 MiB and 1 MiB + 1.

Docker's copier cuts each into 16 KiB chunks: 63 full ones and 16383 bytes ending at the newline;
64 full ones and an empty last chunk (the newline alone); 64 full ones and 1 byte. With rejoining on
(the default) the agent ships the first two as one record each and the third as a 1 MiB piece and a
1-byte piece with one partial id, through both sources (Docker's json-file files, and the Engine API
for the `local` driver), to the Forward receiver (tests/support/peers/forward.py) with the fluentd sink.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.agentproc import Agent
from tests.support.engine import BUSYBOX_IMAGE, Engine
from tests.support.peers.forward import ForwardReceiver
from tests.support.toolbox import sinks_config, until

pytestmark = pytest.mark.docker

MIB = 1 << 20
LINES = ((MIB - 1, "a"), (MIB, "b"), (MIB + 1, "c"))
PRINT = " ".join(f"head -c {n} /dev/zero | tr '\\0' {ch}; echo;" for n, ch in LINES)
SCRIPT = f"echo start; {PRINT} echo end"


def summary(rec: dict[str, Any]) -> tuple[object, ...]:
    log = rec["log"]
    text = log if isinstance(log, str) else log.decode()
    what = text if len(text) < 20 else f"{len(text)}x{text[0]}"
    assert len(set(text)) == 1 or len(text) < 20, "a record mixes two lines"
    return what, rec.get("partial_ordinal"), rec.get("partial_last")


@pytest.mark.parametrize("driver", ["json-file", "local"])
async def test_lines_at_the_one_mib_limit(engine: Engine, tmp_path: Path, driver: str) -> None:
    prefix = f"dwmib{uuid.uuid4().hex[:6]}-"
    async with ForwardReceiver() as rx:
        sink = {
            "name": "central",
            "driver": "fluentd",
            "options": {"fluentd-address": rx.address, "fluentd-async": "true"},
            "include": {"name": f"^{prefix}"},
        }
        cfg = sinks_config(tmp_path, [sink])
        agent = Agent(engine, f"--config={cfg}", f"--path.state={tmp_path / 'state'}")
        await asyncio.to_thread(agent.start)
        try:
            cid = await asyncio.to_thread(
                engine.run, f"--log-driver={driver}", BUSYBOX_IMAGE, "sh", "-c", SCRIPT, name=f"{prefix}1"
            )

            def mine() -> list[dict[str, Any]]:
                return [e.record for e in rx.events if e.record.get("container_id") == cid]

            await until(lambda: any(r["log"] in ("end", b"end") for r in mine()), 60, what="the last line")
            got = mine()
            assert [summary(r) for r in got] == [
                ("start", None, None),
                (f"{MIB - 1}xa", None, None),  # 64 chunks: one record
                (f"{MIB}xb", None, None),  # 65 chunks, the last one empty: one record
                (f"{MIB}xc", "1", "false"),  # over the limit: a 1 MiB piece ...
                ("c", "2", "true"),  # ... and the 1 byte left, with the same partial id
                ("end", None, None),
            ]
            assert got[3]["partial_id"] == got[4]["partial_id"] and len(got[3]["partial_id"]) == 64
            assert not any("partial_message" in r for r in got[:3])
        finally:
            assert await asyncio.to_thread(agent.stop) == 0, agent.logtext()
