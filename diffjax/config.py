"""Loading experiment configs: `path.py:arg` files, typed `--config.a.b=v` overrides, JSON round trips.

Every mistake raises `ConfigError` (a `ValueError`) whose message is one line naming the fix; the CLI
prints it and exits with code 2, before anything is compiled.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import pathlib
import sys
from collections.abc import Iterable, Sequence

from ml_collections import ConfigDict, FieldReference


class ConfigError(ValueError):
    """A config that cannot run: an unknown key or name, a wrong type, or an incompatible combination."""


def load_config(spec: str) -> ConfigDict:
    """Loads `configs/ddpm.py:digits,smoke`: the file's `get_config(arg)` with the text after `:`."""
    path, _, arg = spec.partition(":")
    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path!r} not found; pass --config configs/<article>.py[:<scale>,...]")
    root = str(file.resolve().parent.parent)  # article configs import `configs.base` from their repo
    if root not in sys.path:
        sys.path.insert(0, root)
    module_spec = importlib.util.spec_from_file_location(f"diffjax_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} defines no get_config(arg)")
    config = module.get_config(arg) if arg else module.get_config()
    config.lock()
    return config


def parse_flags(arg: str, valid: Sequence[str], what: str = "config") -> set[str]:
    """Splits `digits,smoke` into flags, rejecting unknown ones with the valid list."""
    flags = {f.strip() for f in arg.split(",") if f.strip()}
    unknown = sorted(flags - set(valid))
    if unknown:
        raise ConfigError(f"unknown {what} argument(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    return flags


def _field_type(parent: ConfigDict, name: str):
    field = parent._fields[name]  # noqa: SLF001 - ConfigDict keeps typed placeholders here
    if isinstance(field, FieldReference):
        return field.get_type()
    return type(field)


def _parse_value(text: str, expected: type, key: str):
    if text == "None":
        return None
    try:
        if expected is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            return lowered in ("true", "1")
        if expected is int:
            return int(text)
        if expected is float:
            return float(text)
        if expected in (tuple, list):
            value = ast.literal_eval(text)
            value = value if isinstance(value, tuple | list) else (value,)
            return expected(value)
        if expected is str:
            return text
        try:  # an unset field (None) of a saved config: a Python literal, else a string
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    except (ValueError, SyntaxError):
        raise ConfigError(f"config key {key!r} expects {expected.__name__}, got {text!r}") from None


def apply_overrides(config: ConfigDict, overrides: Iterable[str]) -> ConfigDict:
    """Applies `a.b=v` overrides (the text of `--config.a.b=v`), typed by the field they set."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} needs a value: --config.{key}=<value>")
        parent, parts = config, key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(parent, ConfigDict) or part not in parent:
                where = ".".join(parts[:depth]) or "the config"
                valid = ", ".join(sorted(parent.keys())) if isinstance(parent, ConfigDict) else "(none)"
                raise ConfigError(f"unknown config key {key!r}: {where} has no {part!r}; valid keys: {valid}")
            if depth < len(parts) - 1:
                parent = parent[part]
        name = parts[-1]
        if isinstance(parent[name], ConfigDict):
            raise ConfigError(f"config key {key!r} is a section; set one of its keys: "
                              f"{', '.join(sorted(parent[name].keys()))}")
        value = _parse_value(text, _field_type(parent, name), key)
        with parent.ignore_type() if value is None else contextlib.nullcontext():
            parent[name] = value
    return config


def to_json(config: ConfigDict) -> str:
    """The resolved config as JSON (tuples become lists)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ConfigDict:
    """Rebuilds a locked config from `to_json` output (lists become tuples)."""

    def convert(value):
        if isinstance(value, dict):
            return ConfigDict({k: convert(v) for k, v in value.items()})
        if isinstance(value, list):
            return tuple(convert(v) for v in value)
        return value

    config = convert(json.loads(text))
    config.lock()
    return config


def changed_keys(a: ConfigDict, b: ConfigDict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two configs."""
    out = []
    for name in sorted(set(a.keys()) | set(b.keys())):
        va, vb = a.get(name), b.get(name)
        if isinstance(va, ConfigDict) and isinstance(vb, ConfigDict):
            out += changed_keys(va, vb, f"{prefix}{name}.")
        elif va != vb:
            out.append(f"{prefix}{name}")
    return out
