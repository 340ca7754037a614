"""wshub.configload: precedence, parsing and validation of the configuration sources."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from wshub.config import Config, NamespaceConfig, WebSocketConfig
from wshub.configload import config_keys, config_sections, key_to_env, key_to_flag, load_config
from wshub.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "wshub.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def toml_for(key: str, value: str) -> str:
    """A TOML document setting one flat key (``value`` is TOML syntax)."""
    section, _, field = key.rpartition(".")
    return f"[{section}]\n{field} = {value}\n" if section else f"{key} = {value}\n"


def get(config: Config, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def error(**kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)
    return info.value


# -- the key table ------------------------------------------------------------------------


def test_config_keys_cover_every_leaf_with_its_default_and_description() -> None:
    keys = config_keys()
    by_key = {k.key: k for k in keys}
    assert len(by_key) == len(keys)
    defaults = Config()
    for section in ("websocket", "workers", "auth", "token", "origin", "limits", "client", "log"):
        struct = getattr(defaults, section)
        for field in msgspec.structs.fields(struct):
            assert f"{section}.{field.name}" in by_key
    for name in ("host", "port", "engine", "demo", "app", "namespaces"):
        assert name in by_key
    assert "websocket" not in by_key  # sections are not leaves
    for item in keys:
        assert item.description, item.key
        assert item.default == get(defaults, item.key), item.key
    port = by_key["websocket.ping_interval"]
    assert tuple(port) == (
        "websocket.ping_interval",
        float,
        25.0,
        "Seconds between server pings (protocol ``{}`` pings on the hub, ping frames on raw "
        "routes).",
    )
    assert port.env == "WSHUB_WEBSOCKET__PING_INTERVAL"
    assert port.flag == "--websocket-ping-interval"
    assert by_key["auth.tokens"].type_name == "list[str]"
    assert by_key["log.level"].type_name == "debug|info|warning|error"
    assert by_key["demo"].is_bool


def test_descriptions_live_in_the_types() -> None:
    hints = typing.get_type_hints(WebSocketConfig, include_extras=True)
    metas = [m for m in hints["pong_timeout"].__metadata__ if isinstance(m, msgspec.Meta)]
    assert any(m.description and "answer a ping" in m.description for m in metas)
    assert config_sections()["websocket"] == "The transport and connection lifecycle."


def test_naming() -> None:
    assert key_to_env("port") == "WSHUB_PORT"
    assert key_to_env("limits.max_connections_per_ip") == "WSHUB_LIMITS__MAX_CONNECTIONS_PER_IP"
    assert key_to_flag("limits.max_connections_per_ip") == "--limits-max-connections-per-ip"


# -- precedence ---------------------------------------------------------------------------

# key, file value (TOML), env value, flag value, and the expected value at each level.
PRECEDENCE = [
    ("port", "9000", "9001", "9002", (9000, 9001, 9002)),
    ("engine", '"redis"', "memory", "redis", ("redis", "memory", "redis")),
    ("websocket.ping_interval", "10", "20", "30.5", (10.0, 20.0, 30.5)),
    ("workers.concurrency", "3", "4", "5", (3, 4, 5)),
    ("auth.tokens", '["a"]', "b,c", " d , e ,", (["a"], ["b", "c"], ["d", "e"])),
    ("origin.allowed", '["https://x"]', "", "https://y", (["https://x"], [], ["https://y"])),
    ("client.insecure", "true", "false", True, (True, False, True)),
    ("log.access", "false", "1", False, (False, True, False)),
    ("origin.missing", '"refuse"', "allow", "refuse", ("refuse", "allow", "refuse")),
    ("token.issuer", '"f"', "e", "", ("f", "e", "")),
]


@pytest.mark.parametrize("case", PRECEDENCE, ids=[c[0] for c in PRECEDENCE])
def test_file_then_env_then_flag(tmp_path: Path, case: tuple[Any, ...]) -> None:
    key, file_value, env_value, flag_value, expected = case
    path = write(tmp_path, toml_for(key, file_value))
    env = {key_to_env(key): env_value}
    from_file = get(load_config(file=path, env={}), key)
    from_env = get(load_config(file=path, env=env), key)
    from_flag = get(load_config({key: flag_value}, file=path, env=env), key)
    assert (from_file, from_env, from_flag) == expected
    assert type(from_env) is type(expected[1])
    # a None override means "flag not given"
    assert get(load_config({key: None}, file=path, env=env), key) == expected[1]


def test_sources_combine(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'host = "0.0.0.0"\nport = 1\n[websocket]\nping_interval = 1\npong_timeout = 2\n'
        "[limits]\ntrusted_proxies = ['10.0.0.0/8']\n",
    )
    env = {"WSHUB_PORT": "2", "WSHUB_WEBSOCKET__PONG_TIMEOUT": "3", "WSHUB_DEMO": "true"}
    config = load_config({"websocket.pong_timeout": "4"}, file=path, env=env)
    assert config.host == "0.0.0.0"
    assert config.port == 2
    assert config.demo is True
    assert config.websocket.ping_interval == 1.0
    assert config.websocket.pong_timeout == 4.0
    assert config.websocket.drain_time == 5.0  # untouched default in a touched section
    assert config.limits.trusted_proxies == ["10.0.0.0/8"]
    assert config.workers == Config().workers


def test_defaults_without_sources() -> None:
    assert load_config(env={}) == Config()
    assert load_config(env={"HOME": "/x", "wshub_port": "1"}) == Config()  # not WSHUB_


def test_config_file_from_env_and_file_argument_wins(tmp_path: Path) -> None:
    a = write(tmp_path, "port = 1\n", "a.toml")
    b = write(tmp_path, "port = 2\n", "b.toml")
    assert load_config(env={"WSHUB_CONFIG": a}).port == 1
    assert load_config(file=b, env={"WSHUB_CONFIG": a}).port == 2
    assert load_config(env={"WSHUB_CONFIG": ""}).port == 8000


def test_namespaces_from_file_env_json_and_flag(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[namespaces]]\nname = ""\n\n[[namespaces]]\nname = "chat"\npresence = true\n'
        "history_size = 10\nhistory_ttl = 60\n",
    )
    config = load_config(file=path, env={})
    assert config.namespaces == [
        NamespaceConfig(),
        NamespaceConfig(name="chat", presence=True, history_size=10, history_ttl=60.0),
    ]
    env = {"WSHUB_NAMESPACES": '[{"name": "news", "join_leave": true}]'}
    assert load_config(file=path, env=env).namespaces == [
        NamespaceConfig(name="news", join_leave=True)
    ]
    flag = {"namespaces": "[]"}
    assert load_config(flag, file=path, env=env).namespaces == []


# -- errors -------------------------------------------------------------------------------

# (key named by the error, message fragment, sources): sources as load_config kwargs where
# "toml" becomes a file.
INVALID: list[tuple[str, str, dict[str, Any]]] = [
    (
        "websocket.ping_interval",
        "expected a number >= 0, got 'abc' (from WSHUB_WEBSOCKET__PING_INTERVAL)",
        {"env": {"WSHUB_WEBSOCKET__PING_INTERVAL": "abc"}},
    ),
    (
        "websocket.ping_interval",
        "expected a number >= 0, got 'abc' (from --websocket-ping-interval)",
        {"overrides": {"websocket.ping_interval": "abc"}},
    ),
    ("websocket.pong_timeout", "got -1", {"toml": "[websocket]\npong_timeout = -1\n"}),
    (
        "websocket.idle_timeout",
        "expected a finite number",
        {"env": {"WSHUB_WEBSOCKET__IDLE_TIMEOUT": "inf"}},
    ),
    ("token.leeway", "got 'nan'", {"env": {"WSHUB_TOKEN__LEEWAY": "nan"}}),
    ("port", "expected an integer from 0 to 65535, got '70000'", {"overrides": {"port": "70000"}}),
    ("port", "expected an integer from 0 to 65535, got '80' (in ", {"toml": 'port = "80"\n'}),
    ("port", "got '8.5'", {"env": {"WSHUB_PORT": "8.5"}}),
    (
        "workers.concurrency",
        "expected an integer > 0, got 0",
        {"toml": "[workers]\nconcurrency = 0\n"},
    ),
    ("demo", "expected true or false, got 'yes'", {"env": {"WSHUB_DEMO": "yes"}}),
    ("log.level", "expected one of ", {"toml": '[log]\nlevel = "loud"\n'}),
    ("engine", "got 'postgres'", {"overrides": {"engine": "postgres"}}),
    (
        "auth.tokens",
        "expected a list of strings, got [1, 2]",
        {"toml": "[auth]\ntokens = [1, 2]\n"},
    ),
    ("host", "expected a string, got 1", {"toml": "host = 1\n"}),
    ("websocket", "expected a table, got 5", {"toml": "websocket = 5\n"}),
    ("port", "expected an integer from 0 to 65535, got a table", {"toml": "[port]\nx = 1\n"}),
    ("namespaces", "expected a list of tables", {"toml": 'namespaces = "x"\n'}),
    (
        "namespaces[1].history_size",
        "expected an integer >= 0, got 'x'",
        {"toml": '[[namespaces]]\nname = "a"\n[[namespaces]]\nhistory_size = "x"\n'},
    ),
    (
        "namespaces[0].presense",
        "unknown key (in ",
        {"toml": '[[namespaces]]\nname = "a"\npresense = true\n'},
    ),
    (
        "namespaces[1].name",
        "duplicate namespace 'a'",
        {"toml": '[[namespaces]]\nname = "a"\n[[namespaces]]\nname = "a"\n'},
    ),
    ("namespaces", "expected a JSON array of objects", {"env": {"WSHUB_NAMESPACES": "[{"}}),
    ("namespaces[0]", "expected a table, got 1", {"overrides": {"namespaces": "[1]"}}),
    ("prot", "unknown key (in ", {"toml": "prot = 1\n"}),
    (
        "websocket.ping_intervall",
        "did you mean websocket.ping_interval?",
        {"toml": "[websocket]\nping_intervall = 1\n"},
    ),
    (
        "WSHUB_PROT",
        "unknown environment variable (did you mean WSHUB_PORT?)",
        {"env": {"WSHUB_PROT": "1"}},
    ),
    (
        "WSHUB_WEBSOCKET_PING_INTERVAL",
        "unknown environment variable",
        {"env": {"WSHUB_WEBSOCKET_PING_INTERVAL": "1"}},
    ),
    ("nope", "unknown key", {"overrides": {"nope": "1"}}),
    ("config", "cannot read", {"file": "/nonexistent/wshub.toml"}),
    ("config", "is not valid TOML", {"toml": "port = = 1\n"}),
    # a bad value is an error even when a higher-precedence source overrides it
    ("port", "got 'x' (from WSHUB_PORT)", {"env": {"WSHUB_PORT": "x"}, "overrides": {"port": "1"}}),
]


def sources(tmp_path: Path, spec: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(spec)
    kwargs.setdefault("env", {})
    if "toml" in kwargs:
        kwargs["file"] = write(tmp_path, kwargs.pop("toml"))
    return kwargs


@pytest.mark.parametrize(
    ("key", "fragment", "spec"), INVALID, ids=[c[0] + "|" + c[1][:30] for c in INVALID]
)
def test_invalid_values_name_the_key(
    tmp_path: Path, key: str, fragment: str, spec: dict[str, Any]
) -> None:
    exc = error(**sources(tmp_path, spec))
    assert exc.key == key
    assert fragment in exc.message
    assert str(exc) == f"{key}: {exc.message}"


def test_message_matches_documented_form() -> None:
    exc = error(env={"WSHUB_WEBSOCKET__PING_INTERVAL": "abc"})
    assert str(exc).startswith("websocket.ping_interval: expected a number")
    assert "got 'abc'" in str(exc)
