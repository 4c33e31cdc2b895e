"""The config keys a command reads, with defaults and one-line meanings, for `lakebert <command> --help`.

    python -m conf.help clean                     # the clean section, nested sections included
    python -m conf.help ingest tokenize.lowercase # whole sections and single keys
    python -m conf.help                           # every section

    from conf.help import check_sections, config_help, config_keys
    print(config_help(["clean", "tokenize.lowercase"]))      # config_keys(...): just the key names

Every text comes from `conf/schema.py`, so there is no second copy to keep in step: a key's
meaning is the first sentence of the docstring under its field (pydantic's `description`, via
`use_attribute_docstrings` on `Section`), plus the sentence saying what None means when the
default is None, and a Literal's allowed values; a section's header is its class docstring's
first sentence. A default is the field's default as you would type it after `--set` (`null`,
`true`, `{}`); for the train keys that `TrainConfig` fills from the model (`lr`, `epochs`,
`weight_decay`, `warmup_ratio`) it is `null`, and the meaning adds the two values null stands
for (`FINE_TUNING_DEFAULTS`, `FROM_SCRATCH_DEFAULTS`). These are the schema's defaults;
conf/env/<env>.yaml may set others (each run logs its resolved config).
"""

from __future__ import annotations

import difflib
import re
import shutil
import sys
import textwrap
import types
import typing
from typing import Any, Literal
from collections.abc import Iterable

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from conf.schema import FINE_TUNING_DEFAULTS, FROM_SCRATCH_DEFAULTS, Config

SECTIONS = tuple(Config.model_fields)
INTRO = ("config keys, set with --set KEY=VALUE (the defaults are conf/schema.py's; "
         "conf/base.yaml and conf/env/<env>.yaml may override them):")
# Columns: a key or default longer than its cap moves its meaning to the next line, so one
# long name does not push every meaning off an 80-column terminal.
MAX_KEY_WIDTH, MAX_DEFAULT_WIDTH, MIN_MEANING_WIDTH = 32, 12, 30
# A sentence ends at . ! or ? before a space or the end, but not at the "e.g." / "i.e." that
# our docstrings use ("Any Spark setting, e.g. `spark.conf...`").
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)[.!?](?=\s|$)")


def sentences(text: str | None) -> list[str]:
    """A docstring's sentences, with its line breaks and indentation collapsed."""
    flat, out = " ".join((text or "").split()), []
    while flat:
        end = _SENTENCE_END.search(flat)
        out.append(flat[:end.end()] if end else flat)
        flat = flat[end.end():].lstrip() if end else ""
    return out


def first_sentence(text: str | None) -> str:
    """A docstring's first sentence: a key's one-line meaning, a section's header."""
    return next(iter(sentences(text)), "")


