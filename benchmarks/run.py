#!/usr/bin/env python3
"""The wshub benchmark suite: one command, writes ``benchmarks/RESULTS.md`` and its charts.

    .venv/bin/python benchmarks/run.py               # full run: 3 interleaved rounds (5 for the
                                                     # yardstick), 5 s each
    .venv/bin/python benchmarks/run.py --smoke       # the whole pipeline, short (labelled smoke)
    .venv/bin/python benchmarks/run.py --only storm,idle --rounds 1

What it runs (servers pinned to CPU 0, load generators to CPU 1, as ../shared/bench/compare.sh):

* ``yardstick`` - the shared side-by-side benchmark (``benchmarks/compare.sh gin product``:
  echo, fanout40k, fanout80k, idle 5000) with ``--yardstick-rounds`` rounds, interleaved.
* ``idle``    - 10k idle connections held: RSS per connection (gin and wshub).
* ``storm``   - 10k connects as fast as they come (loadgen ``-mode conns``; gin and wshub).
* ``fanout``  - 10k subscribers over 100 channels at a fixed offered rate (gin and wshub).
* ``rpc``     - echo RPC answered inline vs. through the worker pool (a handler that awaits),
  gin's echo as the reference.
* ``recovery`` - time from a resubscribe to all 1000 missed publications received (wshub).
* ``middleware`` - connects/s through the pre-upgrade chain: none, each middleware alone,
  the whole chain (gin with its token check as the reference).
* ``sweep``   - fan-out latency (p50/p99) against offered deliveries/s, for both, and the
  highest rate whose p99 stays under 250 ms.

Each scenario of each round starts its servers afresh. The load tools are the shared
``loadgen`` and this folder's ``loadgen2`` (Go, built like the shared ones). Numbers are
only reported, never asserted. Raw results go to ``benchmarks/results.json``; logs and
generated configurations to ``/tmp/wshub-bench/run-<time>/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("BENCH_DIR", REPO.parent / "shared" / "bench"))
BIN = Path(os.environ.get("BENCH_BIN", "/tmp/wshub-bench/bin"))

SECRET = "wshub-bench-secret-for-hs256-tokens-0123456789"
STATIC_TOKEN = "bench-static-token"
ORIGIN = "https://bench.example"
WS_PORT = 8000
GIN_PORT = 8090
P99_BUDGET_MS = 250.0

SCENARIOS = ("yardstick", "idle", "storm", "fanout", "rpc", "recovery", "middleware", "sweep")
MIDDLEWARES = ("none", "token", "jwt", "origin", "ratelimit", "caps", "accesslog", "all")
SWEEP_RATES = (
    "10000,20000,30000,40000,50000,60000,80000,100000,120000,150000,200000,220000,250000,300000"
)


# -------------------------------------------------------------------------- small helpers


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def toml_dumps(data: dict[str, Any]) -> str:
    """Enough TOML for gateway configs: scalars, lists of scalars, tables, arrays of tables."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r} as TOML")

    def is_table_list(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    out: list[str] = []
    for k, v in data.items():
        if not isinstance(v, dict) and not is_table_list(v):
            out.append(f"{k} = {scalar(v)}")
    for k, v in data.items():
        if isinstance(v, dict):
            out.append(f"\n[{k}]")
            out.extend(f"{kk} = {scalar(vv)}" for kk, vv in v.items())
    for k, v in data.items():
        if is_table_list(v):
            for item in v:
                out.append(f"\n[[{k}]]")
                out.extend(f"{kk} = {scalar(vv)}" for kk, vv in item.items())
    return "\n".join(out) + "\n"


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def mint(sub: str = "bench") -> str:
    import jwt  # noqa: PLC0415 - the suite runs under the project's venv

    return str(jwt.encode({"sub": sub, "exp": int(time.time()) + 7 * 86400}, SECRET, "HS256"))


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


def med(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


# -------------------------------------------------------------------------- the run


@dataclass
class Suite:
    args: argparse.Namespace
    run_dir: Path
    pin: bool
    commands: dict[str, str] = field(default_factory=dict)  # scenario -> a command line
    results: dict[str, Any] = field(default_factory=dict)
    last_stderr: str = ""
    configs: dict[str, str] = field(default_factory=dict)  # label -> generated TOML

    # -- processes --------------------------------------------------------------------

    def cpu(self, n: int) -> list[str]:
        return ["taskset", "-c", str(n)] if self.pin else []

    @contextlib.contextmanager
    def server(
        self, target: str, cfg: dict[str, Any] | None = None, label: str = ""
    ) -> Iterator[int]:
        """Start ``gin`` or ``wshub`` (with ``cfg``, remembered as ``label``) on CPU 0;
        yields its pid."""
        tag = f"{target}-{len(list(self.run_dir.glob('*.log')))}"
        logf = self.run_dir / f"{tag}.log"
        env = dict(os.environ)
        if target == "gin":
            argv = [str(BIN / "gin_ref"), "-addr", f"127.0.0.1:{GIN_PORT}"]
            env["GOMAXPROCS"] = "1"
            port = GIN_PORT
        else:
            path = self.run_dir / f"{tag}.toml"
            text = toml_dumps(cfg or {})
            path.write_text(text)
            self.configs.setdefault(label or "wshub", text)
            argv = [self.args.wshub, "serve", "--config", str(path)]
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
            port = int((cfg or {}).get("port", WS_PORT))
        self.commands.setdefault(f"server:{target}", shlex.join([*self.cpu(0), *argv]))
        with logf.open("wb") as out:
            proc = subprocess.Popen(
                [*self.cpu(0), *argv], stdout=out, stderr=subprocess.STDOUT, env=env
            )
            try:
                wait_port(port, 30, proc)
                time.sleep(self.args.warm)
                yield proc.pid
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                time.sleep(0.5)

    def load_argv(self, tool: str, target: str, args: Sequence[str], query: str = "") -> list[str]:
        if target == "gin":
            url, token = f"ws://127.0.0.1:{GIN_PORT}/ws?token=bench", ""
        else:
            url, token = f"ws://127.0.0.1:{WS_PORT}/connection/websocket", self.token
            if query:
                url += "?" + query
        return [*self.cpu(1), str(BIN / tool), "-url", url, "-token", token, *args]

    def load(self, name: str, tool: str, target: str, args: Sequence[str], query: str = "") -> str:
        argv = self.load_argv(tool, target, args, query)
        self.commands.setdefault(f"{name} [{target}]", shlex.join(argv))
        res = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        self.last_stderr = res.stderr
        if res.stderr.strip():
            log(f"  {tool}: {res.stderr.strip().splitlines()[-1]}")
        return res.stdout

    @property
    def token(self) -> str:
        if "_token" not in self.results:
            self.results["_token"] = mint()
        return str(self.results["_token"])

    def record(self, scenario: str, row: str, round_no: int, metrics: dict[str, Any]) -> None:
        rows = self.results.setdefault(scenario, {}).setdefault(row, [])
        rows.append({"round": round_no, **metrics})
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items() if not k.startswith("_"))
        log(f"  {scenario}/{row} round {round_no}: {shown}")

    # -- configurations ---------------------------------------------------------------

    def product_config(self, **extra: Any) -> dict[str, Any]:
        """The yardstick's gateway.toml (full middleware, JWT connect tokens), our apps."""
        with (HERE / "gateway.toml").open("rb") as f:
            cfg = tomllib.load(f)
        cfg.update(app="bench_app:app", port=WS_PORT, http_port=0)
        cfg["token"] = {"hmac_secret": SECRET}
        return merge(cfg, extra)

    def bare_config(self, **extra: Any) -> dict[str, Any]:
        """No pre-upgrade middleware at all; anonymous connect commands."""
        cfg: dict[str, Any] = {
            "app": "bench_app:app",
            "port": WS_PORT,
            "http_port": 0,
            "token": {"hmac_secret": SECRET},  # for the jwt rows; connects are anonymous
            "client": {"command_rate": 0.0, "allow_anonymous": True},
            "limits": {"connect_rate": 0.0, "max_connections": 0, "max_connections_per_ip": 0},
            "log": {"level": "warning", "access": False},
            "namespaces": [{"name": "", "allow_subscribe_for_client": True}],
        }
        return merge(cfg, extra)

    # -- scenarios --------------------------------------------------------------------

    def yardstick(self) -> None:
        a = self.args
        rounds = a.yardstick_rounds
        env = dict(os.environ, ROUNDS=str(rounds), D=f"{a.duration}s", BENCH_BIN=str(BIN))
        env["IDLE"] = str(a.yardstick_idle)
        argv = [str(HERE / "compare.sh"), "gin", "product"]
        self.commands["yardstick"] = (
            f"ROUNDS={rounds} D={a.duration}s IDLE={a.yardstick_idle} {shlex.join(argv)}"
        )
        log(f"yardstick: {self.commands['yardstick']}")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            parsed = parse_yardstick(line)
            if parsed is None:
                log(f"  yardstick: {line.rstrip()}")
                continue
            target, round_no, scenario, metrics = parsed
            self.record(
                f"yardstick:{scenario}",
                "wshub" if target == "product" else target,
                round_no,
                metrics,
            )
        proc.wait()

    def idle_storm_fanout(self, round_no: int, wanted: set[str]) -> None:
        a = self.args
        for target in ("gin", "wshub"):
            cfg = self.product_config()
            with self.server(target, cfg) as pid:
                if "idle" in wanted:
                    self.idle(target, pid, round_no)
                if "storm" in wanted:
                    out = self.load(
                        "storm",
                        "loadgen",
                        target,
                        ["-mode", "conns", "-conns", str(a.storm), "-dialc", str(a.storm_dialc)],
                    )
                    m = re.search(r"opened=(\d+) secs=([\d.]+) rate=(\d+)", out)
                    failed = re.search(r"dial failures: (\d+)", self.last_stderr)
                    if m:
                        self.record(
                            "storm",
                            target,
                            round_no,
                            {
                                "opened": int(m[1]),
                                "failed": int(failed[1]) if failed else 0,
                                "secs": float(m[2]),
                                "connects_per_s": float(m[3]),
                            },
                        )
                    time.sleep(2)  # the closes
                if "fanout" in wanted:
                    shape = (a.fanout_subs, a.fanout_channels)
                    steps = self.fanout_steps(
                        "fanout", target, shape, str(a.fanout_rate), a.duration, pid=pid
                    )
                    if steps:
                        self.record("fanout", target, round_no, pick(steps[0], FANOUT_KEYS))

    def idle(self, target: str, pid: int, round_no: int) -> None:
        a = self.args
        base = rss_kb(pid)
        argv = self.load_argv(
            "loadgen",
            target,
            ["-mode", "conns", "-conns", str(a.idle), "-hold", f"{a.idle_hold}s"],
        )
        self.commands.setdefault(f"idle [{target}]", shlex.join(argv))
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once every connection is open
        time.sleep(1.5)
        full = rss_kb(pid)
        proc.communicate(timeout=a.idle_hold + 30)
        m = re.search(r"opened=(\d+)", line)
        opened = int(m[1]) if m else 0
        self.record(
            "idle",
            target,
            round_no,
            {
                "opened": opened,
                "rss_base_mb": base / 1024,
                "rss_full_mb": full / 1024,
                "kb_per_conn": (full - base) / opened if opened else None,
            },
        )

    def fanout_steps(
        self, name: str, target: str, shape: tuple[int, int], rates: str, secs: float, *, pid: int
    ) -> list[dict[str, Any]]:
        """loadgen2 fan-out: one result per offered rate (a sweep stops at saturation),
        with the CPU share the server (``pid``) and the load generator used in each step."""
        subs, channels = shape
        args = f"-mode fanout -conns {subs} -channels {channels} -rates {rates} -d {secs}s"
        args += f" -dialc 128 -server-pid {pid}"
        out = self.load(name, "loadgen2", target, args.split())
        steps = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        return [s for s in steps if s.get("event") == "step"]

    def rpc(self, round_no: int) -> None:
        a = self.args
        args = ["-mode", "echo", "-conns", "50", "-window", "8", "-d", f"{a.duration}s"]
        for row, target, app in (
            ("gin echo", "gin", ""),
            ("wshub inline", "wshub", "bench_app:app"),
            ("wshub worker pool", "wshub", "bench_app:async_app"),
        ):
            with self.server(target, self.product_config(app=app), f"rpc: {row}"):
                out = self.load(f"rpc ({row})", "loadgen", target, args)
            m = parse_kv(out.strip().splitlines()[-1] if out.strip() else "")
            if "rate" in m:
                self.record(
                    "rpc",
                    row,
                    round_no,
                    {
                        "rpc_per_s": m["rate"],
                        "p50_ms": _ms(m.get("p50_us")),
                        "p99_ms": _ms(m.get("p99_us")),
                    },
                )

    def recovery(self, round_no: int) -> None:
        a = self.args
        ns = {
            "name": "rec",
            "allow_subscribe_for_client": True,
            "allow_publish_for_client": True,
            "history_size": 2 * a.recovery_missed,
            "history_ttl": 600.0,
        }
        cfg = self.product_config()
        cfg["namespaces"] = [*cfg["namespaces"], ns]
        with self.server("wshub", cfg, "recovery"):
            out = self.load(
                "recovery",
                "loadgen2",
                "wshub",
                [
                    "-mode",
                    "recovery",
                    "-prefix",
                    "rec:",
                    "-n",
                    str(a.recovery_missed),
                    "-iters",
                    str(a.recovery_iters),
                ],
            )
        for line in out.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                self.record(
                    "recovery",
                    "wshub",
                    round_no,
                    {
                        "missed": r["missed"],
                        "iterations": r["iterations"],
                        "p50_ms": _ms(r["p50_us"]),
                        "p90_ms": _ms(r["p90_us"]),
                        "max_ms": _ms(r["max_us"]),
                        "incomplete": r["incomplete"],
                        "not_recovered": r["not_recovered"],
                    },
                )

    def middleware(self, round_no: int) -> None:
        a = self.args
        jwt_token = mint()
        variants: dict[str, tuple[dict[str, Any], str, bool]] = {
            "none": ({}, "", False),
            "token": ({"auth": {"tokens": [STATIC_TOKEN]}}, f"token={STATIC_TOKEN}", False),
            "jwt": ({"auth": {"jwt": True}}, f"token={jwt_token}", False),
            "origin": ({"origin": {"allowed": [ORIGIN]}}, "", True),
            "ratelimit": (
                {"limits": {"connect_rate": 1e9, "connect_burst": 1_000_000_000}},
                "",
                False,
            ),
            "caps": (
                {"limits": {"max_connections": 1_000_000, "max_connections_per_ip": 1_000_000}},
                "",
                False,
            ),
            "accesslog": ({"log": {"access": True, "level": "info"}}, "", False),
        }
        every: dict[str, Any] = {}
        for extra, _, _ in variants.values():
            every = merge(every, extra)
        every["auth"]["tokens"] = [STATIC_TOKEN]  # token and JWT: either passes (any_of)
        variants["all"] = (every, f"token={jwt_token}", True)
        churn = ["-mode", "churn", "-d", f"{a.duration}s", "-dialc", "64"]
        rows: list[tuple[str, str, dict[str, Any] | None, str, bool]] = [
            ("gin (token check)", "gin", None, "", False),
        ]
        rows += [
            (name, "wshub", cfg, q, o)
            for name, (cfg, q, o) in variants.items()
            if name in a.middlewares
        ]
        for row, target, extra, query, origin in rows:
            cfg = self.bare_config(**(extra or {}))
            args = [*churn, "-origin", ORIGIN] if origin else churn
            with self.server(target, cfg, f"middleware: {row}"):
                argv = self.load_argv("loadgen2", target, args, query)
                argv[argv.index("-token") + 1] = ""  # anonymous connect: only the chain varies
                self.commands.setdefault(f"middleware [{row}]", shlex.join(argv))
                res = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
                out = res.stdout
            for line in out.splitlines():
                if line.startswith("{"):
                    r = json.loads(line)
                    self.record(
                        "middleware",
                        row,
                        round_no,
                        {
                            "connects_per_s": r["connects_per_s"],
                            "failed": r["failed"],
                            "p50_ms": _ms(r["p50_us"]),
                            "p99_ms": _ms(r["p99_us"]),
                        },
                    )

    def sweep(self, round_no: int) -> None:
        """One round of every sweep shape, gin and wshub in turn. Each round's steps are kept
        under ``sweep_rounds``; ``sweep`` holds their per-step medians."""
        a = self.args
        for shape in a.sweep_shapes:
            subs, channels = (int(x) for x in shape.split("x"))
            for target in ("gin", "wshub"):
                with self.server(target, self.product_config()) as pid:
                    steps = self.fanout_steps(
                        "sweep", target, (subs, channels), a.sweep_rates, a.sweep_duration, pid=pid
                    )
                per_round = (
                    self.results.setdefault("sweep_rounds", {})
                    .setdefault(shape, {})
                    .setdefault(target, [])
                )
                per_round.append(steps)
                self.results.setdefault("sweep", {}).setdefault(shape, {})[target] = (
                    merge_sweep_rounds(per_round)
                )
                for s in steps:
                    log(
                        f"  sweep {shape} {target} round {round_no}: "
                        f"offered={s['offered_deliveries_per_s']} "
                        f"delivered/s={s['delivered_per_s']:.0f} p50={_ms(s['p50_us'])} ms "
                        f"p99={_ms(s['p99_us'])} ms lost={s['lost']} "
                        f"cpu server={s.get('server_cpu', 0):.2f} load={s.get('load_cpu', 0):.2f}"
                    )

    # -- driver -----------------------------------------------------------------------

    def attempt(self, name: str, fn: Callable[[], None]) -> None:
        """Run one scenario; a failure is logged and recorded, and the suite goes on."""
        try:
            fn()
        except (RuntimeError, OSError, subprocess.SubprocessError, KeyError, ValueError) as exc:
            log(f"  {name} FAILED: {exc!r}")
            self.results.setdefault("_failures", []).append(f"{name}: {exc!r}")

    def run(self) -> None:
        a = self.args
        wanted = set(a.only)
        started = time.time()
        self.results["_meta"] = {
            "started": started,
            "command": shlex.join(sys.argv),
            "smoke": a.smoke,
            "machine": machine_info(a),
        }
        if "yardstick" in wanted:
            self.attempt("yardstick", self.yardstick)
        for n in range(1, a.rounds + 1):
            log(f"round {n}/{a.rounds}")
            if wanted & {"idle", "storm", "fanout"}:
                self.attempt("idle/storm/fanout", lambda n=n: self.idle_storm_fanout(n, wanted))
            if "rpc" in wanted:
                self.attempt("rpc", lambda n=n: self.rpc(n))
            if "recovery" in wanted:
                self.attempt("recovery", lambda n=n: self.recovery(n))
            if "middleware" in wanted:
                self.attempt("middleware", lambda n=n: self.middleware(n))
        if "sweep" in wanted:
            for n in range(1, a.sweep_rounds + 1):
                log(f"sweep round {n}/{a.sweep_rounds}")
                self.attempt("sweep", lambda n=n: self.sweep(n))
        self.results["_meta"]["secs"] = time.time() - started


def parse_kv(line: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for tok in line.split():
        k, sep, v = tok.partition("=")
        if sep:
            with contextlib.suppress(ValueError):
                out[k] = float(v.removesuffix("/s"))
    return out


def parse_yardstick(line: str) -> tuple[str, int, str, dict[str, Any]] | None:
    m = re.match(r"(\w+) round=(\d+) (\w+) (.*)", line.strip())
    if not m:
        return None
    target, round_no, scenario, rest = m[1], int(m[2]), m[3], m[4]
    kv = parse_kv(rest)
    if scenario == "idle":
        metrics = {
            "opened": kv.get("opened"),
            "accepts_per_s": kv.get("rate"),
            "rss_full_mb": _mb(kv.get("rss_full_kb")),
            "kb_per_conn": kv.get("per_conn_kb"),
        }
    elif "rate" in kv:
        metrics = {
            "rate_per_s": kv["rate"],
            "p50_ms": _ms(kv.get("p50_us")),
            "p99_ms": _ms(kv.get("p99_us")),
            "max_ms": _ms(kv.get("max_us")),
        }
        if "lost" in kv:
            metrics["lost"] = kv["lost"]
    else:
        metrics = {"_raw": rest}
    return target, round_no, scenario, metrics


def rss_kb(pid: int) -> int:
    """RSS of pid and its children (taskset execs, so pid is the server itself)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


FANOUT_KEYS = (
    "subscribers",
    "delivered_per_s",
    "p50_us",
    "p99_us",
    "max_us",
    "lost",
    "dropped_connections",
    "server_cpu",
    "load_cpu",
)


def pick(step: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in keys:
        v = step.get(k)
        if k.endswith("_us"):
            out[k.replace("_us", "_ms")] = _ms(v)
        else:
            out[k] = v
    return out


def _ms(us: Any) -> float | None:
    return None if us is None or us < 0 else round(float(us) / 1000, 3)


def _mb(kb: Any) -> float | None:
    return None if kb is None else round(float(kb) / 1024, 1)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


# -------------------------------------------------------------------------- the report


@dataclass
class Table:
    title: str
    note: str
    rows: dict[str, list[dict[str, Any]]]
    reference: str | None  # the row ratios are taken against
    metric: str | None  # the figure they compare


def report_tables(a: argparse.Namespace) -> list[tuple[str, str, str, str | None, str | None]]:
    """(results key, title, note, reference row, ratio metric) of each table, in order."""
    yard = "`../shared/bench/compare.sh gin product`, run as is."
    return [
        (
            "yardstick:echo",
            "Yardstick: echo RPC (50 conns x 8 in flight, 64 B)",
            yard,
            "gin",
            "rate_per_s",
        ),
        (
            "yardstick:fanout40k",
            "Yardstick: fan-out 40k deliveries/s (1000 subscribers)",
            yard,
            "gin",
            "rate_per_s",
        ),
        (
            "yardstick:fanout80k",
            "Yardstick: fan-out 80k deliveries/s (1000 subscribers)",
            yard,
            "gin",
            "rate_per_s",
        ),
        (
            "yardstick:idle",
            f"Yardstick: idle {a.yardstick_idle} connections",
            yard,
            "gin",
            "kb_per_conn",
        ),
        (
            "storm",
            f"Connection storm: {a.storm} connects",
            f"As fast as they come ({a.storm_dialc} dials in flight; upgrade + connect command "
            "each; loadgen `-mode conns`).",
            "gin",
            "connects_per_s",
        ),
        (
            "idle",
            f"Idle: {a.idle} connections held",
            "RSS of the server before and with the connections open (ping/pong only).",
            "gin",
            "kb_per_conn",
        ),
        (
            "fanout",
            f"Fan-out: {a.fanout_subs} subscribers over {a.fanout_channels} channels",
            f"{a.fanout_rate:,} deliveries/s offered (publications round-robin over the channels "
            "from 4 publisher connections); latency from publish to delivery.",
            "gin",
            "delivered_per_s",
        ),
        (
            "rpc",
            "RPC: inline vs. worker pool",
            "The same echo RPC (50 conns x 8 in flight). *inline*: the handler returns without "
            "suspending and is answered with no task; *worker pool*: the handler awaits "
            "`asyncio.sleep(0)`, so every call becomes a task on the bounded pool.",
            "gin echo",
            "rpc_per_s",
        ),
        (
            "recovery",
            f"Recovery of {a.recovery_missed} missed publications",
            "A subscriber leaves, the publications go out (client publisher), it resubscribes "
            "with `recover`: time from the subscribe command to all of them received (they come "
            f"in the reply). {a.recovery_iters} iterations per round; no Go reference (gin has "
            "no history).",
            None,
            None,
        ),
        (
            "middleware",
            "Pre-upgrade middleware chain: connects per second",
            "Connect (upgrade + anonymous connect command) and close, 64 at a time, per "
            "configuration: no middleware, each one alone (static token in the query, JWT in "
            "the query, Origin check with the header sent, rate limit with a huge limit, "
            "connection caps, access log at level info, written to a file), and the whole "
            "chain. Ratio to *none*.",
            "none",
            "connects_per_s",
        ),
    ]


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in rounds[0] if k != "round" and not k.startswith("_")]
    return {k: med([r.get(k) for r in rounds if isinstance(r.get(k), int | float)]) for k in keys}


def render_table(t: Table) -> list[str]:
    if not t.rows:
        return []
    meds = {row: medians(rs) for row, rs in t.rows.items()}
    keys: list[str] = []
    for m in meds.values():
        keys += [k for k in m if k not in keys]
    ref = meds.get(t.reference) if t.reference else None
    head = ["", "rounds", *keys]
    if ref is not None:
        head.append(f"ratio to {t.reference}")
    lines = [
        f"### {t.title}",
        "",
        t.note,
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row, m in meds.items():
        cells = [f"**{row}**", str(len(t.rows[row])), *(_fmt(m.get(k)) for k in keys)]
        if ref is not None and t.metric:
            r, v = ref.get(t.metric), m.get(t.metric)
            cells.append(f"{v / r:.2f} ({t.metric})" if r and v is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def merge_sweep_rounds(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per offered rate, the median of each figure over the rounds. A round whose sweep
    stopped before a rate counts as failing it: its p99 there is taken as the load
    generator's stop threshold, its delivery rate as 0 and its losses as 1, so a step
    passes only if most rounds passed it."""
    offered = sorted({s["offered_deliveries_per_s"] for st in rounds for s in st})
    stop_us = 2_000_000
    merged: list[dict[str, Any]] = []
    for o in offered:
        found = [next((s for s in st if s["offered_deliveries_per_s"] == o), None) for st in rounds]
        steps = [s for s in found if s is not None]
        missing = len(found) - len(steps)
        row: dict[str, Any] = {
            "offered_deliveries_per_s": o,
            "rounds": len(steps),
            "of": len(found),
        }
        for key in ("delivered_per_s", "p50_us", "p90_us", "p99_us", "max_us"):
            fill = 0.0 if key == "delivered_per_s" else float(stop_us)
            row[key] = med([s.get(key) for s in steps] + [fill] * missing)
        for key in ("server_cpu", "load_cpu"):
            row[key] = med([s.get(key) for s in steps])
        for key in ("lost", "dropped_connections"):
            row[key] = med([s.get(key) or 0 for s in steps] + [1] * missing)
        merged.append(row)
    return merged


def max_rate_under(steps: list[dict[str, Any]], budget_ms: float) -> tuple[int | None, bool]:
    """Highest offered step with p99 < budget, nothing lost and >= 95 % delivered; whether
    the sweep ended with a failing step (else the real limit is above the last step)."""
    best: int | None = None
    failed = False
    for s in steps:
        p99 = _ms(s.get("p99_us"))
        offered = s["offered_deliveries_per_s"]
        ok = (
            p99 is not None
            and p99 < budget_ms
            and s.get("lost", 0) == 0
            and s.get("delivered_per_s", 0) >= 0.95 * offered
        )
        if ok and not failed:
            best = offered
        elif not ok:
            failed = True
    return best, failed


def machine_info(args: argparse.Namespace) -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    versions = []
    for pkg in ("wshub", "picows", "uvloop", "msgspec", "orjson", "PyJWT", "matplotlib"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{pkg} {metadata.version(pkg)}")
    go = subprocess.run(["go", "version"], capture_output=True, text=True, check=False).stdout
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- machine: {os.cpu_count()} CPUs (`nproc` {_nproc()}), {cpu}, {mem} RAM, "
        f"{platform.system()} {platform.release()}",
        f"- load average at the start: {args.loadavg}",
        f"- Python {platform.python_version()} ({sys.executable}); {', '.join(versions)}",
        f"- Go: {go.strip() or 'not found'}; wshub commit {commit or 'unknown'}",
        f"- file descriptors (ulimit -n): {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}",
        f"- pinning: servers on CPU 0, load generators on CPU 1 "
        f"({'taskset' if args.pinned else 'NOT pinned: fewer than 2 CPUs'})",
    ]


def _nproc() -> str:
    return subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()


def _readable(cmd: str) -> str:
    """A command line as the report shows it: tokens, pids and local paths abstracted."""
    cmd = re.sub(r"ey[\w-]+\.[\w-]+\.[\w-]+", "<jwt>", cmd)
    cmd = re.sub(r"-server-pid \d+", "-server-pid <server pid>", cmd)
    cmd = re.sub(r"/tmp/wshub-bench/run-[\w-]+/", "<run folder>/", cmd)
    return cmd.replace(f"{REPO}/", "")


def write_report(suite: Suite, out_dir: Path) -> Path:
    a = suite.args
    res = suite.results
    charts = make_charts(suite, out_dir)
    lines = ["# wshub benchmark results", ""]
    if a.smoke:
        lines += [
            "> **SMOKE RUN** - short durations, one round, on a shared development machine. "
            "The figures only show that the pipeline works; they are not representative. "
            f"The full run is `{FULL_COMMAND}` (see below).",
            "",
        ]
    lines += [
        "Written by `benchmarks/run.py`; raw figures in `benchmarks/results.json`. "
        "Medians over rounds; the ratio column divides wshub's figure by the reference's "
        "(throughput: higher is better; memory: lower is better).",
        "",
        "## Setup",
        "",
        *res["_meta"]["machine"],
        f"- suite: `{res['_meta']['command']}` "
        f"({a.rounds} round(s); the yardstick "
        f"{getattr(a, 'yardstick_rounds', None) or a.rounds}, the sweeps "
        f"{getattr(a, 'sweep_rounds', None) or 1}; {a.duration} s per measurement, "
        f"{res['_meta'].get('secs', 0) / 60:.1f} min in all)",
        "",
        "### Commands",
        "",
        "Every server starts afresh per scenario and round; `<jwt>` is an HS256 connection "
        "token, configs are generated into the run folder from `benchmarks/gateway.toml` "
        "(the yardstick's configuration) or, for the middleware rows, from a bare one.",
        "",
        "```",
    ]
    for name, cmd in suite.commands.items():
        lines.append(f"# {name}\n{_readable(cmd)}")
    lines += ["```", ""]
    if suite.configs:
        lines += ["<details><summary>Generated wshub configurations</summary>", ""]
        seen: set[str] = set()
        for label, text in suite.configs.items():
            if text not in seen:
                seen.add(text)
                lines += [f"`{label}`:", "", "```toml", text.rstrip(), "```", ""]
        lines += ["</details>", ""]
    lines += ["## Results", ""]
    lines += targets_section(suite)

    for key, title, note, ref, metric in report_tables(a):
        lines += render_table(Table(title, note, dict(res.get(key, {})), ref, metric))
    sw = res.get("sweep", {})
    if sw:
        lines += ["### Fan-out latency against offered load", ""]
        for shape, per_target in sw.items():
            subs, chans = shape.split("x")
            lines += [
                f"{subs} subscribers over {chans} channels, {a.sweep_duration} s per step, "
                f"medians of {getattr(a, 'sweep_rounds', 1)} round(s) per step "
                "(a round stops after a step with p99 > 2 s or > 1 % lost). *delivered/s* counts "
                "over the time the deliveries took (past the publishing window when the server "
                "falls behind); *server CPU* and *load CPU*: cores used during the step "
                "(1.00 = the whole pinned core). A load CPU near 1 means the load generator, "
                "not the server, was the limit.",
                "",
                "| offered/s | target | delivered/s | p50 ms | p99 ms | lost | server CPU "
                "| load CPU |",
                "|---|---|---|---|---|---|---|---|",
            ]
            offered = sorted(
                {s["offered_deliveries_per_s"] for st in per_target.values() for s in st}
            )
            for o in offered:
                for t, st in per_target.items():
                    s = next((x for x in st if x["offered_deliveries_per_s"] == o), None)
                    if s is None:
                        continue
                    reached = ""
                    if s.get("rounds", 1) < s.get("of", 1):
                        reached = f" (reached in {s['rounds']} of {s['of']} rounds)"
                    cells = [
                        f"{o:,}",
                        t + reached,
                        _fmt(s["delivered_per_s"]),
                        _fmt(_ms(s["p50_us"])),
                        _fmt(_ms(s["p99_us"])),
                        _fmt(s["lost"]),
                        _fmt(s.get("server_cpu")),
                        _fmt(s.get("load_cpu")),
                    ]
                    lines.append("| " + " | ".join(cells) + " |")
            lines += [
                "",
                f"**Highest fan-out rate whose p99 stays under {P99_BUDGET_MS:.0f} ms** ({shape}; "
                "the highest step, below the first failing one, with p99 under the budget, "
                "nothing lost and at least 95 % of the offered rate delivered):",
                "",
            ]
            for t, st in per_target.items():
                best, failed = max_rate_under(st, P99_BUDGET_MS)
                over = next(
                    (x for x in st if best is None or x["offered_deliveries_per_s"] > best), None
                )
                bound = (
                    " - the load generator was near its core's limit in the next step, so "
                    "this is a lower bound"
                    if over is not None and (over.get("load_cpu") or 0) > 0.9
                    else ""
                )
                if best is None:
                    first = _fmt(st[0]["offered_deliveries_per_s"]) if st else "-"
                    lines.append(f"- {t}: below the first step ({first}/s){bound}")
                else:
                    lines.append(
                        f"- **{t}: {best:,} deliveries/s**"
                        + ("" if failed else " (every step passed: the limit is higher)")
                        + bound
                    )
            lines.append("")
    analysis = HERE / "ANALYSIS.md"
    if analysis.exists():
        lines += [analysis.read_text().rstrip(), ""]
    if charts:
        lines += ["## Charts", ""] + [f"![{c.stem}]({c.name})" for c in charts] + [""]
    lines += [
        "## Running it",
        "",
        f"Full suite (about {FULL_MINUTES} minutes on the 2-core machine): `{FULL_COMMAND}`. "
        "Quick check: `.venv/bin/python benchmarks/run.py --smoke`. "
        "`--only SCENARIO,...`, `--rounds N`, `--duration S`: see `--help`. "
        "Needs the Debian Go packages (`../shared/bench/build.sh` installs them), "
        "`taskset`, and the `bench` extra (`pip install -e .[bench]`) for the charts.",
        "",
    ]
    path = out_dir / "RESULTS.md"
    path.write_text("\n".join(lines))
    return path


def targets_section(suite: Suite) -> list[str]:
    """Issue 5's targets, each against the Go reference measured in the same run (medians)."""
    res = suite.results

    def median_of(key: str, row: str, metric: str) -> float | None:
        return med([r.get(metric) for r in res.get(key, {}).get(row, [])])

    def ratio(key: str, metric: str) -> tuple[float | None, float | None, float | None]:
        g, w = median_of(key, "gin", metric), median_of(key, "wshub", metric)
        return g, w, (w / g if g and w is not None else None)

    rows: list[tuple[str, str, str, str, bool | None]] = []
    g, w, r = ratio("yardstick:echo", "rate_per_s")
    rows.append(
        ("echo RPC throughput >= 1.0x", f"{_fmt(g)}/s", f"{_fmt(w)}/s", _fmt(r), _ok(r, 1.0))
    )
    g, w, r = ratio("yardstick:fanout80k", "p99_ms")
    lost = sum(x.get("lost") or 0 for x in res.get("yardstick:fanout80k", {}).get("wshub", []))
    rows.append(
        (
            "fan-out 80k/s to 1000: p99 <= 1.0x, none lost",
            f"{_fmt(g)} ms",
            f"{_fmt(w)} ms, {lost:.0f} lost",
            _fmt(r),
            None if r is None else (r <= 1.0 and lost == 0),
        )
    )
    for shape, per_target in res.get("sweep", {}).items():
        gb, g_failed = max_rate_under(per_target.get("gin", []), P99_BUDGET_MS)
        wb, w_failed = max_rate_under(per_target.get("wshub", []), P99_BUDGET_MS)
        met: bool | None
        if wb is None:
            met = False if gb is not None else None
        elif gb is None:
            met = True
        else:
            # equal is enough: both at the top step means both passed every step
            met = wb >= gb
        rows.append(
            (
                f"highest rate with p99 < {P99_BUDGET_MS:.0f} ms >= Go's ({shape})",
                _limit(gb, g_failed),
                _limit(wb, w_failed),
                _fmt(wb / gb) if gb and wb else "-",
                met,
            )
        )
    g, w, r = ratio("yardstick:idle", "kb_per_conn")
    rows.append(
        (
            "<= 12 KB RSS per idle connection (5000 held)",
            f"{_fmt(g)} KB",
            f"{_fmt(w)} KB",
            _fmt(r),
            None if w is None else w <= 12,
        )
    )
    for key, label in (
        ("yardstick:idle", "accept rate >= 0.75x (yardstick, 5000 connects)"),
        ("storm", f"accept rate >= 0.75x (storm, {suite.args.storm} connects)"),
    ):
        metric = "accepts_per_s" if key == "yardstick:idle" else "connects_per_s"
        g, w, r = ratio(key, metric)
        if r is not None:
            rows.append((label, f"{_fmt(g)}/s", f"{_fmt(w)}/s", _fmt(r), _ok(r, 0.75)))
    out = [
        "### Against the targets",
        "",
        "Issue 5's targets; each figure is the median over this run's rounds, the Go "
        "reference measured in the same run.",
        "",
        "| target | Go reference | wshub | ratio | met |",
        "|---|---|---|---|---|",
    ]
    for label, gv, wv, rv, ok in rows:
        verdict = "-" if ok is None else ("yes" if ok else "**no**")
        out.append(f"| {label} | {gv} | {wv} | {rv} | {verdict} |")
    return [*out, ""]


def _limit(best: int | None, failed: bool) -> str:
    if best is None:
        return "below the first step"
    return f"{best:,}/s" + ("" if failed else " (every step passed)")


def _ok(ratio: float | None, at_least: float) -> bool | None:
    return None if ratio is None else ratio >= at_least


def make_charts(suite: Suite, out_dir: Path) -> list[Path]:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        log("matplotlib missing (pip install -e .[bench]): no charts")
        return []
    res = suite.results
    made: list[Path] = []
    colors = {"gin": "tab:blue", "wshub": "tab:orange"}
    sw = res.get("sweep", {})
    if sw:
        fig, axes = plt.subplots(len(sw), 2, figsize=(12, 4.5 * len(sw)), squeeze=False)
        for (shape, per_target), (ax_lat, ax_thr) in zip(sw.items(), axes, strict=True):
            for t, all_steps in per_target.items():
                # steps most rounds never reached (the sweep had stopped) are not drawn
                steps = [s for s in all_steps if s.get("rounds", 1) * 2 > s.get("of", 1)]
                xs = [s["offered_deliveries_per_s"] / 1000 for s in steps]
                c = colors.get(t)
                ax_lat.plot(xs, [_ms(s["p50_us"]) for s in steps], "o--", color=c, label=f"{t} p50")
                ax_lat.plot(xs, [_ms(s["p99_us"]) for s in steps], "s-", color=c, label=f"{t} p99")
                ax_thr.plot(
                    xs, [s["delivered_per_s"] / 1000 for s in steps], "o-", color=c, label=t
                )
            ax_lat.axhline(P99_BUDGET_MS, color="gray", ls=":", label="250 ms")
            ax_lat.set_yscale("log")
            ax_lat.set_xlabel("offered deliveries/s (k)")
            ax_lat.set_ylabel("latency (ms, log)")
            ax_lat.set_title(f"fan-out latency, {shape.replace('x', ' subs x ')} channels")
            ax_lat.legend(fontsize=8)
            ax_lat.grid(alpha=0.3)
            top = max(s["offered_deliveries_per_s"] for st in per_target.values() for s in st)
            ax_thr.plot([0, top / 1000], [0, top / 1000], ":", color="gray", label="offered")
            ax_thr.set_xlabel("offered deliveries/s (k)")
            ax_thr.set_ylabel("delivered/s (k)")
            ax_thr.set_title("fan-out throughput")
            ax_thr.legend(fontsize=8)
            ax_thr.grid(alpha=0.3)
        fig.tight_layout()
        made.append(out_dir / "fanout_sweep.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)
    mw = res.get("middleware", {})
    if mw:
        names = list(mw)
        vals = [med([r["connects_per_s"] for r in mw[n]]) or 0 for n in names]
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
        ax.barh(
            names, vals, color=["tab:blue" if n.startswith("gin") else "tab:orange" for n in names]
        )
        ax.invert_yaxis()
        ax.set_xlabel("connects/s (upgrade + connect command + close)")
        ax.set_title("pre-upgrade middleware cost")
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        made.append(out_dir / "middleware.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)

    # wshub relative to gin: throughput (higher is better), latency and memory (lower is)
    def ratio(key: str, metric: str, ref: str = "gin", row: str = "wshub") -> float | None:
        rows = res.get(key, {})
        if ref not in rows or row not in rows:
            return None
        g = med([r.get(metric) for r in rows[ref]])
        w = med([r.get(metric) for r in rows[row]])
        return w / g if g and w is not None else None

    groups = {
        "throughput: wshub / gin (higher is better)": [
            ("echo rpc/s", ratio("yardstick:echo", "rate_per_s")),
            ("rpc/s, worker pool", ratio("rpc", "rpc_per_s", "gin echo", "wshub worker pool")),
            ("storm connects/s", ratio("storm", "connects_per_s")),
            (
                "connect+close/s, no mw",
                ratio("middleware", "connects_per_s", "gin (token check)", "none"),
            ),
            (
                "connect+close/s, all mw",
                ratio("middleware", "connects_per_s", "gin (token check)", "all"),
            ),
        ],
        "cost: wshub / gin (lower is better)": [
            ("echo p99", ratio("yardstick:echo", "p99_ms")),
            ("fanout40k p99", ratio("yardstick:fanout40k", "p99_ms")),
            ("fanout80k p99", ratio("yardstick:fanout80k", "p99_ms")),
            ("fanout 10k/100ch p99", ratio("fanout", "p99_ms")),
            ("KB per idle conn (10k)", ratio("idle", "kb_per_conn")),
            ("server CPU, fanout 10k/100ch", ratio("fanout", "server_cpu")),
        ],
    }
    panels = {t: [(k, v) for k, v in g if v is not None] for t, g in groups.items()}
    panels = {t: g for t, g in panels.items() if g}
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 3.8), squeeze=False)
        for ax, (title, pairs) in zip(axes[0], panels.items(), strict=True):
            ax.barh([p[0] for p in pairs], [p[1] for p in pairs], color="tab:orange")
            ax.axvline(1.0, color="tab:blue", ls="--", label="gin = 1")
            ax.invert_yaxis()
            ax.set_title(title, fontsize=10)
            for i, (_, v) in enumerate(pairs):
                ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
            ax.legend(fontsize=8)
            ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        made.append(out_dir / "ratio_to_gin.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)
    return made


# -------------------------------------------------------------------------- entry point

FULL_COMMAND = ".venv/bin/python benchmarks/run.py"
FULL_MINUTES = 27


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Run the wshub benchmark suite and write benchmarks/RESULTS.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=int(os.environ.get("ROUNDS", "3")),
        help="interleaved rounds (env ROUNDS)",
    )
    p.add_argument(
        "--duration", type=float, default=5.0, help="seconds per measurement (echo, fan-out, churn)"
    )
    p.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios of {', '.join(SCENARIOS)}",
    )
    p.add_argument("--middlewares", default=",".join(MIDDLEWARES), help="middleware rows")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="1 round, short steps, coarse sweep; labelled a smoke run",
    )
    p.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md, charts, JSON go")
    p.add_argument(
        "--report",
        type=Path,
        metavar="RESULTS_JSON",
        help="only re-render RESULTS.md and the charts from a saved results.json",
    )
    p.add_argument(
        "--wshub", default=str(REPO / ".venv" / "bin" / "wshub"), help="the wshub executable"
    )
    p.add_argument("--warm", type=float, default=1.0, help="seconds after a server listens")
    p.add_argument("--storm", type=int, default=10000, help="connects in the storm")
    p.add_argument("--storm-dialc", type=int, default=256, help="dials in flight in the storm")
    p.add_argument("--idle", type=int, default=10000, help="idle connections")
    p.add_argument("--idle-hold", type=float, default=4.0, help="seconds the idle set is held")
    p.add_argument("--yardstick-idle", type=int, default=5000, help="IDLE for compare.sh")
    p.add_argument("--fanout-subs", type=int, default=10000)
    p.add_argument("--fanout-channels", type=int, default=100)
    p.add_argument("--fanout-rate", type=int, default=20000, help="offered deliveries/s")
    p.add_argument("--recovery-missed", type=int, default=1000)
    p.add_argument("--recovery-iters", type=int, default=20)
    p.add_argument(
        "--sweep-shapes",
        default="1000x1,10000x100",
        help="SUBSCRIBERSxCHANNELS, comma-separated",
    )
    p.add_argument("--sweep-rates", default=SWEEP_RATES, help="offered deliveries/s per step")
    p.add_argument("--sweep-duration", type=float, default=5.0, help="seconds per sweep step")
    p.add_argument(
        "--sweep-rounds", type=int, default=None, help="sweep rounds (default: --rounds)"
    )
    p.add_argument(
        "--yardstick-rounds",
        type=int,
        default=None,
        help="compare.sh rounds (default: --rounds + 2; its p99 figures are the noisiest)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.report is not None:  # re-render a saved run
        results = json.loads(args.report.read_text())
        saved = argparse.Namespace(**results["_args"])
        suite = Suite(saved, args.report.parent, saved.pinned, results["_commands"], results)
        suite.configs = results["_configs"]
        log(f"wrote {write_report(suite, args.out)}")
        return 0
    if args.smoke:
        args.rounds = 1
        args.duration = 2.0
        args.sweep_duration = 2.0
        args.sweep_rates = "10000,20000,40000,60000,80000,120000,160000"
        args.recovery_iters = 5
        args.idle_hold = 2.0
        args.yardstick_rounds = args.yardstick_rounds or 1
    if args.sweep_rounds is None:
        args.sweep_rounds = args.rounds
    if args.yardstick_rounds is None:
        args.yardstick_rounds = args.rounds + 2
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.middlewares = [s.strip() for s in args.middlewares.split(",") if s.strip()]
    args.sweep_shapes = [s.strip() for s in args.sweep_shapes.split(",") if s.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        print(f"unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    # every connection is a descriptor on both sides: raise the limit (children inherit it)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (65536, hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
            break
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile < max(args.idle, args.storm, args.fanout_subs) + 1000:
        log(f"warning: ulimit -n is {nofile}; the 10k scenarios may run out of descriptors")
    args.pinned = (os.cpu_count() or 1) >= 2 and bool(shutil.which("taskset"))
    args.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for script in (SHARED / "build.sh", HERE / "loadgen2" / "build.sh"):
        subprocess.run(
            [str(script)],
            check=True,
            env=dict(os.environ, BENCH_BIN=str(BIN)),
            stdout=subprocess.DEVNULL,
        )
    run_dir = Path("/tmp/wshub-bench") / time.strftime("run-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    log(f"logs and configs: {run_dir}")
    suite = Suite(args, run_dir, args.pinned)
    try:
        suite.run()
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    suite.results.pop("_token", None)
    suite.results["_commands"] = suite.commands
    suite.results["_configs"] = suite.configs
    suite.results["_args"] = {k: v for k, v in vars(args).items() if k != "out"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(suite.results, indent=1, default=str))
    path = write_report(suite, args.out)
    log(f"wrote {path} ({suite.results['_meta'].get('secs', 0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
