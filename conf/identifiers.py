"""SQL identifiers from config: validated where config is validated, quoted by one function.

    from conf.identifiers import quote_identifier, parse_table_name, quote_table_name
    quote_identifier("my col")              # -> `my col`
    parse_table_name("main.`my-schema`.t")  # -> ['main', 'my-schema', 't']
    quote_table_name(["main", "my-schema", "t"])   # -> `main`.`my-schema`.`t`

A table name is one to three parts separated by dots; each part is a plain identifier
(`[A-Za-z_][A-Za-z0-9_]*`) or a back-quoted one (any characters but newlines, a backtick
written twice). Anything else (spaces, semicolons, quotes, comments outside backticks) is
rejected, so `default.evil USING parquet AS SELECT ...` is a config error, not a CTAS.
Nothing from config reaches `spark.sql` except through `quote_identifier`.
"""

from __future__ import annotations

import re

_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|`(?:[^`\r\n]|``)+`")
MAX_PARTS = 3
ALLOWED = ("one to three dot-separated parts, each a plain identifier ([A-Za-z_][A-Za-z0-9_]*) "
           "or back-quoted (`any name`, a backtick doubled)")


def quote_identifier(name: str) -> str:
    """One identifier in backticks, embedded backticks doubled: safe in any SQL position."""
    if not name or any(c in name for c in "\r\n\x00"):
        raise ValueError(f"{name!r} is not a usable identifier")
    return "`" + name.replace("`", "``") + "`"


def parse_table_name(value: str) -> list[str]:
    """The unquoted parts of a table name; ValueError (naming what is allowed) otherwise."""
    parts, pos = [], 0
    while True:
        m = _PART.match(value, pos)
        if not m:
            break
        token = m.group(0)
        parts.append(token[1:-1].replace("``", "`") if token.startswith("`") else token)
        pos = m.end()
        if pos < len(value) and value[pos] == "." and len(parts) < MAX_PARTS:
            pos += 1
            continue
        break
    if pos != len(value) or not parts:
        raise ValueError(f"not a table name: {ALLOWED}")
    return parts


def quote_table_name(parts: list[str]) -> str:
    return ".".join(quote_identifier(p) for p in parts)


def string_literal(value: str) -> str:
    """A SQL string literal ('...' with quotes and backslashes escaped) for table properties."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
