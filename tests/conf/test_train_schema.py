"""conf/train_schema.py: model-aware training defaults."""

import pytest

from conf import load_config
from conf.train_schema import FINE_TUNING_DEFAULTS, FROM_SCRATCH_DEFAULTS


@pytest.mark.parametrize("model", ["tiny", "preset:small", "preset:bert-base"])
def test_from_scratch_models_get_from_scratch_defaults(model):
    train = load_config(overrides=[f"train.model={model}"]).train
    assert train.defaults_kind == "from-scratch" and not train.pretrained
    assert {k: getattr(train, k) for k in FROM_SCRATCH_DEFAULTS} == FROM_SCRATCH_DEFAULTS


@pytest.mark.parametrize("model", ["/models/distilbert-base-uncased", "bert-base-uncased"])
def test_pretrained_models_get_the_bert_papers_fine_tuning_defaults(model):
    train = load_config(overrides=[f"train.model={model}"]).train
    assert train.defaults_kind == "fine-tuning" and train.pretrained
    assert {k: getattr(train, k) for k in FINE_TUNING_DEFAULTS} == FINE_TUNING_DEFAULTS
    assert 2e-5 <= train.lr <= 5e-5


def test_explicit_settings_win_over_model_defaults(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  epochs: 7\n")
    train = load_config(config_file=file, overrides=["train.model=/m", "train.lr=1e-4"]).train
    assert train.lr == 1e-4 and train.epochs == 7
    assert train.warmup_ratio == FINE_TUNING_DEFAULTS["warmup_ratio"]


def test_resolved_defaults_survive_a_round_trip_through_plain_data():
    from conf import Config, config_dict

    cfg = load_config(overrides=["train.model=/m"])
    again = Config.model_validate(config_dict(cfg, redact=False))
    assert again.train.lr == FINE_TUNING_DEFAULTS["lr"] and again.train == cfg.train
