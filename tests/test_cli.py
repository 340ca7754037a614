"""The thin ``wshub`` CLI: flags generated from the config tree, errors -> exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from wshub import cli
from wshub.config import Config, NamespaceConfig
from wshub.configload import config_keys
from wshub.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("WSHUB_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "100")


class FakeGateway:
    """Stands in for wshub.gateway (only its ``run(config) -> int``)."""

    def __init__(self) -> None:
        self.configs: list[Config] = []
        self.exit_code = 0
        self.raises: Exception | None = None

    def run(self, config: Config) -> int:
        self.configs.append(config)
        if self.raises is not None:
            raise self.raises
        return self.exit_code


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    fake = FakeGateway()
    module = types.ModuleType("wshub.gateway")
    module.run = fake.run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wshub.gateway", module)
    return fake


def subprocess_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WSHUB_")}


# -- serve --------------------------------------------------------------------------------


def test_serve_passes_the_config_to_run_and_returns_its_status(gateway: FakeGateway) -> None:
    gateway.exit_code = 7
    assert cli.main(["serve"]) == 7
    assert gateway.configs == [Config()]


def test_serve_precedence_file_env_flags(
    gateway: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "wshub.toml"
    path.write_text(
        "port = 9000\nhttp_port = 9001\ndemo = true\n"
        "[websocket]\nping_interval = 1\npong_timeout = 2\n"
        "[auth]\ntokens = ['file']\n"
        '[[namespaces]]\nname = "chat"\npresence = true\n'
    )
    monkeypatch.setenv("WSHUB_CONFIG", str(path))
    monkeypatch.setenv("WSHUB_HTTP_PORT", "9101")
    monkeypatch.setenv("WSHUB_WEBSOCKET__PONG_TIMEOUT", "3")
    monkeypatch.setenv("WSHUB_AUTH__TOKENS", "env1,env2")
    monkeypatch.setenv("WSHUB_CLIENT__INSECURE", "true")
    argv = [
        "serve",
        "--port",
        "9200",
        "--no-demo",
        "--websocket-pong-timeout",
        "4.5",
        "--auth-tokens",
        "flag1,flag2",
        "--log-level",
        "debug",
    ]
    assert cli.main(argv) == 0
    (config,) = gateway.configs
    assert config.port == 9200  # flag > file
    assert config.http_port == 9101  # env > file
    assert config.demo is False  # --no-demo > file true
    assert config.websocket.ping_interval == 1.0  # file
    assert config.websocket.pong_timeout == 4.5  # flag > env > file
    assert config.auth.tokens == ["flag1", "flag2"]
    assert config.client.insecure is True  # env
    assert config.log.level == "debug"
    assert config.namespaces == [NamespaceConfig(name="chat", presence=True)]


def test_config_flag_beats_wshub_config(
    gateway: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.toml").write_text("port = 1\n")
    (tmp_path / "b.toml").write_text("port = 2\n")
    monkeypatch.setenv("WSHUB_CONFIG", str(tmp_path / "a.toml"))
    assert cli.main(["serve", "--config", str(tmp_path / "b.toml")]) == 0
    assert cli.main(["serve"]) == 0
    assert [c.port for c in gateway.configs] == [2, 1]


def test_bool_flags_both_ways(gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSHUB_LOG__ACCESS", "false")
    assert cli.main(["serve", "--demo", "--log-access"]) == 0
    assert cli.main(["serve", "--no-demo"]) == 0
    first, second = gateway.configs
    assert (first.demo, first.log.access) == (True, True)
    assert (second.demo, second.log.access) == (False, False)


# Every kind of invalid value, through main: (argv, env, file text, key, message fragment).
INVALID: list[tuple[list[str], dict[str, str], str | None, str, str]] = [
    (["--port", "notanumber"], {}, None, "port", "expected an integer from 0 to 65535"),
    (["--http-port", "-1"], {}, None, "http_port", "got '-1'"),
    (
        ["--websocket-ping-interval", "abc"],
        {},
        None,
        "websocket.ping_interval",
        "expected a number >= 0, got 'abc' (from --websocket-ping-interval)",
    ),
    (["--engine", "nope"], {}, None, "engine", "expected one of 'memory', 'redis'"),
    (["--origin-missing", "x"], {}, None, "origin.missing", "expected one of"),
    (["--namespaces", "{"], {}, None, "namespaces", "expected a JSON array of objects"),
    (["--workers-concurrency", "0"], {}, None, "workers.concurrency", "> 0"),
    ([], {"WSHUB_CLIENT__INSECURE": "maybe"}, None, "client.insecure", "expected true or false"),
    ([], {"WSHUB_LIMITS__CONNECT_RATE": "fast"}, None, "limits.connect_rate", "got 'fast'"),
    ([], {"WSHUB_PORTT": "1"}, None, "WSHUB_PORTT", "unknown environment variable"),
    ([], {}, "[websocket]\nping_interval = 'x'\n", "websocket.ping_interval", "got 'x' (in "),
    ([], {}, "[log]\nlevel = 'loud'\n", "log.level", "expected one of"),
    ([], {}, "[client]\nbogus = 1\n", "client.bogus", "unknown key"),
    ([], {}, "[[namespaces]]\nhistory_ttl = -5\n", "namespaces[0].history_ttl", ">= 0"),
    ([], {}, "port = [\n", "config", "is not valid TOML"),
    (["--config", "/nonexistent.toml"], {}, None, "config", "cannot read"),
]


@pytest.mark.parametrize("case", INVALID, ids=[c[3] for c in INVALID])
def test_invalid_configuration_exits_2_naming_the_key(
    gateway: FakeGateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: tuple[list[str], dict[str, str], str | None, str, str],
) -> None:
    argv, env, toml, key, fragment = case
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if toml is not None:
        path = tmp_path / "wshub.toml"
        path.write_text(toml)
        argv = ["--config", str(path), *argv]
    assert cli.main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wshub: invalid configuration: {key}: ")
    assert fragment in err
    assert err.count("\n") == 1
    assert gateway.configs == []  # run is never reached


def test_config_error_from_run_exits_2(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.raises = ConfigError("app", "cannot import 'nope:app'")
    assert cli.main(["serve"]) == 2
    assert (
        capsys.readouterr().err == "wshub: invalid configuration: app: cannot import 'nope:app'\n"
    )


def test_serve_help_lists_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--config FILE" in text
    for item in config_keys():
        assert item.flag in text, item.key
        assert item.key in text, item.key
        assert item.env in text, item.key
        assert " ".join(item.description.split()) in text, item.key
        if item.is_bool:
            assert f"--no-{item.flag[2:]}" in text
    assert "[websocket.ping_interval = 25.0; env WSHUB_WEBSOCKET__PING_INTERVAL]" in text
    assert '[log.level = "info"; env WSHUB_LOG__LEVEL]' in text
    assert "--log-level {debug,info,warning,error}" in text


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert cli.main(["serve", "--no-such-flag"]) == 2
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "--no-such-flag" in err


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "serve" in out
    assert "version" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wshub ")
    assert out.strip() != "wshub"


# -- real processes -----------------------------------------------------------------------


def test_python_dash_m_wshub_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wshub", "--help"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: wshub ")
    assert "serve" in proc.stdout


def console_script() -> str:
    path = Path(sys.executable).parent / ("wshub.exe" if os.name == "nt" else "wshub")
    if not path.exists():
        pytest.skip("the wshub console script is not installed in this environment")
    return str(path)


def test_console_script_rejects_bad_port() -> None:
    proc = subprocess.run(
        [console_script(), "serve", "--port", "notanumber"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        "wshub: invalid configuration: port: expected an integer from 0 to 65535, "
        "got 'notanumber' (from --port)\n"
    )
