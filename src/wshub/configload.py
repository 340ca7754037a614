"""Build a validated :class:`~wshub.config.Config` from its sources.

Precedence, highest first: overrides (the command-line flags) > ``WSHUB_*`` environment
variables > the TOML file > the defaults in :mod:`wshub.config`. Every source is validated
in full (a bad value in a lower source is an error even when a higher one overrides it).

* The file is ``file=`` (``wshub serve --config FILE``), else ``$WSHUB_CONFIG``; none: no
  file. Its tables mirror the sections (``[websocket]``), ``[[namespaces]]`` for namespaces.
  Values must have the right TOML type (``port = "80"`` is an error).
* Environment variables and flags are text: numbers and booleans are parsed
  (``"25"`` -> 25.0; ``true``/``false``/``1``/``0``), lists are comma-separated
  (``WSHUB_ORIGIN__ALLOWED=https://a.example,https://b.example``; empty: ``[]``).
  ``namespaces`` is given there as a JSON array of objects
  (``WSHUB_NAMESPACES='[{"name": "chat", "presence": true}]'``) and replaces the file's list.
* Unknown keys in the file, unknown ``WSHUB_*`` variables and unknown override keys are
  errors. Every error is a :class:`~wshub.errors.ConfigError` naming the flat key
  (``websocket.ping_interval: expected a number >= 0, got 'abc' (from --websocket-ping-interval)``);
  keys inside namespaces are ``namespaces[0].presence``.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, NamedTuple, get_args, get_origin, get_type_hints

import msgspec
from msgspec import inspect as mi

from wshub.config import Config, NamespaceConfig
from wshub.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "ConfigKey",
    "config_keys",
    "config_sections",
    "load_config",
]

ENV_PREFIX = "WSHUB_"
CONFIG_ENV = "WSHUB_CONFIG"
"""The environment variable naming the TOML file (``--config`` wins over it)."""

_NAMESPACES = "namespaces"


class ConfigKey(NamedTuple):
    """One configuration leaf, as listed by :func:`config_keys`."""

    key: str
    """Flat key: ``port``, ``websocket.ping_interval``."""
    type: Any
    """The Python type without its metadata: ``int``, ``list[str]``, ``Literal[...]``."""
    default: Any
    description: str

    @property
    def env(self) -> str:
        """The environment variable: ``WSHUB_WEBSOCKET__PING_INTERVAL``."""
        return key_to_env(self.key)

    @property
    def flag(self) -> str:
        """The command-line flag: ``--websocket-ping-interval``."""
        return key_to_flag(self.key)

    @property
    def section(self) -> str:
        """The section (``websocket``), ``""`` for a top-level key."""
        return self.key.rpartition(".")[0]

    @property
    def is_bool(self) -> bool:
        return self.type is bool

    @property
    def type_name(self) -> str:
        """A short human name: ``int``, ``float``, ``bool``, ``str``, ``list[str]``,
        ``allow|refuse``, ``json``."""
        if get_origin(self.type) is Literal:
            return "|".join(str(v) for v in get_args(self.type))
        return _type_name(_leaves()[self.key].info)


def key_to_env(key: str) -> str:
    return ENV_PREFIX + key.upper().replace(".", "__")


def key_to_flag(key: str) -> str:
    return "--" + key.replace(".", "-").replace("_", "-")


@dataclass(frozen=True, slots=True)
class _Leaf:
    key: str
    annotation: Any  # the full type, constraints included, for msgspec.convert
    info: mi.Type  # msgspec's view of it (Metadata unwrapped)
    bare: Any
    default: Any
    description: str


def _strip_annotated(tp: Any) -> Any:
    while hasattr(tp, "__metadata__"):
        tp = tp.__origin__
    return tp


def _struct_leaves(cls: type[msgspec.Struct], prefix: str, *, sections: bool) -> Iterator[_Leaf]:
    hints = get_type_hints(cls, include_extras=True)
    for field in msgspec.structs.fields(cls):
        annotation = hints[field.name]
        info = mi.type_info(annotation)
        description = ""
        if isinstance(info, mi.Metadata):
            description = str((info.extra_json_schema or {}).get("description", ""))
            info = info.type
        if sections and isinstance(info, mi.StructType):
            yield from _struct_leaves(info.cls, f"{field.name}.", sections=False)
            continue
        if field.default is not msgspec.NODEFAULT:
            default = field.default
        elif field.default_factory is not msgspec.NODEFAULT:
            default = field.default_factory()
        else:  # pragma: no cover - every config field has a default
            raise TypeError(f"config field {prefix}{field.name} has no default")
        yield _Leaf(
            key=prefix + field.name,
            annotation=annotation,
            info=info,
            bare=_strip_annotated(annotation),
            default=default,
            description=" ".join(description.split()),
        )


@cache
def _leaves() -> dict[str, _Leaf]:
    return {leaf.key: leaf for leaf in _struct_leaves(Config, "", sections=True)}


@cache
def _namespace_leaves() -> dict[str, _Leaf]:
    return {leaf.key: leaf for leaf in _struct_leaves(NamespaceConfig, "", sections=False)}


@cache
def _section_types() -> dict[str, type[msgspec.Struct]]:
    hints = get_type_hints(Config)
    return {
        name: tp
        for name, tp in hints.items()
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct)
    }


def config_keys() -> list[ConfigKey]:
    """Every leaf of the configuration tree, in declaration order."""
    return [
        ConfigKey(leaf.key, leaf.bare, leaf.default, leaf.description)
        for leaf in _leaves().values()
    ]


def config_sections() -> dict[str, str]:
    """Section name -> its one-line description (``""``: the top-level keys)."""
    result = {"": _first_line(Config.__doc__)}
    for name, cls in _section_types().items():
        result[name] = _first_line(cls.__doc__)
    return result


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n\n")[0].replace("\n", " ")


# -- messages -----------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:g}"


def _bounds(info: mi.IntType | mi.FloatType) -> str:
    low = f">= {_num(info.ge)}" if info.ge is not None else None
    if info.gt is not None:
        low = f"> {_num(info.gt)}"
    high = f"<= {_num(info.le)}" if info.le is not None else None
    if info.lt is not None:
        high = f"< {_num(info.lt)}"
    if info.ge is not None and info.le is not None:
        return f" from {_num(info.ge)} to {_num(info.le)}"
    parts = [p for p in (low, high) if p]
    return (" " + " and ".join(parts)) if parts else ""


def _expected(info: mi.Type) -> str:
    if isinstance(info, mi.Metadata):
        return _expected(info.type)
    if isinstance(info, mi.BoolType):
        return "true or false"
    if isinstance(info, mi.IntType):
        return "an integer" + _bounds(info)
    if isinstance(info, mi.FloatType):
        return "a number" + _bounds(info)
    if isinstance(info, mi.StrType):
        return "a string"
    if isinstance(info, mi.LiteralType):
        return "one of " + ", ".join(repr(v) for v in info.values)
    if isinstance(info, mi.ListType):
        item = info.item_type
        if isinstance(item, mi.StrType):
            return "a list of strings"
        if isinstance(item, mi.StructType):
            return "a list of tables"
        return "a list"
    if isinstance(info, mi.StructType):
        return "a table"
    return "a valid value"  # pragma: no cover - no other leaf types exist


def _type_name(info: mi.Type) -> str:
    if isinstance(info, mi.BoolType):
        return "bool"
    if isinstance(info, mi.IntType):
        return "int"
    if isinstance(info, mi.FloatType):
        return "float"
    if isinstance(info, mi.StrType):
        return "str"
    if isinstance(info, mi.LiteralType):
        return "|".join(str(v) for v in info.values)
    if isinstance(info, mi.ListType) and isinstance(info.item_type, mi.StrType):
        return "list[str]"
    return "json"


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


# -- conversion ---------------------------------------------------------------------------


def _convert(leaf: _Leaf, value: Any, key: str, where: str, *, text: bool) -> Any:
    """Validate one leaf value. ``text``: it came from the environment or a flag."""
    shown = _show(value)
    if text and isinstance(value, str) and isinstance(leaf.info, mi.ListType):
        value = [item.strip() for item in value.split(",") if item.strip()]
    try:
        result = msgspec.convert(value, leaf.annotation, strict=not text)
    except msgspec.ValidationError:
        raise ConfigError(key, f"expected {_expected(leaf.info)}, got {shown}{where}") from None
    if isinstance(result, float) and not math.isfinite(result):
        raise ConfigError(key, f"expected a finite number, got {shown}{where}")
    return result


def _convert_namespaces(value: Any, where: str) -> list[NamespaceConfig]:
    if not isinstance(value, list):
        raise ConfigError(_NAMESPACES, f"expected a list of tables, got {_show(value)}{where}")
    leaves = _namespace_leaves()
    result: list[NamespaceConfig] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        prefix = f"{_NAMESPACES}[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(prefix, f"expected a table, got {_show(item)}{where}")
        fields: dict[str, Any] = {}
        for name, raw in item.items():
            key = f"{prefix}.{name}"
            leaf = leaves.get(name)
            if leaf is None:
                raise ConfigError(key, f"unknown key{where}{_suggest(name, list(leaves))}")
            fields[name] = _convert(leaf, raw, key, where, text=False)
        namespace = NamespaceConfig(**fields)
        if namespace.name in seen:
            raise ConfigError(f"{prefix}.name", f"duplicate namespace {namespace.name!r}{where}")
        seen.add(namespace.name)
        result.append(namespace)
    return result


def _convert_value(key: str, value: Any, where: str, *, text: bool) -> Any:
    if key == _NAMESPACES:
        if text and isinstance(value, str):
            try:
                value = msgspec.json.decode(value)
            except msgspec.DecodeError as exc:
                raise ConfigError(key, f"expected a JSON array of objects ({exc}){where}") from None
        return _convert_namespaces(value, where)
    return _convert(_leaves()[key], value, key, where, text=text)


def _read_file(path: str) -> dict[str, Any]:
    """Flatten the TOML file into {flat key: raw value}, rejecting unknown keys."""
    where = f" (in {path})"
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        raw = msgspec.toml.decode(data)
    except msgspec.DecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    leaves = _leaves()
    sections = _section_types()
    flat: dict[str, Any] = {}
    for name, value in raw.items():
        if name in sections:
            if not isinstance(value, dict):
                raise ConfigError(name, f"expected a table, got {_show(value)}{where}")
            for sub, subvalue in value.items():
                key = f"{name}.{sub}"
                if key not in leaves:
                    raise ConfigError(key, f"unknown key{where}{_suggest(key, list(leaves))}")
                flat[key] = subvalue
        elif name in leaves:
            flat[name] = value
        else:
            raise ConfigError(name, f"unknown key{where}{_suggest(name, list(leaves))}")
    return flat


def _build(values: Mapping[str, Any]) -> Config:
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, _, name = key.rpartition(".")
        if section:
            nested.setdefault(section, {})[name] = value
        else:
            top[key] = value
    section_types = _section_types()
    for section, fields in nested.items():
        top[section] = section_types[section](**fields)
    return Config(**top)


def load_config(
    overrides: Mapping[str, object] | None = None,
    *,
    file: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Load and validate the configuration.

    ``overrides``: flat key -> value, the highest-precedence source (the CLI passes its
    flags here); a ``None`` value means "not given". Strings are parsed like environment
    values; other values (``bool`` from ``--demo/--no-demo``) are converted as they are.
    ``file``: the TOML file (default: ``env[WSHUB_CONFIG]``, if set and non-empty).
    ``env``: the environment (default: ``os.environ``); ``WSHUB_*`` names are read.

    Raises :class:`~wshub.errors.ConfigError` for any invalid or unknown setting.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    leaves = _leaves()
    values: dict[str, Any] = {}

    path = file if file is not None else (environ.get(CONFIG_ENV) or None)
    if path:
        where = f" (in {path})"
        for key, raw in _read_file(path).items():
            values[key] = _convert_value(key, raw, where, text=False)

    env_keys = {key_to_env(key): key for key in leaves}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        env_key = env_keys.get(name)
        if env_key is None:
            hint = _suggest(name, [*env_keys, CONFIG_ENV])
            raise ConfigError(name, f"unknown environment variable{hint}")
        values[env_key] = _convert_value(env_key, text, f" (from {name})", text=True)

    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in leaves:
            raise ConfigError(key, f"unknown key{_suggest(key, list(leaves))}")
        values[key] = _convert_value(key, raw, f" (from {key_to_flag(key)})", text=True)

    return _build(values)
