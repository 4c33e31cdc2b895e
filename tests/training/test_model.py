"""training.model: tiny preset, BERT and DistilBERT from local directories, labels from the map."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification

from training.model import ModelError, build_model

LABELS = {"business": 0, "health": 1, "sports": 2}


def test_tiny_preset_takes_labels_from_the_label_map_and_uses_sdpa():
    model = build_model("tiny", LABELS, vocab_size=300)
    assert model.config.num_labels == 3 and model.config.id2label == {0: "business", 1: "health", 2: "sports"}
    assert model.config._attn_implementation == "sdpa"
    out = model(input_ids=torch.randint(0, 300, (2, 9)), attention_mask=torch.ones(2, 9, dtype=torch.long))
    assert out.logits.shape == (2, 3)


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_local_bert_and_distilbert_directories_load_with_new_head(tmp_path, kind):
    if kind == "bert":
        saved = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
                                                         num_attention_heads=2, intermediate_size=64, num_labels=2))
    else:
        saved = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=2,
                                                                     hidden_dim=64, num_labels=2))
    saved.save_pretrained(tmp_path / kind)
    model = build_model(str(tmp_path / kind), LABELS)
    assert model.config.model_type == kind and model.config.num_labels == 3
    assert model.config.label2id == LABELS
    assert model(input_ids=torch.randint(0, 100, (2, 5))).logits.shape == (2, 3)


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        build_model(str(tmp_path / "nope"), LABELS)


def test_label_ids_must_be_contiguous():
    with pytest.raises(ModelError, match="0..1"):
        build_model("tiny", {"a": 0, "b": 5}, vocab_size=10)


def test_presets_build_bert_base_and_distilbert_base_sizes_from_config():
    from training.model import non_embedding_parameters

    bert = build_model("preset:bert-base", {"a": 0, "b": 1}, vocab_size=1000)
    distil = build_model("preset:distilbert-base", {"a": 0, "b": 1}, vocab_size=1000)
    assert bert.config.model_type == "bert" and bert.config.num_hidden_layers == 12
    assert distil.config.model_type == "distilbert" and distil.config.n_layers == 6
    assert 84e6 < non_embedding_parameters(bert) < 87e6  # the 6N of the 524 MFLOPs/token estimate
    assert 42e6 < non_embedding_parameters(distil) < 44e6
