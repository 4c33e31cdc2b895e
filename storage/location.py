"""Where a thing lives, decided once: a local path, a URI or a metastore table name.

    from storage import Location
    Location.parse("main.lake.silver").is_name          # True: no `/`, no `:` (a metastore name, or a folder)
    Location.parse("s3a://b/lh").scheme                  # 's3a'
    Location.parse("tables/bronze").is_relative          # True: a path joined to lakehouse.root
    under_root("./lakehouse", "tokenized")               # '/abs/lakehouse/tokenized'
    join("s3a://b/lh/tokenized/k2", "../k1/data")        # 's3a://b/lh/tokenized/k1/data'

Every "is this a path or a name, local or remote?" in lakebert asks `Location.parse`; nothing
else looks at slashes and colons. Stdlib only: config validation, training and Spark use it alike.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from urllib.parse import urlparse

PATH = "path"    # a local path: `/data/t`, `tables/bronze`, `./lakehouse`
URI = "uri"      # `s3a://b/t`, `file:/t`, `dbfs:/t`
NAME = "name"    # no `/` and no `:`: `bronze`, `main.lake.silver` (a metastore name where tables are meant)
LOCAL_SCHEMES = ("file", "dbfs")  # dbfs:/ is Databricks' FUSE mount /dbfs


@dataclass(frozen=True)
class Location:
    """A parsed location; `text` is what was given."""

    text: str
    kind: str
    scheme: str  # `s3a`, `gs`, `dbfs`, ...; `file` for a path or a name (read as a relative path)

    @classmethod
    def parse(cls, text: str) -> Location:
        text = str(text)
        if text.startswith("dbfs:"):
            return cls(text, URI, "dbfs")
        if "://" in text:
            scheme = urlparse(text).scheme.lower()
            return cls(text, URI, scheme or "file")
        return cls(text, PATH if "/" in text or ":" in text else NAME, "file")

    @property
    def is_name(self) -> bool:
        """No `/` and no `:`. Where a table is meant (`tables.*`, a delta source) it is a metastore
        name; where a folder is meant it is a relative path."""
        return self.kind == NAME

    @property
    def is_uri(self) -> bool:
        return self.kind == URI

    @property
    def is_local(self) -> bool:
        """On this machine's file system (a path, `file:` or `dbfs:/`)."""
        return self.scheme in LOCAL_SCHEMES

    @property
    def is_relative(self) -> bool:
        """A path that means something only under a root (`tables/bronze`, `./x`, `tokenized`)."""
        return self.kind != URI and not self.text.startswith("/")

    def escapes_root(self) -> bool:
        """A relative path that climbs above its root (`..`, `../x`, `a/../../b`)."""
        if not self.is_relative:
            return False
        normal = posixpath.normpath(self.text)
        return normal in (".", "..") or normal.startswith("../")

    def local_path(self) -> str:
        """The local path of a `file:` URI, a `dbfs:/` location (its FUSE mount) or a plain path."""
        if self.scheme == "dbfs":
            return "/dbfs/" + self.text[len("dbfs:"):].lstrip("/")
        if self.text.startswith("file:"):
            return urlparse(self.text).path
        return self.text

    def __str__(self) -> str:
        return self.text


def looks_like_path(name: str) -> bool:
    """A model or tokenizer name that can only be a local path: a hub name is `name` or `org/name`."""
    return (name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1
            or os.sep in name.strip("/").split("/", 1)[-1])


def scheme_of(location: str) -> str:
    """`s3a`, `gs`, `dbfs`, ...; `file` for a local path."""
    return Location.parse(location).scheme


def is_uri(location: str) -> bool:
    """A URI (`s3a://b/t`, `dbfs:/t`), not a local path."""
    return Location.parse(location).is_uri


def is_local(location: str) -> bool:
    return Location.parse(location).is_local


def local_path(location: str) -> str:
    return Location.parse(location).local_path()


def absolute(root: str) -> str:
    """A root as lakebert records it: a URI as given (no trailing `/`), a path made absolute."""
    return root.rstrip("/") if is_uri(root) else os.path.abspath(root)


def under_root(root: str, path: str = "") -> str:
    """`path` as is when it is absolute or a URI; anything else under `root` (made absolute)."""
    if not path:
        return absolute(root)
    return join(absolute(root), path) if Location.parse(path).is_relative else path


def join(location: str, *parts: str) -> str:
    """`location/part/...`, with `..` resolved (an object store has no `..`: a manifest's
    `../<older key>/data/...` must name the older dataset's object)."""
    joined = "/".join([location.rstrip("/"), *(p.strip("/") for p in parts)])
    if ".." not in joined.split("/"):
        return joined
    head, sep, path = joined.partition("://")
    if not sep:
        return posixpath.normpath(joined)
    netloc, _, rest = path.partition("/")
    return f"{head}://{netloc}/{posixpath.normpath(rest).lstrip('/')}"


def parent(location: str) -> str:
    stripped = location.rstrip("/")
    return stripped.rsplit("/", 1)[0] if "/" in stripped else "."  # a bare local name: the current folder
