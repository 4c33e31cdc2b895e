"""The value types config fields share, and `Section`, the base of every config section.

    from conf.fields import ColumnName, Section, TableLocation

A table location is a path, a URI or a metastore name (`storage.Location` tells which); a relative
path must stay under `lakehouse.root`. Column names and table names hold no control characters.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from conf.identifiers import parse_table_name
from storage.location import Location


def _stringify_mapping(value):
    """Spark options and settings are strings; YAML gives `header: true` as a bool."""
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, (int, float)):
            item = str(item)
        out[str(key)] = item
    return out


SparkSettings = Annotated[dict[str, str], BeforeValidator(_stringify_mapping)]


def check_label_names(value):
    """`value`, checked: each coded label has one name, none empty, and no name is given to two
    codes (that would merge two labels silently)."""
    if not isinstance(value, dict):
        return value
    stripped = {key.strip(): name.strip() for key, name in value.items()}
    if len(stripped) != len(value):
        raise ValueError("two label values are the same once their spaces are trimmed: give each one once")
    value = stripped
    if not value or "" in value or "" in value.values():
        raise ValueError("label names map each label value to a name; no key or name may be empty")
    names: dict[str, list[str]] = {}
    for key, name in value.items():
        names.setdefault(name, []).append(key)
    shared = {name: keys for name, keys in names.items() if len(keys) > 1}
    if shared:
        name, keys = next(iter(sorted(shared.items())))
        raise ValueError(f"label name {name!r} is given to {len(keys)} values ({', '.join(sorted(keys))}): "
                         "each label value needs its own name")
    return value


# `ingest.label_names`: {label value: name}, or the location of a JSON or YAML file holding one.
LabelNames = Annotated[dict[str, str] | str | None, BeforeValidator(_stringify_mapping),
                       AfterValidator(check_label_names)]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def stays_under_root(value: str) -> str:
    """A relative path is joined to lakehouse.root (`storage.under_root`): it must stay below it."""
    if Location.parse(value).escapes_root():
        raise ValueError("a relative path must name a folder under lakehouse.root "
                         "(give an absolute path or a URI for one elsewhere)")
    return value


def _table_location(value: str) -> str:
    """A path/URI, or a table name of one to three (back-quoted where needed) identifiers."""
    if _CONTROL.search(value):
        raise ValueError("control characters (newline, tab, NUL) are not allowed")
    if Location.parse(value).is_name:
        parse_table_name(value)
    return stays_under_root(value)


def _column_name(value: str | None) -> str | None:
    if value is not None and (not value or _CONTROL.search(value)):
        raise ValueError("a column name must be non-empty and without control characters")
    return value


TableLocation = Annotated[str, AfterValidator(_table_location)]
ColumnName = Annotated[str, AfterValidator(_column_name)]
OptionalColumnName = Annotated[str | None, AfterValidator(_column_name)]


class Section(BaseModel):
    # use_attribute_docstrings: the string under each field is its `description`, the one text
    # behind `lakebert <stage> --help` (conf.help); a field's first sentence is its one-line meaning.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)
