"""Delta tables by role (bronze, silver, quarantine, label_map): path-based or metastore names.

A `tables.<role>` value that is a plain name (`bronze`) or a relative path is a Delta table
under `lakehouse.root`; an absolute path or URI is used as is; a dotted name
(`catalog.schema.table`, `schema.table`) is a metastore table. Both kinds support the same
operations here, so stages never branch on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from conf import Config
from conf.paths import is_uri, join_path, resolve_root

BRONZE = "bronze"
SILVER = "silver"
QUARANTINE = "quarantine"
LABEL_MAP = "label_map"


@dataclass(frozen=True)
class Table:
    role: str
    location: str
    """A filesystem path/URI, or a metastore name."""
    is_path: bool

    def __str__(self) -> str:
        return self.location

    @property
    def sql_ref(self) -> str:
        return f"delta.`{self.location}`" if self.is_path else self.location

    def exists(self, spark) -> bool:
        from delta.tables import DeltaTable

        if self.is_path:
            return DeltaTable.isDeltaTable(spark, self.location)
        return spark.catalog.tableExists(self.location)

    def delta(self, spark):
        from delta.tables import DeltaTable

        if self.is_path:
            return DeltaTable.forPath(spark, self.location)
        return DeltaTable.forName(spark, self.location)

    def read(self, spark, version: int | None = None):
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.location) if self.is_path else reader.table(self.location)

    def read_inserts(self, spark, start_version: int, end_version: int):
        """Rows inserted between two versions (inclusive), from the Change Data Feed."""
        reader = (
            spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", start_version)
            .option("endingVersion", end_version)
        )
        changes = reader.load(self.location) if self.is_path else reader.table(self.location)
        return changes.where("_change_type = 'insert'").drop("_change_type", "_commit_version", "_commit_timestamp")

    def version(self, spark) -> int:
        return int(self.delta(spark).history(1).select("version").first()[0])

    def properties(self, spark) -> dict[str, str]:
        detail = self.delta(spark).detail().select("properties").first()[0]
        return dict(detail or {})

    def set_properties(self, spark, props: dict[str, str]) -> None:
        pairs = ", ".join(f"'{k}' = '{v}'" for k, v in props.items())
        spark.sql(f"ALTER TABLE {self.sql_ref} SET TBLPROPERTIES ({pairs})")

    def insert_new(self, spark, rows, key: str) -> int:
        """MERGE the rows whose `key` the table lacks; return how many were inserted."""
        result = (
            self.delta(spark).alias("t")
            .merge(rows.alias("s"), f"t.{key} = s.{key}")
            .whenNotMatchedInsertAll()
            .execute()
        )
        return int(result.first()["num_inserted_rows"])

    def create_if_missing(self, spark, schema, properties: dict[str, str] | None = None) -> None:
        # SQL rather than DeltaTableBuilder: the builder's tableName() rejects 3-part names.
        columns = ", ".join(
            f"`{f.name}` {f.dataType.simpleString()}{'' if f.nullable else ' NOT NULL'}" for f in schema.fields)
        props = ", ".join(f"'{k}' = '{v}'" for k, v in (properties or {}).items())
        spark.sql(f"CREATE TABLE IF NOT EXISTS {self.sql_ref} ({columns}) USING DELTA"
                  + (f" TBLPROPERTIES ({props})" if props else ""))


def resolve_table(cfg: Config, role: str) -> Table:
    value = getattr(cfg.tables, role)
    if is_uri(value) or value.startswith("/"):
        return Table(role, value, True)
    if "/" in value or "." not in value:
        return Table(role, join_path(resolve_root(cfg), value), True)
    return Table(role, value, False)


def runs_dir(cfg: Config, stage: str, run_id: str) -> str:
    """Where a stage run's resolved config, summary and report are saved."""
    return join_path(resolve_root(cfg), "_runs", stage, run_id)
