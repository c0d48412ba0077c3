"""Typed configuration: dataclass schemas filled from YAML files and ``key=value`` overrides.

Every value is validated against the dataclass field's annotation before any work starts. Unknown keys
are rejected with the list of allowed keys; wrong types and values outside a ``Literal`` are rejected with
the allowed values. Values of an open registry (``Annotated[str, Registered(...)]``, e.g. the model names) are
checked against what is registered when the value is read, so a newly registered entry is accepted.
Nested dataclasses are addressed with dotted keys (``train.epochs=3``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the key and what is allowed."""


@dataclass(frozen=True)
class Registered:
    """Marks a string field whose allowed values are the names in an open registry (``Annotated[str, ...]``).

    Attributes:
        names: returns the registered names (called when a value is checked, so it may import lazily).
    """

    names: Callable[[], Sequence[str]]

    def check(self, value: Any, key: str, default: Any = None) -> str:
        """``value`` when registered, else a ConfigError listing the names (the field's default first)."""
        names = list(self.names())
        if isinstance(value, str) and value in names:
            return value
        ordered = sorted(names, key=lambda n: n != default)
        raise ConfigError(f"{key}: {value!r} is not allowed; expected one of {', '.join(map(repr, ordered))}")


def _registered(tp: Any) -> Registered | None:
    if get_origin(tp) is Annotated:
        return next((m for m in get_args(tp)[1:] if isinstance(m, Registered)), None)
    return None


def _describe(tp: Any) -> str:
    registry = _registered(tp)
    if registry is not None:
        return "one of " + ", ".join(map(repr, registry.names()))
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, default: Any = None) -> Any:
    """Return ``value`` converted to the annotation ``tp`` or raise ConfigError naming ``key``."""
    registry = _registered(tp)
    if registry is not None:
        return registry.check(value, key, default)
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed:
            return value
        # YAML 1.1 reads `off`/`no`/`false` as False (and `on` as True): `amp=off` means the string.
        if isinstance(value, bool) and ("on" if value else "off") in allowed:
            return "on" if value else "off"
        # YAML reads `1` as int where a Literal holds strings; accept the string form.
        if str(value) in [str(a) for a in allowed]:
            return next(a for a in allowed if str(a) == str(value))
        raise ConfigError(f"{key}: {value!r} is not allowed; expected {_describe(tp)}")
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} is not valid; expected {_describe(tp)}")
    if origin in (list, tuple):
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
        (item_tp,) = get_args(tp)[:1] or (Any,)
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return list(items) if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if tp is Path:
        return Path(str(value))
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover - schema bug


def _unknown_key_error(cls: type, key: str, prefix: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    return ConfigError(f"unknown key {prefix}{key}{hint}; allowed keys: {', '.join(names)}")


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, validating every key and value.

    Raises:
        ConfigError: on an unknown key, a wrong type, or a value outside the allowed set.
    """
    data = dict(data or {})
    hints = get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # cls is a dataclass
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key_error(cls, key, prefix)
        factory = fields[key].default_factory
        if isinstance(value, dict) and factory is not dataclasses.MISSING and dataclasses.is_dataclass(hints[key]):
            # A partial section starts from the field's own default (which may differ from the class defaults,
            # e.g. a study's training config), so a key left out means the same whether the section is given or not.
            value = _merge(to_dict(factory()), value)
        kwargs[key] = _coerce(value, hints[key], prefix + key, fields[key].default)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {exc}") from None
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-data form of a config dataclass (Paths become strings), for YAML and JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    data: dict[str, Any] = plain(dataclasses.asdict(obj))
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], parsed value); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key=value`` override set (dotted keys reach nested maps)."""
    out = _deep_copy(data)
    for text in overrides or []:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return out


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; an empty file is an empty mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> T:
    """Build ``cls`` from ``base`` values, then the YAML file at ``path`` (a file, or the name of a shipped
    config), then ``overrides``."""
    from binsight.config.shipped import resolve_config

    data = _deep_copy(base or {})
    if path is not None:
        data = _merge(data, read_yaml(resolve_config(path)))
    data = apply_overrides(data, overrides)
    return from_dict(cls, data)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = _deep_copy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def dump_yaml(obj: Any) -> str:
    """YAML text of a config dataclass, keys in schema order."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)
