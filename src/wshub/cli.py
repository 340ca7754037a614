"""The ``wshub`` command: parse arguments, build the configuration, hand over.

Subcommands:

* ``wshub serve [--config FILE] [--<key> VALUE ...]``: run the gateway. One flag per
  configuration key, generated from :mod:`wshub.config` (see :mod:`wshub.configload` for
  the precedence and value syntax). Exit status 2 on an invalid configuration.
* ``wshub version``: print the version.
* ``wshub bench --url URL [--scenario ...]``: load-test a deployment (:mod:`wshub.bench`).

Each subcommand is an ``_add_<name>(subparsers)`` function that registers its parser and
sets ``handler``; ``_SUBCOMMANDS`` lists them in ``--help`` order.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, cast

import msgspec

from wshub.configload import CONFIG_ENV, config_keys, config_sections, load_config
from wshub.errors import ConfigError

if TYPE_CHECKING:
    from typing import TypeAlias

    from wshub.config import Config

    _Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    _Handler: TypeAlias = Callable[[argparse.Namespace], int]

__all__ = ["build_parser", "main"]

PROG = "wshub"
EXIT_CONFIG = 2
"""Exit status for an invalid configuration (as for a usage error)."""


def _version() -> str:
    try:
        return metadata.version("wshub")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


# -- serve --------------------------------------------------------------------------------

_SERVE_EPILOG = f"""\
Precedence: flags > WSHUB_* environment variables > TOML file > defaults.
The file is --config FILE or ${CONFIG_ENV}; its tables mirror the groups above
([websocket], [[namespaces]], ...). Environment variable of a key: WSHUB_ + the key
upper-cased with dots as double underscores (WSHUB_WEBSOCKET__PING_INTERVAL).
Lists are comma-separated; namespaces is a JSON array of objects."""


def _metavar(type_name: str) -> str:
    if "|" in type_name:
        return "{" + type_name.replace("|", ",") + "}"
    return {"list[str]": "A,B,..."}.get(type_name, type_name.upper())


def _add_serve(subparsers: _Subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the gateway",
        description="Run the WebSocket gateway.",
        epilog=_SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help=f"TOML configuration file (default: ${CONFIG_ENV}, else none)",
    )
    sections = config_sections()  # section -> its description, for the group headers
    groups: dict[str, argparse._ArgumentGroup] = {}
    for item in config_keys():
        group = groups.get(item.section)
        if group is None:
            title = f"[{item.section}]" if item.section else "general"
            description = sections[item.section] if item.section else None
            group = parser.add_argument_group(title, description)
            groups[item.section] = group
        default = msgspec.json.encode(item.default).decode()
        text = f"{item.description} [{item.key} = {default}; env {item.env}]"
        help_text = text.strip().replace("%", "%%")
        if item.is_bool:
            group.add_argument(
                item.flag,
                dest=item.key,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            # Values stay strings here: load_config parses and validates them, so every
            # bad value gets the same ConfigError message whatever its source.
            group.add_argument(
                item.flag,
                dest=item.key,
                default=None,
                metavar=_metavar(item.type_name),
                help=help_text,
            )
    parser.set_defaults(handler=_serve)


def _run_gateway(config: Config) -> int:
    # Imported here: the gateway pulls in the whole server; `wshub version`/`--help` don't.
    gateway = importlib.import_module("wshub.gateway")
    run = cast("Callable[[Config], int]", gateway.run)
    return run(config)


def _config_error(exc: ConfigError) -> int:
    print(f"{PROG}: invalid configuration: {exc.key}: {exc.message}", file=sys.stderr)
    return EXIT_CONFIG


def _serve(args: argparse.Namespace) -> int:
    overrides = {item.key: getattr(args, item.key) for item in config_keys()}
    try:
        config = load_config(overrides, file=args.config)
    except ConfigError as exc:
        return _config_error(exc)
    try:
        return _run_gateway(config)
    except ConfigError as exc:  # e.g. an `app` that cannot be imported
        return _config_error(exc)


# -- version ------------------------------------------------------------------------------


def _add_version(subparsers: _Subparsers) -> None:
    parser = subparsers.add_parser("version", help="print the version")
    parser.set_defaults(handler=_version_cmd)


def _version_cmd(args: argparse.Namespace) -> int:
    print(f"{PROG} {_version()}")
    return 0


# -- bench --------------------------------------------------------------------------------


def _add_bench(subparsers: _Subparsers) -> None:
    from wshub import bench  # noqa: PLC0415 - light: picows loads only when a bench runs

    parser = subparsers.add_parser(
        "bench",
        help="load-test a deployment (echo, fanout, connect, idle)",
        description=(bench.__doc__ or "").split("\n\n")[0].replace("``", ""),
        epilog="Example: wshub bench --url ws://127.0.0.1:8000/connection/websocket "
        "--token-secret SECRET --scenario fanout --connections 1000 --rate 50 --duration 10",
    )
    bench.add_arguments(parser)
    parser.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    from wshub import bench  # noqa: PLC0415

    return bench.main(args)


_SUBCOMMANDS: tuple[Callable[[_Subparsers], None], ...] = (_add_serve, _add_version, _add_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="wshub: a WebSocket gateway wire-compatible with Centrifugo."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wshub`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    handler = cast("_Handler", args.handler)
    return handler(args)
