"""A thin, read-only Engine API client over the unix socket (or tcp://, with TLS), on http.py.

Only GET requests, all through `_request`. Errors are normalised once there: EngineError
(unreachable, 5xx, bad JSON, broken framing) and NotFound (404); callers never see socket or
HTTP exceptions, raw error bodies or the engine's JSON: they get the typed models of models.py.

tcp:// follows the docker CLI: https with the TLS context given (DOCKER_TLS_VERIFY: ca.pem,
cert.pem, key.pem of DOCKER_CERT_PATH), default port 2376 with TLS and 2375 without.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

from agent.docker.http import ConnectError, Pool, ProtocolError, Response
from agent.docker.models import Container, EngineError, Info, Network, NotFound, Service, Version
from agent.docker.stdcopy import CorruptFrame, FramingError, LogFrame, StdcopyDecoder, since_param

log = logging.getLogger(__name__)

# The newest API version we have read the docs of; older engines are talked to in their own.
MAX_API_VERSION = (1, 45)


@dataclass(frozen=True, slots=True)
class Event:
    """One message of GET /events."""

    type: str  # container, network, image, volume, daemon, service, node, ...
    action: str  # normalised: "health_status: healthy" → "health_status", "exec_start: sh" → "exec_start"
    actor_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    time_nano: int = 0
    raw_action: str = ""

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Event:
        actor = raw.get("Actor") or {}
        action = str(raw.get("Action") or raw.get("status") or "")
        return cls(
            type=str(raw.get("Type") or ""),
            # Docker appends free text after ": " to some actions; keep labels bounded.
            action=action.split(":", 1)[0].strip(),
            actor_id=str(actor.get("ID") or raw.get("id") or ""),
            attributes=dict(actor.get("Attributes") or {}),
            time_nano=int(raw.get("timeNano") or 0),
            raw_action=action,
        )


class JsonLinesDecoder:
    """Pure decoder for the events stream: bytes in, JSON objects out (newline-delimited)."""

    MAX_LINE = 1 << 20  # an event larger than 1 MiB is not an event: drop it rather than grow

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped = 0

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out: list[dict[str, Any]] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.MAX_LINE:
                    self._buf.clear()
                    self.skipped += 1
                return out
            line = bytes(self._buf[:nl]).strip()
            del self._buf[: nl + 1]
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                self.skipped += 1
                continue
            if isinstance(obj, dict):
                out.append(obj)


def tls_context(cert_path: str, verify: bool = True) -> ssl.SSLContext:
    """The client side of the docker CLI's --tlsverify: trust ca.pem, present cert.pem/key.pem if
    both exist, check the engine's name against the host in DOCKER_HOST. ValueError names the file."""
    ca = os.path.join(cert_path, "ca.pem")
    cert, key = os.path.join(cert_path, "cert.pem"), os.path.join(cert_path, "key.pem")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # the CLI's floor (go-connections tlsconfig)
    if verify:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{ca}: not a CA certificate this agent can load ({exc})") from None
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if os.path.exists(cert) and os.path.exists(key):
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{cert} and {key}: not a certificate and its key ({exc})") from None
    return ctx


