"""The one config loader behind `lakebert`, `spark-submit spark_jobs/<stage>.py`, Airflow and notebooks.

    from conf import load_config
    cfg = load_config(env="local", overrides=["ingest.source=data/in.csv", "ingest.format=csv"])

Layers, lowest precedence first: the defaults in `conf/schema.py` < `conf/base.yaml` <
`conf/env/<env>.yaml` < an optional user file (`--config FILE`) < `--set key.sub=value`.
Any error (unknown key, wrong type, value out of range, missing file) raises `ConfigError`
whose message is one line naming the key, the value given and what is allowed.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from conf import storage
from conf.redact import redact, remember_secrets
from conf.schema import Config

CONF_DIR = Path(__file__).resolve().parent
ENV_VAR = "LAKEBERT_ENV"
DEFAULT_ENV = "local"
NULL_WORDS = {"null", "none", "~"}


class ConfigError(ValueError):
    """A configuration problem, phrased as one line for the user."""


def load_config(
    env: str | None = None,
    overrides: Iterable[str] = (),
    config_file: str | os.PathLike | None = None,
    conf_dir: str | os.PathLike | None = None,
) -> Config:
    """Merge the layers and validate them into a typed `Config`."""
    conf_dir = Path(conf_dir) if conf_dir else CONF_DIR
    env = env or os.environ.get(ENV_VAR) or DEFAULT_ENV
    merged: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}

    layers = [(conf_dir / "base.yaml", True), (conf_dir / "env" / f"{env}.yaml", True)]
    if config_file:
        layers.append((Path(config_file), True))
    for path, required in layers:
        if not path.is_file():
            if path.parent.name == "env":
                known = sorted(p.stem for p in (conf_dir / "env").glob("*.yaml"))
                raise ConfigError(f"config error: env={env!r} has no file {path} (allowed: {', '.join(known)})")
            if required:
                raise ConfigError(f"config error: config file {path} does not exist")
            continue
        _merge(merged, _read_yaml(path), origin, str(path))

    set_layer: dict[str, Any] = {}
    for item in overrides:
        key, value = parse_override(item)
        _set_path(set_layer, _split_key(key), value)
    _merge(merged, set_layer, origin, "--set")
    return validate(merged, origin)


def parse_override(item: str) -> tuple[str, Any]:
    """`a.b=c` -> ("a.b", "c"); pydantic coerces the string to the field's type."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"config error: --set {item!r} is not of the form key.sub=value")
    return key, (None if value.strip().lower() in NULL_WORDS else value)


def validate(data: dict[str, Any], origin: dict[tuple[str, ...], str] | None = None) -> Config:
    # Remembered before validation: an invalid value's error message hides them as well.
    remember_secrets(data)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(redact(_describe(exc, origin or {}))) from None
    storage.configure(cfg)  # the Python side reads object storage with the same s3a settings as Spark
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
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"config error: {path} is not valid YAML ({first})") from None
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


def _set_path(tree: dict, parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        node = tree.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config error: --set {'.'.join(parts)} conflicts with another --set of {part}")
        tree = node
    tree[parts[-1]] = value


def _describe(exc: ValidationError, origin: dict) -> str:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "<root>"
    where = origin.get(loc)
    suffix = f" (from {where})" if where else ""
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        hint = difflib.get_close_matches(loc[-1], allowed, n=1)
        did_you_mean = f"; did you mean {'.'.join(loc[:-1] + (hint[0],))}?" if hint else ""
        return (f"config error: unknown key {key}{suffix}; allowed here: {', '.join(allowed)}{did_you_mean}")
    given = redact(err.get("input"), key)
    given_text = "a mapping" if isinstance(given, dict) else repr(given)
    msg = err["msg"].replace("Value error, ", "")
    if err["type"] == "value_error" and isinstance(given, dict):
        return f"config error: {key}: {msg}{suffix}"
    return f"config error: {key}={given_text}{suffix}: {msg}"


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
