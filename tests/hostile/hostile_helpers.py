"""Helpers of the hostile suite: a ``wshub serve`` subprocess with /proc probes, a minimal
asyncio WebSocket client that speaks hand-built frames (hub and raw routes), plain upgrade
requests, and Prometheus text parsing.

Import as ``from hostile_helpers import ...`` (this folder is on ``sys.path`` under pytest).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rawclient import frame as build_frame
from rawclient import upgrade_bytes

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WSHUB = ROOT / ".venv" / "bin" / "wshub"
HUB = "/connection/websocket"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def raise_nofile(want: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE to ``want`` (bounded by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- TOML ------------------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def to_toml(config: dict[str, Any]) -> str:
    """The small TOML subset a gateway config needs: scalars, [section], [[namespaces]]."""
    top: list[str] = []
    tables: list[str] = []
    for key, value in config.items():
        if isinstance(value, dict):
            tables.append(f"\n[{key}]")
            tables += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                tables.append(f"\n[[{key}]]")
                tables += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
        else:
            top.append(f"{key} = {_toml_value(value)}")
    return "\n".join(top + tables) + "\n"


OPEN_NAMESPACE = {
    "name": "",
    "allow_subscribe_for_client": True,
    "allow_subscribe_for_anonymous": True,
    "allow_publish_for_client": True,
    "allow_publish_for_anonymous": True,
    "allow_presence_for_client": True,
    "allow_history_for_client": True,
}


# -- the subprocess ------------------------------------------------------------------------------


@dataclass
class GatewayProcess:
    """A running ``wshub serve``; its stdout/stderr go to files in ``workdir``."""

    proc: subprocess.Popen[bytes]
    workdir: Path
    ws_port: int
    http_port: int
    drain_time: float
    exit_code: int | None = None
    exit_seconds: float | None = None
    _stderr_offset: int = field(default=0, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = HUB) -> str:
        return f"ws://127.0.0.1:{self.ws_port}{path}"

    # /proc probes
    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def rss_kib(self) -> int:
        return self._status("VmRSS")

    def hwm_kib(self) -> int:
        """Peak RSS since the last :meth:`reset_hwm` (or the start)."""
        return self._status("VmHWM")

    def reset_hwm(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def alive(self) -> bool:
        return self.proc.poll() is None

    # output
    def stdout(self) -> str:
        return (self.workdir / "stdout.log").read_text(errors="replace")

    def stderr(self) -> str:
        return (self.workdir / "stderr.log").read_text(errors="replace")

    def log_lines(self) -> list[str]:
        return [line for line in self.stderr().splitlines() if line.strip()]

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_lines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": line, "unparsed": True})
        return out

    def mark_log(self) -> None:
        """Start :meth:`new_log_lines` from here."""
        self._stderr_offset = len(self.log_lines())

    def new_log_lines(self) -> list[str]:
        return self.log_lines()[self._stderr_offset :]

    # HTTP side
    def http_get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return str(r.read().decode())

    def metrics(self) -> str:
        return self.http_get("/metrics")

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics(), name, **labels)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the process and wait for it; returns the exit status."""
        if self.exit_code is not None:
            return self.exit_code
        t0 = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.exit_code = self.proc.wait(5)
            raise
        finally:
            self.exit_seconds = time.monotonic() - t0
        return self.exit_code


SpawnGateway = Callable[..., GatewayProcess]
"""The ``spawn_gateway`` fixture: ``spawn(config, *, nofile=None, env=None)``."""


