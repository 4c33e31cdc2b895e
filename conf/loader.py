"""The one config loader behind `lakebert`, `spark-submit spark_jobs/<stage>.py`, Airflow and notebooks.

    from conf import load_config
    cfg = load_config(env="local", overrides=["ingest.source=data/in.csv", "ingest.format=csv"])

Layers, lowest precedence first: the defaults in `conf/schema.py` < `conf/base.yaml` <
`conf/env/<env>.yaml` < an optional user file (`--config FILE`) < `--set key.sub=value`.
Any error (unknown key, wrong type, value out of range, missing file, YAML that is not valid
or is over a size limit: `conf.bounded_yaml`) raises `ConfigError` whose message is one line
naming the key, the value given (cut at `MAX_SHOWN` characters), the layer it came from and
what is allowed.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any
from collections.abc import Iterable

import yaml
from pydantic import BaseModel, ValidationError

from conf.bounded_yaml import MAX_BYTES, YamlError, load_yaml
from conf.redact import redact, remember_secrets
from conf.schema import Config

CONF_DIR = Path(__file__).resolve().parent
ENV_VAR = "LAKEBERT_ENV"
DEFAULT_ENV = "local"
NULL_WORDS = {"null", "none", "~"}
# An overlay is named, not a path: `--env ../../tmp/x` would read any file as conf/env/<env>.yaml.
ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
MAX_SHOWN = 200  # characters of a value or key quoted in a message: a 100 KB value is no message
SET_LAYER = "--set"


class ConfigError(ValueError):
    """A configuration problem, phrased as one line for the user."""


def load_config(
    env: str | None = None,
    overrides: Iterable[str] = (),
    config_file: str | os.PathLike | None = None,
    conf_dir: str | os.PathLike | None = None,
    override_layers: Iterable[tuple[str, Iterable[str]]] = (),
) -> Config:
    """Merge the layers and validate them into a typed `Config`. `override_layers`: more
    `key=value` layers below `overrides`, each as (its name in messages, its items), e.g. the
    overrides Airflow hands a stage in the environment."""
    conf_dir = Path(conf_dir) if conf_dir else CONF_DIR
    env_from = "env" if env else f"${ENV_VAR}"
    env = env or os.environ.get(ENV_VAR) or DEFAULT_ENV
    merged: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}

    known = sorted(p.stem for p in (conf_dir / "env").glob("*.yaml"))
    if not ENV_NAME.fullmatch(env):
        raise ConfigError(f"config error: env={_shown(redact(env))} (from {env_from}) is not an overlay name "
                          f"(allowed: {', '.join(known)}); give a file of your own with --config")
    layers = [(conf_dir / "base.yaml", True), (conf_dir / "env" / f"{env}.yaml", True)]
    if config_file:
        layers.append((Path(config_file), True))
    for path, required in layers:
        if not path.is_file():
            if path.parent.name == "env":
                raise ConfigError(f"config error: env={_shown(env)} has no file {path} (allowed: {', '.join(known)})")
            if required:
                raise ConfigError(f"config error: config file {path} does not exist")
            continue
        _merge(merged, _read_yaml(path), origin, str(path))

    for source, items in [*override_layers, (SET_LAYER, overrides)]:
        set_layer: dict[str, Any] = {}
        for item in items:
            key, value = parse_override(item, source)
            _set_path(set_layer, _split_key(key), value, source)
        _merge(merged, set_layer, origin, source)
    return validate(merged, origin)


def parse_override(item: str, source: str = SET_LAYER) -> tuple[str, Any]:
    """`a.b=c` -> ("a.b", "c"); pydantic coerces the string to the field's type."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"config error: {source} {_shown(redact(item))} is not of the form key.sub=value")
    return key, (None if value.strip().lower() in NULL_WORDS else value)


def validate(data: dict[str, Any], origin: dict[tuple[str, ...], str] | None = None) -> Config:
    # Remembered before validation: an invalid value's error message hides them as well.
    remember_secrets(data)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(redact(_describe(exc, origin or {}, data))) from None
    return cfg


def config_dict(cfg: Config, redact: bool = True) -> dict[str, Any]:
    """The resolved config as plain data, with secrets replaced by `***` when `redact`
    (`conf.redact.redact`: secret-named keys, URL credentials, secret query parameters)."""
    data = cfg.model_dump(mode="json")
    return _redact(data) if redact else data


def config_yaml(cfg: Config, redact: bool = True) -> str:
    return yaml.safe_dump(config_dict(cfg, redact), sort_keys=False, default_flow_style=False)