class DockerClient:
    def __init__(self, host: str, timeout: float = 10.0, tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.timeout = timeout
        self.api_version = ""
        self._tls = tls
        if host.startswith("unix://"):
            # The docker CLI's Host header on the socket; dockerd does not look at it.
            self._pool = Pool(unix_path=host.removeprefix("unix://"), host_header="docker")
            self._base = "http://docker"
        else:
            hostport = host.split("://", 1)[1].split("/", 1)[0]
            if host.startswith("tcp://") and tls is not None:
                scheme, port = "https", 2376
            else:
                scheme, port, self._tls = "http", 2375, None
            if not hostport.rpartition("]")[2].count(":"):  # no port given: the CLI's defaults
                hostport = f"{hostport}:{port}"
            self._base = f"{scheme}://{hostport}"
            name, _, portstr = hostport.rpartition(":")
            self._pool = Pool(
                host=name.removeprefix("[").removesuffix("]"),
                port=int(portstr),
                tls=self._tls,
                host_header=hostport,
            )

    async def __aenter__(self) -> DockerClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._pool.close()

    def _target(self, path: str, params: Mapping[str, str] | None) -> str:
        prefix = f"/v{self.api_version}" if self.api_version else ""
        query = f"?{urlencode(params, quote_via=quote)}" if params else ""
        return f"{prefix}{path}{query}"

    @contextlib.asynccontextmanager
    async def _request(
        self, path: str, params: Mapping[str, str] | None = None, streaming: bool = False
    ) -> AsyncIterator[Response]:
        """The one place a request goes to the engine: a GET of `path` (versioned) with `params`.

        Yields the response once its status is a success. A 404 is NotFound; any other error
        status, a failed connection (`unreachable`), a timeout or a broken transfer, also while the
        caller reads the body, is EngineError. `streaming`: no bound on the whole response (logs,
        events), only on connecting and the response head."""
        failed: EngineError | None = None
        try:
            async with (
                asyncio.timeout(None if streaming else self.timeout),
                self._pool.request(self._target(path, params), self.timeout) as resp,
            ):
                if resp.status >= 400:
                    # Read here, not raised inside: the connection then serves the next request.
                    async with asyncio.timeout(self.timeout):  # a stream's error body is bounded too
                        body = await resp.read()
                    if resp.status == 404:
                        failed = NotFound(_message(body) or f"{path}: not found", 404)
                    else:
                        failed = EngineError(f"GET {path}: {resp.status} {_message(body)}", resp.status)
                else:
                    yield resp
        except ConnectError as exc:
            raise unreachable(self.host, exc.os_error) from exc
        except (ProtocolError, OSError, TimeoutError) as exc:
            timed_out = isinstance(exc, TimeoutError) and not str(exc)
            why = f"no complete answer within {self.timeout:g} s" if timed_out else str(exc)
            raise EngineError(f"GET {path}: {type(exc).__name__}: {why}") from exc
        if failed is not None:
            raise failed

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        async with self._request(path, params) as resp:
            body = await resp.read()
        try:
            return json.loads(body)
        except ValueError as exc:
            raise EngineError(f"GET {path}: response is not JSON") from exc

    async def negotiate(self) -> Version:
        """GET /version (unversioned) and talk the lower of its API version and ours from then on."""
        self.api_version = ""
        ver = Version.from_api(await self.get_json("/version"))
        server = tuple(int(x) for x in ver.api_version.split("."))
        use = min(server, MAX_API_VERSION)
        self.api_version = f"{use[0]}.{use[1]}"
        return ver

    async def info(self) -> Info:
        return Info.from_api(await self.get_json("/info"))

    async def running_container_ids(self) -> list[str]:
        data = await self.get_json("/containers/json")
        return [str(c["Id"]) for c in data]

    async def container_states(self) -> dict[str, str]:
        """Every container, running or not (`docker ps -a`): id → State (running, exited, ...)."""
        data = await self.get_json("/containers/json", {"all": "1"})
        return {str(c["Id"]): str(c.get("State") or "") for c in data}

    async def inspect(self, container_id: str) -> Container:
        return Container.from_inspect(await self.get_json(f"/containers/{quote(container_id)}/json"))

    async def networks(self) -> list[Network]:
        return [Network.from_api(n) for n in await self.get_json("/networks")]

    async def network_verbose(self, network_id: str) -> Network:
        """One network with its swarm services' VIPs and task IPs (any swarm node, not only managers)."""
        raw = await self.get_json(f"/networks/{quote(network_id)}", {"verbose": "true"})
        return Network.from_api(raw)

    async def services(self) -> list[Service]:
        """GET /services: only a swarm manager answers (503 elsewhere, as EngineError)."""
        return [Service.from_api(s) for s in await self.get_json("/services")]

    async def events(
        self, since: str | None = None, opened: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[Event]:
        """Follow GET /events until the stream ends or fails (then EngineError).

        `opened` is awaited once the engine has accepted the subscription, before the first event
        is read: what happens from then on is in the stream (the inventory lists containers there)."""
        params = {"since": since} if since else None
        async with self._request("/events", params, streaming=True) as resp:
            if opened is not None:
                await opened()
            decoder = JsonLinesDecoder()
            async for chunk in resp.iter_any():
                for obj in decoder.feed(chunk):
                    yield Event.from_api(obj)
        raise EngineError("GET /events: the engine closed the stream")

    async def stream(self, path: str, params: Mapping[str, str] | None = None) -> AsyncGenerator[bytes, None]:
        """GET a streaming endpoint and yield its raw chunks until it ends."""
        async with self._request(path, params, streaming=True) as resp:
            async for chunk in resp.iter_any():
                yield chunk

    async def logs(
        self, container_id: str, since_ns: int = 0, follow: bool = True
    ) -> AsyncIterator[list[LogFrame | CorruptFrame]]:
        """GET /containers/{id}/logs (stdout and stderr, timestamped) from `since_ns` (inclusive; 0:
        from the start): the frames each chunk the engine sent completes, in order, until the stream
        ends. A stream that is not stdcopy-framed (or lost sync) is EngineError."""
        path = f"/containers/{quote(container_id)}/logs"
        params = {"follow": "1" if follow else "0", "stdout": "1", "stderr": "1", "timestamps": "1"}
        if since_ns:
            params["since"] = since_param(since_ns)
        decoder = StdcopyDecoder()
        # aclosing: a framing error ends the request at once, not when the generator is collected.
        async with contextlib.aclosing(self.stream(path, params)) as chunks:
            async for chunk in chunks:
                try:
                    frames = decoder.frames(chunk)
                except FramingError as exc:
                    raise EngineError(f"GET {path}: {exc}") from exc
                if frames:
                    yield frames


def unreachable(host: str, err: OSError) -> EngineError:
    """No connection at all: say so, and how to fix it (the agent's one line about it at start)."""
    why = err.strerror or str(err)
    if not host.startswith("unix://"):
        return EngineError(
            f"cannot connect to the Docker engine at {host}: {why} (is the engine listening there?)",
            unreachable=True,
        )
    path = host.removeprefix("unix://")
    if err.errno == errno.ECONNREFUSED:  # the socket file is there, nobody listens: dockerd is down
        return EngineError(
            f"cannot connect to the Docker engine at {host}: {why} (is dockerd running?)", unreachable=True
        )
    try:
        gid = str(os.stat(path).st_gid)
    except OSError:
        gid = "<the socket's group id>"
    return EngineError(
        f"cannot connect to the Docker engine at {host}: {why}. Fix: mount the socket "
        f"(-v /var/run/docker.sock:{path}:ro) or point --docker.host at it; if it is mounted, run as "
        f"root or add its group (--group-add {gid}); --sidecar watches one app's namespace without it",
        unreachable=True,
    )


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")