def format_value(value: Any) -> str:
    """A value as you would type it after `--set key=` or in YAML: null, true, 0.8, {}, [a, b]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        try:
            plain = value.strip() == value and yaml.safe_load(value) == value
        except yaml.YAMLError:
            plain = False
        return value if plain else yaml.safe_dump(value, default_style='"').strip()
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()


def check_sections(names: Iterable[str]) -> tuple[str, ...]:
    """`names` as a tuple when each is a section (`clean`), a nested section (`clean.split`) or
    a key (`tokenize.lowercase`); else ValueError, one line with a "did you mean"."""
    names = tuple(names)
    for name in names:
        _lookup(name)
    return names


def config_help(sections: Iterable[str], width: int | None = None) -> str:
    """One line per key of `sections` (whole sections, nested sections or single keys; see
    `check_sections`): the key, its default and its meaning, in columns that fit `width`
    (default: the terminal's, at most 100). Blocks follow the order of `sections`; keys within
    a block follow the schema."""
    width = width or min(max(shutil.get_terminal_size((100, 24)).columns, 60), 100)
    blocks = _blocks(sections)
    rows_by_block = {path: [_row(path, name, model.model_fields[name]) for name in names]
                     for path, (model, names) in blocks.items()}
    rows = [row for block in rows_by_block.values() for row in block]
    key_width = min(max((len(key) for key, _, _ in rows), default=0), MAX_KEY_WIDTH)
    default_width = min(max((len(default) for _, default, _ in rows), default=0), MAX_DEFAULT_WIDTH)
    start = 2 + key_width + 2 + default_width + 2
    if width - start < MIN_MEANING_WIDTH:  # a narrow terminal: meanings under the key, not beside it
        start = 6
    lines = textwrap.wrap(INTRO, width)
    for path, block in rows_by_block.items():
        model = blocks[path][0]
        lines += [""] + textwrap.wrap(f"[{path}] {first_sentence(model.__doc__)}", width, subsequent_indent="    ",
                                      break_on_hyphens=False, break_long_words=False)
        for key, default, meaning in block:
            prefix = f"  {key:<{key_width}}  {default:<{default_width}}  "
            wrapped = textwrap.wrap(meaning, width - start, break_on_hyphens=False, break_long_words=False) or [""]
            if len(prefix) > start:
                lines.append(prefix.rstrip())
                lines += [" " * start + part for part in wrapped]
            else:
                lines.append((prefix + wrapped[0]).rstrip())
                lines += [" " * start + part for part in wrapped[1:]]
    return "\n".join(lines)


def config_keys(sections: Iterable[str]) -> tuple[str, ...]:
    """The keys `config_help(sections)` lists, in its order: `clean.dedup_key`, ...,
    `clean.near_dedup.threshold`, ..."""
    return tuple(f"{path}.{name}" for path, (_, names) in _blocks(sections).items() for name in names)


def _blocks(sections: Iterable[str]) -> dict[str, tuple[type[BaseModel], list[str]]]:
    """Section path -> (its model, its chosen keys in schema order), sections in the order
    `sections` first names them, each whole section followed by the sections nested in it."""
    chosen: dict[str, tuple[type[BaseModel], set[str]]] = {}
    for name in check_sections(sections):
        model, path, field = _lookup(name)
        if field is None:
            for sub_path, sub_model in _sections_under(model, path):
                chosen.setdefault(sub_path, (sub_model, set()))[1].update(_leaf_names(sub_model))
        else:
            parent, _, key = path.rpartition(".")
            chosen.setdefault(parent, (model, set()))[1].add(key)
    return {path: (model, [name for name in model.model_fields if name in keys])
            for path, (model, keys) in chosen.items()}


def _lookup(name: str) -> tuple[type[BaseModel], str, FieldInfo | None]:
    """`clean.split` -> (SplitConfig, "clean.split", None); `tokenize.lowercase` ->
    (TokenizeConfig, "tokenize.lowercase", its FieldInfo)."""
    model: type[BaseModel] = Config
    parts = name.split(".")
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:depth])
            known = [f"{where}.{key}" if where else key for key in fields]
            close = difflib.get_close_matches(".".join(parts[:depth + 1]), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            allowed = f"keys of {where}: " if where else "sections: "
            raise ValueError(f"unknown config {'key' if where else 'section'} {name!r} "
                             f"({allowed}{', '.join(fields)}){hint}")
        sub = _section_type(fields[part])
        if sub is None:
            if depth != len(parts) - 1:
                value = ".".join(parts[:depth + 1])
                raise ValueError(f"unknown config key {name!r}: {value} is a value, not a section")
            return model, name, fields[part]
        model = sub
    return model, name, None


def _section_type(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _sections_under(model: type[BaseModel], path: str):
    """(path, model) of a section and of every section nested in it, the section first."""
    yield path, model
    for name, field in model.model_fields.items():
        sub = _section_type(field)
        if sub is not None:
            yield from _sections_under(sub, f"{path}.{name}")


def _leaf_names(model: type[BaseModel]) -> list[str]:
    return [name for name, field in model.model_fields.items() if _section_type(field) is None]


def _row(path: str, name: str, field: FieldInfo) -> tuple[str, str, str]:
    """(key, default, meaning) of one key."""
    default = field.get_default(call_default_factory=True)
    said = sentences(field.description)
    meaning = said[0] if said else ""
    if path == "train" and name in FINE_TUNING_DEFAULTS and default is None:
        # TrainConfig's validator replaces null with the model's default: say what that is.
        tuned, scratch = (format_value(d[name]) for d in (FINE_TUNING_DEFAULTS, FROM_SCRATCH_DEFAULTS))
        meaning += (f" null = {tuned} for any model." if tuned == scratch else
                    f" null = {tuned} for a pretrained model, {scratch} from scratch.")
    elif default is None and "None" not in meaning:
        # The sentence that says what null means, when it is not the first ("None = the latest.").
        meaning += next((f" {s}" for s in said[1:] if s.startswith("None")), "")
    choices = _choices(field.annotation)
    if choices:
        meaning += f" One of: {', '.join(format_value(c) for c in choices)}."
    return f"{path}.{name}", format_value(default), meaning


def _choices(annotation) -> list | None:
    """The allowed values of a Literal field (with null when it is optional), else None."""
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        literals = [a for a in args if typing.get_origin(a) is Literal]
        if literals:
            return [v for a in literals for v in typing.get_args(a)] + ([None] if type(None) in args else [])
    return None


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv) or list(SECTIONS)
    if names[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    try:
        print(config_help(names))
    except ValueError as exc:
        print(f"conf.help: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