_redact = redact  # `redact` is also config_dict's flag


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)  # no more: a huge file is refused, not read
    except OSError as exc:
        raise ConfigError(f"config error: cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"config error: {path}: over the {MAX_BYTES:,}-byte limit for a config file")
    try:
        data = load_yaml(raw.decode("utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config error: {path}: not UTF-8 text (byte {exc.start + 1})") from None
    except YamlError as exc:
        raise ConfigError(f"config error: {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config error: {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _merge(into: dict, new: dict, origin: dict, source: str, prefix: tuple[str, ...] = ()) -> None:
    for key, value in new.items():
        path = prefix + (str(key),)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, origin, source, path)
        else:
            into[key] = value
            origin[path] = source
            if isinstance(value, dict):
                _mark(origin, value, source, path)


def _mark(origin: dict, value: dict, source: str, prefix: tuple[str, ...]) -> None:
    for key, item in value.items():
        origin[prefix + (str(key),)] = source
        if isinstance(item, dict):
            _mark(origin, item, source, prefix + (str(key),))


def _set_path(tree: dict, parts: list[str], value: Any, source: str = SET_LAYER) -> None:
    for part in parts[:-1]:
        node = tree.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config error: {source} {_cut('.'.join(parts))} conflicts with another "
                              f"{source} of {_cut(part)}")
        tree = node
    tree[parts[-1]] = value


def _shown(value: Any) -> str:
    """`repr(value)`, cut to MAX_SHOWN characters. Redact before: a cut secret is no longer found."""
    return _cut(repr(value))


def _cut(text: str, limit: int = MAX_SHOWN) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _describe(exc: ValidationError, origin: dict, data: dict) -> str:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "<root>"
    where = _origin_of(loc, origin, data)
    suffix = f" (from {where})" if where else ""
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        hint = difflib.get_close_matches(loc[-1], allowed, n=1)
        did_you_mean = f"; did you mean {'.'.join(loc[:-1] + (hint[0],))}?" if hint else ""
        return (f"config error: unknown key {_cut(redact(key))}{suffix}; allowed here: {', '.join(allowed)}"
                f"{did_you_mean}")
    given = redact(err.get("input"), key)
    given_text = "a mapping" if isinstance(given, dict) else _shown(given)
    msg = _cut(redact(err["msg"].replace("Value error, ", "")), 5 * MAX_SHOWN)  # a validator may quote a value
    key = _cut(key)
    if err["type"] == "value_error" and isinstance(given, dict):
        return f"config error: {key}: {msg}{suffix}"
    return f"config error: {key}={given_text}{suffix}: {msg}"


def _origin_of(loc: tuple[str, ...], origin: dict[tuple[str, ...], str], data: dict) -> str:
    """The layers that gave the value at `loc`: those of its keys (a mapping's error, such as
    split fractions that do not sum to 1, names every layer that set one of them), else of the
    nearest key above it (an error inside a value read from one string, such as an inline
    `tune.space` entry). Keys a higher layer replaced are not counted."""
    layers = list(dict.fromkeys(origin.values()))  # in the order they were merged: lowest first
    # Compared split at dots: `--set tune.space.lr.low=1` is kept under the key `lr.low`.
    dotted = {tuple(".".join(path).split(".")): (path, source) for path, source in origin.items()}
    loc = tuple(".".join(loc).split("."))
    found: set[str] = set()
    for end in range(len(loc), 0, -1):
        found = {source for flat, (path, source) in dotted.items()
                 if flat[:end] == loc[:end] and (end == len(loc) or len(flat) == end) and _is_value(data, path)}
        if found:
            break
    return " and ".join(sorted(found, key=layers.index))


def _is_value(data: Any, path: tuple[str, ...]) -> bool:
    """`path` is in the merged `data` and holds a value (not a mapping with keys of its own)."""
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return not (isinstance(data, dict) and data)


def _split_key(key: str) -> list[str]:
    """Split `a.b.c` on dots, except inside a free-form mapping such as `spark.conf`, whose
    own keys hold dots (`spark.conf.spark.sql.shuffle.partitions` -> spark, conf, spark.sql...)."""
    parts = key.split(".")
    model: type[BaseModel] | None = Config
    for i, part in enumerate(parts):
        field = model.model_fields.get(part) if model else None
        if field is None:
            return parts
        annotation = field.annotation
        if getattr(annotation, "__origin__", None) is dict:
            rest = ".".join(parts[i + 1 :])
            return parts[: i + 1] + ([rest] if rest else [])
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return parts


def _fields_at(loc: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
