"""conf/tune_schema.py: the tune search space, from files and inline."""

import pytest

from conf import load_config

README_SPACE = """
tune:
  trials: 8
  space:
    lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}
    batch_size: {type: categorical, choices: [16, 32]}
    warmup_ratio: {type: uniform, low: 0.0, high: 0.2}
    epochs: {type: int, low: 1, high: 3}
"""


def test_the_readmes_tune_space_loads_from_a_config_file(tmp_path):
    file = tmp_path / "tune.yaml"
    file.write_text(README_SPACE)
    space = load_config(config_file=file).tune.space
    assert list(space) == ["lr", "batch_size", "warmup_ratio", "epochs"]
    assert (space["lr"].type, space["lr"].low, space["lr"].high) == ("loguniform", 1e-5, 1e-3)
    assert space["batch_size"].choices == [16, 32] and space["epochs"].values() == [1, 3]


def test_a_space_entry_can_be_set_inline_or_key_by_key():
    inline = load_config(overrides=["tune.space.lr={type: loguniform, low: 1.0e-5, high: 1.0e-3}"]).tune.space
    by_key = load_config(overrides=["tune.space.lr.type=loguniform", "tune.space.lr.low=1e-5",
                                    "tune.space.lr.high=1e-3"]).tune.space
    assert inline == by_key and inline["lr"].low == 1e-5


@pytest.mark.parametrize("entry, message", [
    ("tune.space.warmup_ratio={type: uniform, low: 0.0, high: 1.5}", "1.5 is not a valid train.warmup_ratio"),
    ("tune.space.lr={type: loguniform, low: 0, high: 1.0e-3}", "needs low > 0"),
    ("tune.space.lr={type: int, low: 1, high: 3}", "does not fit train.lr, which is float"),
    ("tune.space.class_weights={type: categorical, choices: [balanced, equal]}", "'equal' is not a valid"),
    ("tune.space.num_processes={type: int, low: 1, high: 4}", "not a train key a study can vary"),
    ("tune.space.lr={type: categorical}", "needs a non-empty `choices` list"),
])
def test_a_space_that_cannot_work_is_a_one_line_config_error(entry, message):
    from conf.loader import ConfigError

    with pytest.raises(ConfigError, match=message) as info:
        load_config(overrides=[entry])
    assert "\n" not in str(info.value)


INLINE_BOMB = "{" + ", ".join(["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
                              + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 6)]) + "}"


@pytest.mark.parametrize("entry, message", [
    ("tune.space.lr={type: loguniform, low: [1",
     r"tune.space.lr='\{type: loguniform, low: \[1' \(from --set\): not valid YAML: expected ',' or '\]'"),
    ("tune.space.batch_size.choices=[16, 32", r"tune.space.batch_size: not valid YAML: .* \(from --set\)$"),
    (f"tune.space.lr={INLINE_BOMB}", r"tune.space.lr='\{l0: .* \(from --set\): holds more than 10,000 values"),
    ("tune.space.lr=!!python/object/apply:os.system [true]", "could not determine a constructor for the tag"),
], ids=["flow mapping", "key by key", "alias bomb", "python tag"])
def test_an_inline_space_entry_that_is_not_yaml_is_a_one_line_config_error_naming_key_and_layer(entry, message):
    from conf.loader import ConfigError

    with pytest.raises(ConfigError, match=message) as info:
        load_config(overrides=[entry])
    assert "\n" not in str(info.value)


def test_pruner_none_means_never_prune_in_yaml_and_on_the_command_line(tmp_path):
    file = tmp_path / "t.yaml"
    file.write_text("tune:\n  pruner: none\n")
    assert load_config(config_file=file).tune.pruner is None
    assert load_config(overrides=["tune.pruner=none"]).tune.pruner is None
    assert load_config().tune.pruner == "median"
