"""lakebert's ground floor: where things live (`storage.location`) and how lakebert reads and
writes them outside Spark (`storage.filesystem`, pyarrow's filesystems: local, s3a, gs, abfss,
hdfs, dbfs). It imports nothing of lakebert but `conf.redact`, a leaf; `conf` imports only
`storage.location` (standard library only), so either package can be imported first.

    import storage
    storage.configure(cfg.spark.conf)                 # each entry point, once its config is loaded
    storage.Location.parse("main.lake.silver").is_name
    storage.write_text(storage.join(root, "LATEST"), key)
"""

# location first: `conf` (which filesystem's `conf.redact` loads) validates config with it
from storage.location import (Location, absolute, is_local, is_uri, join, local_path, parent, scheme_of,
                              under_root)
from storage.filesystem import (S3_SCHEMES, StorageError, check, configure, delete, download, exists, files_under,
                                has_s3_credentials, is_dir, is_file, listdir, read_bytes, read_text, resolve,
                                s3_options, stat, upload, write_bytes, write_text)

__all__ = ["S3_SCHEMES", "Location", "StorageError", "absolute", "check", "configure", "delete", "download",
           "exists", "files_under", "has_s3_credentials", "is_dir", "is_file", "is_local", "is_uri", "join",
           "listdir", "local_path", "parent", "read_bytes", "read_text", "resolve", "s3_options", "scheme_of",
           "stat", "under_root", "upload", "write_bytes", "write_text"]
