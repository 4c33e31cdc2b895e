"""The config a stage reads, found in its code: a static scan that the registry's tests compare
with each stage's declared `config` (`spark_jobs.registry.Stage.config`).

    from tests.spark_jobs.config_reads import reads, undeclared
    reads("spark_jobs.train")                   # {("train", "model"), ("mlflow", None), ...}
    undeclared(("train", "mlflow"), reads(...)) # the reads no declared section or key covers

What counts as a read: `cfg.<section>.<key>` and `<alias>.<key>` after `<alias> = cfg.<section>`,
where `cfg` is any name a function binds to the whole config (a parameter named `cfg`, `config`
or annotated `Config`). A section used as a value (`normalize_text(col, cfg.clean)`,
`cfg.ingest.model_copy(...)`, `getattr(cfg.tables, role)`) is a read of the section as a whole
(`(section, None)`): some key of it must be declared, since the scan cannot tell which.

Where it looks: every function of the stage's module, then, transitively, each lakebert
function they name: `from <lakebert module> import f` (at module or function level), `module.f`
after `from <package> import module`, and the same module's functions by name. Methods called
on objects and config handed to other processes as a dict (`config_dict`) are not followed.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from conf.schema import Config

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("conf", "spark_jobs", "training", "tokenization")
CONFIG_NAMES = ("cfg", "config")
SECTIONS = frozenset(Config.model_fields)


def _is_lakebert(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def _path(module: str) -> Path | None:
    for candidate in (REPO / (module.replace(".", "/") + ".py"), REPO / module.replace(".", "/") / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _module(module: str) -> tuple[dict[str, ast.AST], dict[str, tuple[str, str | None]]]:
    """(top-level functions and classes by name, module-level imports: local name -> (module, attr))."""
    path = _path(module)
    if path is None:
        return {}, {}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    units = {node.name: node for node in tree.body
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return units, _imports(tree.body)


def _imports(nodes) -> dict[str, tuple[str, str | None]]:
    found = {}
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and _is_lakebert(node.module):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found[alias.asname or alias.name] = (sub, None) if _path(sub) else (node.module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _is_lakebert(alias.name):
                    found[alias.asname or alias.name.split(".")[0]] = (alias.name, None)
    return found


def _config_names(unit: ast.AST) -> set[str]:
    names = set(CONFIG_NAMES)
    for node in ast.walk(unit):
        if isinstance(node, ast.arg) and isinstance(node.annotation, ast.Name) and node.annotation.id == "Config":
            names.add(node.arg)
    return names


def _unit_reads(unit: ast.AST) -> set[tuple[str, str | None]]:
    configs, aliases, reads = _config_names(unit), {}, set()
    parents = {child: node for node in ast.walk(unit) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(unit):  # `ic = cfg.ingest`
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Attribute) and isinstance(node.value.value, ast.Name)
                and node.value.value.id in configs and node.value.attr in SECTIONS):
            aliases[node.targets[0].id] = node.value.attr
    for node in ast.walk(unit):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
            continue
        if node.value.id in configs and node.attr in SECTIONS:
            parent = parents.get(node)
            if isinstance(parent, ast.Attribute) and parent.value is node:
                reads.add((node.attr, parent.attr))
            elif not (isinstance(parent, ast.Assign) and parent.value is node):  # an alias: its uses count
                reads.add((node.attr, None))
        elif node.value.id in aliases:
            reads.add((aliases[node.value.id], node.attr))
    fields = {section: Config.model_fields[section].annotation.model_fields for section in SECTIONS}
    # a property or method of a section (`cfg.train.pretrained`, `.model_copy()`): the section as a whole
    return {(s, k) if k is None or k in fields[s] else (s, None) for s, k in reads}


def _references(module: str, unit: ast.AST) -> set[tuple[str, str]]:
    """The lakebert functions (module, name) that `unit` names."""
    units, imports = _module(module)
    local = {**imports, **_imports(n for n in ast.walk(unit) if isinstance(n, (ast.Import, ast.ImportFrom)))}
    found = set()
    for node in ast.walk(unit):
        if isinstance(node, ast.Name) and node is not unit:
            if node.id in units:
                found.add((module, node.id))
            elif node.id in local and local[node.id][1] is not None:
                found.add(local[node.id])
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in local:
            target, attr = local[node.value.id]
            if attr is None:  # `job.key(...)` after `from training import job`
                found.add((target, node.attr))
    return found


def reads(module: str) -> set[tuple[str, str | None]]:
    """Every (section, key) that `module`'s functions, and the lakebert functions they reach, read."""
    seen, todo, found = set(), [(module, name) for name in _module(module)[0]], set()
    while todo:
        where, name = todo.pop()
        unit = _module(where)[0].get(name)
        if (where, name) in seen or unit is None:
            continue
        seen.add((where, name))
        found |= _unit_reads(unit)
        todo.extend(_references(where, unit))
    return found


def covered(declared: tuple[str, ...], section: str, key: str | None) -> bool:
    if section in declared:
        return True
    if key is None:  # the section as a whole: some key of it must be declared
        return any(name.startswith(section + ".") for name in declared)
    return any(f"{section}.{key}" == name or name.startswith(f"{section}.{key}.") for name in declared)


def undeclared(declared: tuple[str, ...], found: set[tuple[str, str | None]]) -> list[str]:
    """The reads in `found` that no name in `declared` covers, as `section.key` (or `section`)."""
    return sorted(f"{s}.{k}" if k else s for s, k in found if not covered(declared, s, k))