def start_gateway(
    workdir: Path,
    config: dict[str, Any],
    *,
    nofile: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> GatewayProcess:
    """Start ``wshub serve --config <workdir>/gateway.toml`` and wait for its banner.

    ``config`` is the TOML tree; ``port`` and ``http_port`` default to free ports, ``app``
    to ``hostile_app:app``. ``nofile`` lowers the child's RLIMIT_NOFILE.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = {"port": free_port(), "http_port": free_port(), "app": "hostile_app:app", **config}
    path = workdir / "gateway.toml"
    path.write_text(to_toml(cfg))
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("WSHUB_")}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), child_env.get("PYTHONPATH", "")) if p
    )
    child_env.update(env or {})

    def preexec() -> None:
        if nofile is not None:
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    out = open(workdir / "stdout.log", "wb")  # noqa: SIM115 - handed to the child
    err = open(workdir / "stderr.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(WSHUB), "serve", "--config", str(path)],
        stdout=out,
        stderr=err,
        stdin=subprocess.DEVNULL,
        env=child_env,
        preexec_fn=preexec,
        cwd=str(workdir),
    )
    out.close()
    err.close()
    ws = cfg.get("websocket", {})
    gw = GatewayProcess(proc, workdir, 0, int(cfg["http_port"]), float(ws.get("drain_time", 5.0)))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"WebSocket on ws://[^:]+:(\d+)/", gw.stdout())
        if m and (not cfg["http_port"] or "HTTP on" in gw.stdout()):
            gw.ws_port = int(m.group(1))
            return gw
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with contextlib.suppress(Exception):
        proc.kill()
    raise RuntimeError(f"gateway did not start: {gw.stdout()}\n{gw.stderr()[-3000:]}")


# -- Prometheus text -------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


# -- plain upgrade requests ------------------------------------------------------------------------


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    hdrs: dict[str, str] = {}
    for line in lines:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs


async def upgrade_request(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> HttpResponse:
    """Send one upgrade request and read the whole response (the body of a refusal, until
    the server closes); a 101 is returned at once with an empty body (connection closed)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(upgrade_bytes(port, path, headers))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status, hdrs = _parse_head(head[:-4])
        body = b""
        if status != 101:
            n = int(hdrs.get("content-length", "-1"))
            body = await asyncio.wait_for(
                reader.readexactly(n) if n >= 0 else reader.read(), timeout
            )
        return HttpResponse(status, hdrs, body)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


# -- a minimal WebSocket client --------------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class Refused(Exception):
    def __init__(self, response: HttpResponse) -> None:
        super().__init__(f"upgrade refused: {response.status}")
        self.response = response


class Closed(Exception):
    """The server closed: ``code`` from its close frame, None when no close frame came."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"closed: {code} {reason}")
        self.code = code
        self.reason = reason


class MiniWS:
    """An asyncio WebSocket client with hand-built frames: light enough for thousands of
    connections in one process; it answers ping frames and the hub's ``{}`` pings unless
    told not to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.answer_pings = True
        self._next_id = 1
        self._reader_task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        port: int,
        path: str = HUB,
        headers: dict[str, str] | None = None,
        *,
        local_ip: str | None = None,
        timeout: float = 5.0,
        limit: int = 2**20,
    ) -> MiniWS:
        local = (local_ip, 0) if local_ip else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=local, limit=limit), timeout
        )
        try:
            writer.write(upgrade_bytes(port, path, headers))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            status, hdrs = _parse_head(head[:-4])
            if status != 101:
                n = int(hdrs.get("content-length", "0"))
                body = await asyncio.wait_for(reader.readexactly(n), timeout) if n else b""
                raise Refused(HttpResponse(status, hdrs, body))
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def send_text(self, data: bytes | str) -> None:
        self.writer.write(build_frame(OP_TEXT, data.encode() if isinstance(data, str) else data))

    def send_json(self, obj: Any) -> None:
        self.send_text(json.dumps(obj, separators=(",", ":")))

    def command(self, **cmd: Any) -> int:
        """Send one hub command with a fresh id; returns the id."""
        cid = self._next_id
        self._next_id += 1
        self.send_json({"id": cid, **cmd})
        return cid

    async def recv_frame(self) -> tuple[int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def recv(self, timeout: float = 5.0) -> bytes:
        """The next data message (pings answered, pongs skipped); raises Closed."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    op, payload = await self.recv_frame()
                except (asyncio.IncompleteReadError, ConnectionError):
                    raise Closed(None) from None
                if op == OP_CLOSE:
                    code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                    with contextlib.suppress(Exception):
                        self.send_raw(build_frame(OP_CLOSE, payload[:2]))
                    raise Closed(code, payload[2:].decode(errors="replace"))
                if op == OP_PING:
                    if self.answer_pings:
                        self.send_raw(build_frame(OP_PONG, payload))
                    continue
                if op == OP_PONG:
                    continue
                if payload == b"{}":
                    if self.answer_pings:
                        self.send_text(b"{}")
                    continue
                return payload

    async def recv_json(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next hub message (a frame with several replies yields the first one only
        when it is the only line; use :meth:`recv_lines` for batches)."""
        data = await self.recv(timeout)
        return json.loads(data.split(b"\n", 1)[0])  # type: ignore[no-any-return]

    async def reply_to(self, cid: int, timeout: float = 5.0) -> dict[str, Any]:
        """Read messages until the reply with id ``cid`` (pushes before it are dropped)."""
        async with asyncio.timeout(timeout):
            while True:
                for line in (await self.recv(timeout)).split(b"\n"):
                    msg = json.loads(line)
                    if msg.get("id") == cid:
                        return msg  # type: ignore[no-any-return]

    async def hub_connect(self, token: str = "", timeout: float = 5.0) -> dict[str, Any]:
        cid = self.command(connect={"token": token} if token else {})
        return await self.reply_to(cid, timeout)

    async def call(self, timeout: float = 5.0, **cmd: Any) -> dict[str, Any]:
        return await self.reply_to(self.command(**cmd), timeout)

    async def closed_with(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; the close code (None: no close frame)."""
        try:
            while True:
                await self.recv(timeout)
        except Closed as c:
            return c.code

    def read_in_background(self) -> asyncio.Queue[bytes | Closed]:
        """Keep reading (and answering pings) in a task; messages, then the Closed, go to
        the returned queue."""
        inbox: asyncio.Queue[bytes | Closed] = asyncio.Queue()

        async def run() -> None:
            while True:
                try:
                    inbox.put_nowait(await self.recv(3600))
                except Closed as c:
                    inbox.put_nowait(c)
                    return

        self._reader_task = asyncio.create_task(run())
        return inbox

    def abort(self) -> None:
        """Drop the TCP connection (RST, no close frame)."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()
        self._stop_reader()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send_raw(build_frame(OP_CLOSE, struct.pack(">H", 1000)))
        self.writer.close()
        self._stop_reader()

    def _stop_reader(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()


def percentile(values: Iterable[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return 0.0
    k = min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))
    return data[k]


async def wait_for(cond: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll ``cond`` until true or ``timeout``; returns its last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if cond():
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(step)
