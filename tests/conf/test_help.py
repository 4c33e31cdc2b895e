"""conf/help.py: `lakebert <command> --help` lists config keys with texts read from conf/schema.py."""

import re

import pytest
from pydantic import BaseModel

from conf.help import SECTIONS, check_sections, config_help, config_keys, first_sentence, format_value
from conf.schema import FINE_TUNING_DEFAULTS, FROM_SCRATCH_DEFAULTS, Config, NearDedupConfig, TrainConfig
from spark_jobs.registry import config_of, stages, steps

COMMAND_CONFIG = {name: config_of(name) for name in stages()}  # what `lakebert <command> --help` lists
STAGES = tuple(step.name for step in steps())

ROW = re.compile(r"^  (?P<key>\S+)\s+(?P<default>\S+)\s+(?P<meaning>.*)$")


def _sections(model=Config, path=""):
    """(path, model) of every section, nested ones included, found by walking the schema."""
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            yield f"{path}{name}", sub
            yield from _sections(sub, f"{path}{name}.")


def _keys():
    for path, model in _sections():
        for name, field in model.model_fields.items():
            if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
                yield f"{path}.{name}", field


def _row(text: str, key: str) -> dict:
    """The parsed line of `key` in a help text printed wide enough to need no wrapping."""
    rows = [m.groupdict() for m in map(ROW.match, text.splitlines()) if m and m["key"] == key]
    assert len(rows) == 1, f"{key} listed {len(rows)} times"
    return rows[0]


@pytest.mark.parametrize("key,field", list(_keys()), ids=[key for key, _ in _keys()])
def test_every_key_has_a_docstring_as_its_description(key, field):
    assert first_sentence(field.description), f"{key} has no docstring in conf/schema.py"


@pytest.mark.parametrize("path,model", list(_sections()), ids=[path for path, _ in _sections()])
def test_every_section_has_a_class_docstring_for_its_header(path, model):
    assert first_sentence(model.__doc__), f"{model.__name__} ({path}) has no class docstring"


def test_clean_help_lists_near_dedup_threshold_with_its_default_and_schema_meaning():
    row = _row(config_help(["clean"], width=400), "clean.near_dedup.threshold")
    meaning = first_sentence(NearDedupConfig.model_fields["threshold"].description)
    assert meaning and row["meaning"] == meaning
    assert row["default"] == "0.8" == format_value(NearDedupConfig().threshold)


def test_clean_help_includes_its_nested_sections_and_no_other_section():
    keys = config_keys(["clean"])
    assert {"clean.near_dedup.threshold", "clean.split.train", "clean.seed"} <= set(keys)
    assert all(key.startswith("clean.") for key in keys)


def test_defaults_are_written_as_a_user_types_them():
    assert [format_value(v) for v in (None, True, False, 0.8, 1 << 20, {}, "local[*]")] == \
        ["null", "true", "false", "0.8", "1048576", "{}", "local[*]"]
    assert format_value("null") == '"null"'  # a string that YAML would read as something else is quoted


@pytest.mark.parametrize("name", sorted(FINE_TUNING_DEFAULTS))
def test_model_dependent_train_defaults_show_null_and_both_values(name):
    assert TrainConfig.model_fields[name].default is None  # the validator fills it from the model
    row = _row(config_help([f"train.{name}"], width=400), f"train.{name}")
    assert row["default"] == "null"
    said = row["meaning"].partition("null = ")[2]
    for value in (FINE_TUNING_DEFAULTS[name], FROM_SCRATCH_DEFAULTS[name]):
        assert re.search(rf"(^|\s){re.escape(format_value(value))}\s", said), row["meaning"]


def test_help_fits_80_columns_except_single_unbreakable_words():
    for line in config_help(SECTIONS, width=80).splitlines():
        assert len(line) <= 80 or " " not in line.strip(), line


@pytest.mark.parametrize("name,message", [
    ("clen", r"unknown config section 'clen' \(sections: lakehouse, .*\); did you mean 'clean'\?"),
    ("clean.near_dedup.treshold", r"unknown config key 'clean.near_dedup.treshold' .*did you mean "
                                  r"'clean.near_dedup.threshold'\?"),
    ("tokenize.lowercase.x", r"tokenize.lowercase is a value, not a section"),
])
def test_unknown_section_or_key_is_a_one_line_error(name, message):
    with pytest.raises(ValueError, match=message):
        config_help([name])
    with pytest.raises(ValueError, match=message):
        check_sections(["clean", name])


def test_every_command_names_which_config_it_reads():
    assert set(COMMAND_CONFIG) == {"run", "ingest", "clean", "tokenize", "train", "audit", "score", "tune",
                                   "sample-data"}
    assert COMMAND_CONFIG["sample-data"] == ()


@pytest.mark.parametrize("command", sorted(COMMAND_CONFIG))
def test_cli_names_only_sections_and_keys_that_exist(command):
    assert check_sections(COMMAND_CONFIG[command]) == COMMAND_CONFIG[command]  # else ValueError


def test_run_reads_exactly_what_its_stages_read():
    stages = set().union(*(config_keys(COMMAND_CONFIG[stage]) for stage in STAGES))
    assert set(config_keys(COMMAND_CONFIG["run"])) == stages


def test_every_config_key_is_read_by_some_command():
    read = set().union(*(config_keys(sections) for sections in COMMAND_CONFIG.values()))
    assert {key for key, _ in _keys()} - read == set()
