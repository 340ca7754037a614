"""``wshub bench`` against a real gateway: each scenario runs about a second and its summary
must report the right counts and no errors. Timings are never asserted."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from support import GatewayFactory, http_url, make_config, open_namespace, ws_url
from wshub import cli
from wshub.bench import ProgressBar, Summary, format_summary, mint_token
from wshub.config import Config
from wshub.example import app as example_app
from wshub.tokens import TokenVerifier

SECRET = "test-bench-secret-0123456789abcdef"


def bench_config(**overrides: Any) -> Config:
    opts: dict[str, Any] = dict(
        token={"hmac_secret": SECRET},
        client={"command_rate": 0.0},
        log={"level": "warning", "access": False},
        namespaces=[open_namespace()],
        api_key="bench-key",
    )
    opts.update(overrides)
    return make_config(**opts)


async def run_bench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """``wshub bench ... --json`` in-process (its own event loop, in a thread, while the
    gateway keeps running in the test's loop); returns the exit status and the summary."""
    capsys.readouterr()
    status = await asyncio.to_thread(cli.main, ["bench", *argv, "--json"])
    captured = capsys.readouterr()
    return status, json.loads(captured.out)


async def test_echo_counts_every_reply(
    gateway_factory: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = await gateway_factory(bench_config(), app=example_app)
    status, s = await run_bench(
        capsys,
        "--url",
        ws_url(gw),
        "--token-secret",
        SECRET,
        "--scenario",
        "echo",
        "--connections",
        "4",
        "--window",
        "4",
        "--duration",
        "1",
    )
    assert status == 0
    assert (s["connections"], s["connected"], s["failed"], s["dropped"]) == (4, 4, 0, 0)
    assert s["sent"] > 0
    assert s["received"] == s["expected"] == s["sent"]
    assert s["errors"] == 0 and s["lost"] == 0
    assert s["latency_ms"]["p50"] is not None


async def test_echo_at_a_fixed_rate_sends_rate_times_duration(
    gateway_factory: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = await gateway_factory(bench_config(client={"allow_anonymous": True}), app=example_app)
    status, s = await run_bench(
        capsys,
        "--url",
        ws_url(gw),
        "--scenario",
        "echo",
        "--connections",
        "3",
        "--rate",
        "50",
        "--duration",
        "1",
    )
    assert status == 0
    assert s["sent"] == 50
    assert s["received"] == 50 and s["errors"] == 0 and s["lost"] == 0


async def test_fanout_from_a_client_delivers_every_publication_to_every_subscriber(
    gateway_factory: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = await gateway_factory(bench_config())
    status, s = await run_bench(
        capsys,
        "--url",
        ws_url(gw),
        "--token-secret",
        SECRET,
        "--scenario",
        "fanout",
        "--connections",
        "20",
        "--rate",
        "20",
        "--duration",
        "1",
        "--channel",
        "room",
        "--size",
        "16",
    )
    assert status == 0
    assert s["connected"] == 20 and s["failed"] == 0
    assert s["sent"] == 20
    assert s["expected"] == 20 * 20
    assert s["received"] == s["expected"]
    assert s["errors"] == 0 and s["lost"] == 0


async def test_fanout_through_the_server_api(
    gateway_factory: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = await gateway_factory(bench_config())
    status, s = await run_bench(
        capsys,
        "--url",
        ws_url(gw),
        "--token-secret",
        SECRET,
        "--scenario",
        "fanout",
        "--connections",
        "10",
        "--rate",
        "30",
        "--duration",
        "1",
        "--api-url",
        http_url(gw, "/api"),
        "--api-key",
        "bench-key",
    )
    assert status == 0
    assert s["sent"] == 30
    assert s["received"] == s["expected"] == 30 * 10
    assert s["errors"] == 0 and s["lost"] == 0


async def test_fanout_api_errors_are_counted(
    gateway_factory: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = await gateway_factory(bench_config())
    status, s = await run_bench(
        capsys,
        "--url",
        ws_url(gw),
        "--token-secret",
        SECRET,
        "--scenario",
        "fanout",
        "--connections",
        "2",
        "--rate",
        "5",
        "--duration",
        "1",
        "--api-url",
        http_url(gw, "/api"),
        "--api-key",
        "wrong",
    )
    assert status == 1
    assert s["sent"] == 5 and s["errors"] == 5
    assert s["expected"] == 0 and s["received"] == 0
    assert any("HTTP 401" in e for e in s["error_samples"])


async def test_connect_opens_every_connection(
    gateway_factory: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = await gateway_factory(bench_config())
    status, s = await run_bench(
        capsys,
        "--url",
        ws_url(gw),
        "--token-secret",
        SECRET,
        "--scenario",
        "connect",
        "--connections",
        "50",
        "--concurrency",
        "10",
    )
    assert status == 0
    assert (s["connected"], s["failed"], s["errors"], s["lost"]) == (50, 0, 0, 0)
    assert s["received"] == s["expected"] == 50
    assert s["unit"] == "connects/s"


async def test_idle_holds_every_connection(
    gateway_factory: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = await gateway_factory(bench_config())
    task = asyncio.ensure_future(
        run_bench(
            capsys,
            "--url",
            ws_url(gw),
            "--token",
            mint_token(SECRET, "idler", 60),
            "--scenario",
            "idle",
            "--connections",
            "30",
            "--duration",
            "1.5",
        )
    )
    most = 0
    while not task.done():  # the gateway really holds them at some point
        most = max(most, len(gw.server.connections))
        await asyncio.sleep(0.02)
    status, s = await task
    assert most == 30
    assert status == 0
    assert (s["connected"], s["dropped"], s["errors"], s["lost"]) == (30, 0, 0, 0)
    assert s["received"] == s["expected"] == 30


async def test_refused_connections_are_errors_and_exit_1(
    gateway_factory: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = await gateway_factory(bench_config())  # no token, anonymous not allowed
    status, s = await run_bench(
        capsys,
        "--url",
        ws_url(gw),
        "--scenario",
        "connect",
        "--connections",
        "3",
    )
    assert status == 1
    assert s["connected"] == 0 and s["failed"] == 3 and s["errors"] == 3
    assert s["error_samples"]


async def test_rate_limited_rpcs_are_counted_as_errors(
    gateway_factory: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = bench_config(
        client={"command_rate": 1.0, "command_burst": 5, "command_rate_disconnect_after": 1000}
    )
    gw = await gateway_factory(cfg, app=example_app)
    status, s = await run_bench(
        capsys,
        "--url",
        ws_url(gw),
        "--token-secret",
        SECRET,
        "--scenario",
        "echo",
        "--connections",
        "1",
        "--rate",
        "20",
        "--duration",
        "1",
    )
    assert status == 1
    assert s["sent"] == 20
    assert s["received"] == 20 and s["lost"] == 0
    assert 0 < s["errors"] < 20


async def test_table_output_and_progress(
    gateway_factory: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = await gateway_factory(bench_config())
    status = await asyncio.to_thread(
        cli.main,
        [
            "bench",
            "--url",
            ws_url(gw),
            "--token-secret",
            SECRET,
            "--scenario",
            "fanout",
            "--connections",
            "5",
            "--rate",
            "10",
            "--duration",
            "1",
        ],
    )
    out, err = capsys.readouterr()
    assert status == 0
    assert "received     50 deliveries of 50 expected" in out
    assert "errors       0" in out and "lost         0" in out
    assert "latency ms   p50 " in out
    assert "done       [##############################] 100%" in err


def test_progress_bar_redraws_in_place_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = ProgressBar(stream)
    bar.update("running", 0.5, "sent 1")
    bar.update("running", 1.0, "sent 2")
    bar.finish()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "[###############---------------]  50%  sent 1" in text
    quiet = Tty()
    ProgressBar(quiet, enabled=False).update("running", 0.5, "x")
    assert quiet.getvalue() == ""


def test_minted_tokens_verify_with_the_secret() -> None:
    claims = TokenVerifier(make_config(token={"hmac_secret": SECRET}).token).verify(
        mint_token(SECRET, "alice", 60)
    )
    assert claims["sub"] == "alice"


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--url", "http://x/", "--scenario", "echo"]) == 2
    assert "--url must be ws://" in capsys.readouterr().err
    assert cli.main(["bench", "--url", "ws://x/", "--api-url", "http://x/api"]) == 2
    assert cli.main(["bench", "--url", "ws://x/", "--header", "nocolon"]) == 2
    assert cli.main(["bench", "--scenario", "echo"]) == 2  # --url is required


def test_format_summary_names_every_figure() -> None:
    s = Summary(
        "echo",
        "ws://h/c",
        2,
        connected=2,
        sent=10,
        received=10,
        expected=10,
        throughput=5.0,
        unit="replies/s",
        latency_ms={"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0},
    )
    text = format_summary(s)
    for piece in (
        "connections  2 of 2",
        "sent         10 RPCs",
        "throughput   5.0 replies/s",
        "p50 1.000   p90 2.000   p99 3.000   max 4.000",
        "errors       0",
    ):
        assert piece in text
