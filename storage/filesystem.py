"""The one storage layer for what lakebert reads and writes outside Spark: the same URIs as Spark.

    import storage
    storage.configure(cfg.spark.conf)                          # once per process, by the entry point
    storage.write_text("s3a://bucket/lh/tokenized/LATEST", key)
    storage.read_text("s3a://bucket/lh/tokenized/LATEST")
    fs, path = storage.resolve("s3a://bucket/lh/tokenized/k/data/part-0.parquet")  # for pyarrow readers
    storage.check("s3a://bucket/lh")                           # a one-line StorageError before any work

Locations, as Spark writes them: local paths and `file:`, `s3a://` `s3://` `s3n://` (pyarrow's
S3FileSystem: Hadoop's `s3a` is plain S3), `gs://` (GcsFileSystem), `abfs://` `abfss://`
(AzureFileSystem), `hdfs://` (HadoopFileSystem, needs libhdfs), `dbfs:/` (Databricks' FUSE
mount `/dbfs`) and `/Volumes/...` (a local path on Databricks).

S3 credentials and endpoint come from where the JVM finds them too: the AWS variables
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
`AWS_ENDPOINT_URL`), a profile or an instance role (the AWS SDK's own chain), or the
`spark.hadoop.fs.s3a.*` settings in `spark.conf`, which win. Nothing here logs or returns a
secret; errors name the location and the cause only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from urllib.parse import urlparse

from conf.redact import redact
from storage.location import LOCAL_SCHEMES, is_local, join, local_path, scheme_of

S3_SCHEMES = ("s3a", "s3", "s3n")
AZURE_SCHEMES = ("abfs", "abfss")
# `spark.hadoop.fs.s3a.*` settings the Python side honours too (the JVM reads all of them).
S3A_PREFIX = "spark.hadoop.fs.s3a."
AZURE_KEY_PREFIX = "spark.hadoop.fs.azure.account.key."
CONNECT_TIMEOUT_S = 5.0  # a wrong endpoint fails in seconds, not after the SDK's retries


class StorageError(RuntimeError):
    """A location that cannot be read or written: one line, no secrets."""


_settings: dict[str, str] = {}
_filesystems: dict[tuple, object] = {}
_lock = threading.Lock()


def configure(spark_conf: Mapping[str, str] | None) -> None:
    """Take the `spark.hadoop.fs.s3a.*` settings of a config's `spark.conf` (they win over the AWS
    variables) and its ADLS account keys (`spark.hadoop.fs.azure.account.key.<account>.dfs...`).
    Each entry point calls it once its config is loaded (the stage runner, the training process);
    loading a config configures nothing."""
    conf = spark_conf or {}
    settings = {k[len(S3A_PREFIX):]: str(v) for k, v in conf.items() if k.startswith(S3A_PREFIX)}
    settings.update({f"azure:{k[len(AZURE_KEY_PREFIX):].split('.')[0]}": str(v) for k, v in conf.items()
                     if k.startswith(AZURE_KEY_PREFIX)})
    with _lock:
        if settings != _settings:
            _settings.clear()
            _settings.update(settings)
            _filesystems.clear()


def s3_options() -> dict:
    """S3FileSystem options: config's s3a settings, else the AWS variables (the SDK reads the rest)."""
    s = _settings
    options: dict = {"connect_timeout": CONNECT_TIMEOUT_S, "request_timeout": 30.0}
    endpoint = s.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        ssl = s.get("connection.ssl.enabled")
        options["scheme"] = "http" if ssl == "false" else parsed.scheme
        options["endpoint_override"] = parsed.netloc
    region = s.get("endpoint.region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    if s.get("access.key") and s.get("secret.key"):
        options.update(access_key=s["access.key"], secret_key=s["secret.key"])
        if s.get("session.token"):
            options["session_token"] = s["session.token"]
    return options


def _filesystem(scheme: str, netloc: str):
    from pyarrow import fs

    options = s3_options() if scheme in S3_SCHEMES else {}
    if scheme in S3_SCHEMES and "region" not in options and "endpoint_override" not in options:
        region = _bucket_region(netloc)  # as S3A does: the bucket's own region
        if region:
            options["region"] = region
    key = (scheme, netloc if scheme in AZURE_SCHEMES + ("hdfs",) else "", tuple(sorted(options.items())))
    with _lock:  # one filesystem per scheme and settings (the AWS variables may change, as in tests)
        cached = _filesystems.get(key)
    if cached is not None:
        return cached
    try:
        if scheme in S3_SCHEMES:
            made = fs.S3FileSystem(**options)
        elif scheme == "gs":  # Google's default credentials (GOOGLE_APPLICATION_CREDENTIALS, the VM's account)
            made = fs.GcsFileSystem()
        elif scheme in AZURE_SCHEMES:  # abfss://container@account.dfs.core.windows.net/path
            account = netloc.split("@")[-1].split(".")[0]
            key_setting = _settings.get(f"azure:{account}")
            made = fs.AzureFileSystem(account_name=account, **({"account_key": key_setting} if key_setting else {}))
        elif scheme == "hdfs":
            _hadoop_classpath()
            host, _, port = netloc.partition(":")
            made = fs.HadoopFileSystem(host or "default", int(port or 0))
        else:
            raise StorageError(f"lakebert cannot read or write {redact(scheme)}:// locations outside Spark "
                               f"(have: local paths, file:, s3a://, s3://, gs://, abfss://, hdfs://, dbfs:/)")
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow without the filesystem, no libhdfs, bad settings
        raise _failed("open", f"{scheme}://{netloc}", exc) from None
    with _lock:
        _filesystems[key] = made
    return made


def _bucket_region(bucket: str) -> str | None:
    """The bucket's region (one unsigned HEAD), or None to let the SDK choose."""
    from pyarrow import fs

    if not bucket:
        return None
    try:
        return fs.resolve_s3_region(bucket)
    except Exception:  # noqa: BLE001 - no network to AWS, or no such bucket: check() says which
        return None


def _hadoop_classpath() -> None:
    """pyarrow's HDFS client runs libhdfs in a JVM that needs Hadoop's jars on CLASSPATH: take
    them from `hadoop classpath --glob` when HADOOP_HOME is set and CLASSPATH is not."""
    import subprocess

    home = os.environ.get("HADOOP_HOME")
    if os.environ.get("CLASSPATH") or not home:
        return
    found = subprocess.run([os.path.join(home, "bin", "hadoop"), "classpath", "--glob"], capture_output=True,
                           text=True, timeout=60)
    if found.returncode == 0:
        os.environ["CLASSPATH"] = found.stdout.strip()


def resolve(location: str):
    """(a pyarrow FileSystem, the path on it) for `location`."""
    from pyarrow import fs

    scheme = scheme_of(location)
    if scheme in LOCAL_SCHEMES:
        return fs.LocalFileSystem(), os.path.abspath(local_path(location))
    parsed = urlparse(location)
    if scheme in AZURE_SCHEMES:  # the container is the userinfo part
        container = parsed.netloc.split("@")[0]
        return _filesystem(scheme, parsed.netloc), f"{container}{parsed.path}".rstrip("/")
    if scheme == "hdfs":
        return _filesystem(scheme, parsed.netloc), parsed.path.rstrip("/") or "/"
    return _filesystem(scheme, parsed.netloc), f"{parsed.netloc}{parsed.path}".rstrip("/")


def _failed(action: str, location: str, exc: BaseException) -> StorageError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StorageError(f"cannot {action} {redact(location)}: {redact(reason)}{_hint(location, reason)}")


def _hint(location: str, reason: str) -> str:
    if scheme_of(location) not in S3_SCHEMES:
        return ""
    low = reason.lower()
    if "credentials" in low or "access denied" in low or "accessdenied" in low or "invalidaccesskeyid" in low:
        return (" (S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, use a profile or an "
                "instance role, or spark.conf's spark.hadoop.fs.s3a.access.key/secret.key)")
    if "curl" in low or "connect" in low or "resolve" in low or "timeout" in low or "timed out" in low:
        endpoint = s3_options().get("endpoint_override", "the AWS default")
        return f" (the S3 endpoint {redact(endpoint)} does not answer: check AWS_ENDPOINT_URL or fs.s3a.endpoint)"
    return ""


def _info(location: str):
    """pyarrow's FileInfo of `location` (type NotFound when it does not exist)."""
    filesystem, path = resolve(location)
    try:
        return filesystem.get_file_info(path)
    except OSError as exc:
        raise _failed("read", location, exc) from None


def exists(location: str) -> bool:
    from pyarrow import fs

    return _info(location).type != fs.FileType.NotFound


def is_dir(location: str) -> bool:
    from pyarrow import fs

    return _info(location).type == fs.FileType.Directory


def is_file(location: str) -> bool:
    from pyarrow import fs

    return _info(location).type == fs.FileType.File


def stat(location: str) -> tuple[int | None, float | None]:
    """(size in bytes, modification time) of a file; FileNotFoundError when it does not exist."""
    from pyarrow import fs

    info = _info(location)
    if info.type != fs.FileType.File:
        raise FileNotFoundError(location)
    return info.size, info.mtime.timestamp() if info.mtime else None


def read_bytes(location: str) -> bytes:
    filesystem, path = resolve(location)
    try:
        with filesystem.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        if "not found" in str(exc).lower() or "no such file" in str(exc).lower():
            raise FileNotFoundError(location) from None
        raise _failed("read", location, exc) from None


def read_text(location: str) -> str:
    return read_bytes(location).decode("utf-8")


def write_bytes(location: str, data: bytes) -> None:
    """Whole-object write: on object stores a reader sees the old object or the new one, never
    a part; a local file is written beside and renamed into place."""
    filesystem, path = resolve(location)
    try:
        if scheme_of(location) in LOCAL_SCHEMES:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            partial = f"{path}.partial-{os.getpid()}-{threading.get_ident()}"
            with open(partial, "wb") as f:
                f.write(data)
            os.replace(partial, path)
            return
        with filesystem.open_output_stream(path) as f:
            f.write(data)
    except OSError as exc:
        raise _failed("write", location, exc) from None


def write_text(location: str, text: str) -> None:
    write_bytes(location, text.encode("utf-8"))


def listdir(location: str) -> list[str]:
    """The names directly under `location` (empty when it does not exist)."""
    from pyarrow import fs

    filesystem, path = resolve(location)
    try:
        infos = filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
    except OSError as exc:
        raise _failed("list", location, exc) from None
    return sorted(info.base_name for info in infos)


def files_under(location: str) -> list[str]:
    """Every file under `location`, as paths relative to it (empty when it does not exist)."""
    from pyarrow import fs

    filesystem, path = resolve(location)
    try:
        infos = filesystem.get_file_info(fs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise _failed("list", location, exc) from None
    return sorted(info.path[len(path):].lstrip("/") for info in infos if info.type == fs.FileType.File)


def delete(location: str) -> None:
    """A file or a whole folder; nothing when it does not exist."""
    from pyarrow import fs

    filesystem, path = resolve(location)
    try:
        kind = filesystem.get_file_info(path).type
        if kind == fs.FileType.Directory:
            filesystem.delete_dir(path)
        elif kind == fs.FileType.File:
            filesystem.delete_file(path)
    except OSError as exc:
        raise _failed("delete", location, exc) from None


def upload(local_dir: str, location: str, last: str | None = None) -> None:
    """Copy a local folder's files to `location` (same relative paths); the file named `last`
    goes last, so its presence can mark the folder complete."""
    files = sorted(os.path.relpath(os.path.join(root, name), local_dir).replace(os.sep, "/")
                   for root, _, names in os.walk(local_dir) for name in names)
    for rel in sorted(files, key=lambda rel: rel == last):
        with open(os.path.join(local_dir, *rel.split("/")), "rb") as f:
            write_bytes(join(location, rel), f.read())


def download(location: str, local_dir: str) -> None:
    """Copy every file under `location` into a local folder (same relative paths)."""
    for rel in files_under(location):
        target = os.path.join(local_dir, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(read_bytes(join(location, rel)))


def has_s3_credentials() -> bool:
    """Credentials in config or in one of the AWS SDK's standard places (not an instance role:
    that needs a call to find out)."""
    from pathlib import Path

    env = os.environ
    return bool((_settings.get("access.key") and _settings.get("secret.key"))
                or (env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"))
                or env.get("AWS_PROFILE") or env.get("AWS_WEB_IDENTITY_TOKEN_FILE")
                or env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
                or Path(env.get("AWS_SHARED_CREDENTIALS_FILE", Path.home() / ".aws" / "credentials")).exists())


def check(location: str) -> None:
    """Reach `location` (list it) now, so a wrong endpoint, missing credentials or a missing
    bucket is a one-line error before any work, not a stack trace halfway through a stage.
    An S3-compatible server (an endpoint outside amazonaws.com) without credentials is an error
    at once: it has no instance roles, and many accept anonymous requests where S3A would not."""
    if is_local(location):
        return
    from pyarrow import fs

    endpoint = s3_options().get("endpoint_override", "")
    if (scheme_of(location) in S3_SCHEMES and endpoint and not endpoint.split(":")[0].endswith(".amazonaws.com")
            and not has_s3_credentials()):
        raise StorageError(f"cannot reach {redact(location)}: no S3 credentials (set AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or spark.conf's spark.hadoop.fs.s3a.access.key/"
                           "secret.key)")

    filesystem, path = resolve(location)
    try:
        filesystem.get_file_info(path)
        bucket = path.split("/")[0] if scheme_of(location) in S3_SCHEMES + ("gs",) else None
        if bucket and filesystem.get_file_info(bucket).type == fs.FileType.NotFound:
            raise StorageError(f"cannot reach {redact(location)}: the bucket {bucket!r} does not exist")
    except OSError as exc:
        raise _failed("reach", location, exc) from None
