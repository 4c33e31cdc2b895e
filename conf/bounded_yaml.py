"""YAML for config, read with bounds: every YAML that lakebert reads from a user goes through `load_yaml`.

    from conf.bounded_yaml import YamlError, load_yaml
    load_yaml("space: {lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}}")   # -> a dict
    load_yaml(alias_bomb)   # -> YamlError at once: "holds more than 10,000 values once its aliases ..."

Safe tags only (PyYAML's SafeLoader: a Python tag is an error). Before anything is built, the
document's node graph is measured as it would be *expanded*: aliases are references that
PyYAML shares, but merging layers, remembering secrets and validating walk the expanded tree,
so nine aliases of nine aliases of ... (the "billion laughs") would hang every one of them.
A config is far below each limit: lakebert's own files hold about 60 values, 3 levels deep.

Errors are `YamlError` (a ValueError, so a validator that reads an inline value reports it as
that key's error), one line, with the line and column of a syntax error.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB of text per document (a file, or one inline value)
MAX_VALUES = 10_000  # nodes (mappings, sequences, scalars) once every alias is expanded
MAX_DEPTH = 32  # nesting, once expanded


class YamlError(ValueError):
    """A document that is not valid YAML or is over a limit; the message is one line."""


def load_yaml(text: str) -> Any:
    """The document in `text` as plain data (None when empty), within the limits above."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise YamlError(f"{size:,} bytes is over the {MAX_BYTES:,}-byte limit for a config document")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, 1, {}, set())
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise YamlError(_describe(exc)) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:  # the composer recurses once per level of text nesting
        raise YamlError(f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def _measure(node: yaml.Node, level: int, sizes: dict[int, tuple[int, int]], open_: set[int]) -> tuple[int, int]:
    """(values, height) of `node` expanded; each shared (anchored) node is measured once."""
    if isinstance(node, yaml.ScalarNode):
        return 1, 1
    key = id(node)
    if key in open_:
        raise YamlError(f"an alias inside its own anchor (line {node.start_mark.line + 1}) makes a recursive structure")
    if key not in sizes:
        open_.add(key)
        children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
        total, height = 1, 0
        for child in children:
            if level + 1 > MAX_DEPTH:
                raise YamlError(f"nested deeper than {MAX_DEPTH} levels (line {child.start_mark.line + 1})")
            values, child_height = _measure(child, level + 1, sizes, open_)
            total, height = total + values, max(height, child_height)
            if total > MAX_VALUES:
                raise YamlError(f"holds more than {MAX_VALUES:,} values once its aliases are expanded "
                                "(a config holds far fewer)")
        open_.discard(key)
        sizes[key] = (total, height + 1)
    total, height = sizes[key]
    if level + height - 1 > MAX_DEPTH:
        raise YamlError(f"nested deeper than {MAX_DEPTH} levels once its aliases are expanded")
    return total, height


def _describe(exc: yaml.MarkedYAMLError) -> str:
    """`not valid YAML: expected ',' or '}', but got '<stream end>' (while parsing a flow mapping) at line 1, column 27`."""
    what = " ".join((exc.problem or exc.context or "not valid YAML").split())
    context = " ".join((exc.context or "").split()) if exc.problem else ""
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"not valid YAML: {what}{f' ({context})' if context else ''}{where}"
