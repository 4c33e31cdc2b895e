import pytest

from conf import ConfigError, load_config
from conf.identifiers import parse_table_name, quote_identifier, quote_table_name

# Reported in issue 11: each went into spark.sql unquoted, or passed validation unchanged.
INJECTIONS = [
    "default.evil USING parquet AS SELECT 'pwned' AS a --",
    "main.x; DROP TABLE y",
    "`main`.`x`; DROP TABLE y",
    "a.b.c.d",
    "x' OR '1'='1",
    "main.`unclosed",
    "main..x",
    "1abc.t",
]


def test_quote_identifier_wraps_in_backticks_and_doubles_embedded_ones():
    assert quote_identifier("text") == "`text`"
    assert quote_identifier("my col.v2") == "`my col.v2`"
    assert quote_identifier("a`b") == "`a``b`"
    with pytest.raises(ValueError):
        quote_identifier("a\nb")


@pytest.mark.parametrize("name, parts", [
    ("bronze", ["bronze"]),
    ("lakebert.silver", ["lakebert", "silver"]),
    ("main.lakebert.silver", ["main", "lakebert", "silver"]),
    ("main.`my-schema`.`silver v2`", ["main", "my-schema", "silver v2"]),
    ("`we``ird`.t", ["we`ird", "t"]),
    ("`a.b`.c", ["a.b", "c"]),
])
def test_table_names_of_one_to_three_plain_or_back_quoted_parts_parse(name, parts):
    assert parse_table_name(name) == parts
    assert parse_table_name(quote_table_name(parts)) == parts  # quoting round-trips


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_strings_in_table_names_are_one_line_config_errors(value):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[f"tables.bronze={value}"])
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"config error: tables.bronze={value!r} (from --set)")
    assert "one to three dot-separated parts" in msg


def test_paths_and_uris_stay_paths_and_are_not_parsed_as_names():
    cfg = load_config(overrides=["tables.bronze=/data/lake/bronze v1", "tables.silver=s3a://bucket/lake/silver",
                                 "tables.quarantine=tables/quarantine"])
    assert cfg.tables.bronze == "/data/lake/bronze v1"
    with pytest.raises(ConfigError, match="control characters"):
        load_config(overrides=["tables.bronze=/data/x\n`; DROP TABLE y"])


def test_delta_source_table_name_is_validated_like_table_names():
    assert load_config(overrides=["ingest.format=delta", "ingest.source=main.raw.reviews"]).ingest.source
    with pytest.raises(ConfigError, match=r"ingest.source=.*one to three"):
        load_config(overrides=["ingest.format=delta", "ingest.source=main.raw; DROP TABLE x"])
