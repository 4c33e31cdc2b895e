"""Where things live under `lakehouse.root`; shared by the Spark stages and by training.

    from conf.paths import under_root
    under_root(cfg, cfg.tokenize.output)     # -> /abs/lakehouse/tokenized (URIs and absolute paths kept)
"""

from __future__ import annotations

import os

from conf import storage
from conf.schema import Config
from conf.storage import is_uri

__all__ = ["is_uri", "join_path", "resolve_root", "under_root"]


def resolve_root(cfg: Config) -> str:
    root = cfg.lakehouse.root
    return root.rstrip("/") if is_uri(root) else os.path.abspath(root)


def join_path(root: str, *parts: str) -> str:
    return storage.join(root, *parts)


def under_root(cfg: Config, path: str) -> str:
    """An absolute path or URI as is; anything else relative to lakehouse.root."""
    return path if is_uri(path) or path.startswith("/") else join_path(resolve_root(cfg), path)
