"""training.tracking.lineage: the model card that MLflow keeps with the model."""

from huggingface_hub import ModelCard

from conf import load_config
from tokenization.dataset import Manifest
from training.tracking.lineage import model_card
from training.tracking.tags import TAG_MANIFEST_HASH, TAG_SILVER_VERSION

MANIFEST = Manifest.from_dict({
    "source": {"table": "/lh/silver", "delta_version": 7}, "content_hash": "c0ffee", "max_length": 64,
    "tokenizer_path": "/lh/tokenizers/wp", "tokenizer_fingerprint": "f1", "label_map": {"ham": 0, "spam": 1},
    "splits": {"train": {"rows": 80}, "validation": {"rows": 10}, "test": {"rows": 10}}})
METRICS = {"validation": {"accuracy": 0.9, "examples": 10, "confusion_matrix": [[5, 0], [1, 4]]},
           "test": {"accuracy": 0.8, "examples": 10, "confusion_matrix": [[4, 1], [1, 4]]}}


def test_the_model_card_names_the_data_the_metrics_lineage_and_the_configured_license(tmp_path):
    cfg = load_config(overrides=[f"lakehouse.root={tmp_path}", "mlflow.model_license=apache-2.0"])
    card = ModelCard(model_card(cfg, MANIFEST, "/lh/tokenized/k/manifest.json", METRICS))  # what MLflow is given
    assert card.data.license == "apache-2.0" and card.data.pipeline_tag == "text-classification"
    assert card.data.base_model is None  # train.model=tiny is trained from scratch
    lakebert = card.data.to_dict()["lakebert"]
    assert lakebert["lineage"][TAG_SILVER_VERSION] == "7" and lakebert["lineage"][TAG_MANIFEST_HASH] == "c0ffee"
    assert lakebert["metrics"] == {"validation": {"accuracy": 0.9, "examples": 10}, "test": {"accuracy": 0.8, "examples": 10}}
    assert "silver table `/lh/silver`, Delta version 7" in card.text
    assert "tokenized dataset `/lh/tokenized/k/manifest.json` (content hash `c0ffee`): train 80, validation 10, test 10 rows" \
        in card.text
    assert "| accuracy | 0.9000 | 0.8000 |" in card.text and "labels (2): ham, spam" in card.text


def test_a_fine_tuned_models_card_names_its_base_model_and_the_default_license_is_unknown(tmp_path):
    cfg = load_config(overrides=[f"lakehouse.root={tmp_path}", "train.model=/models/distilbert-base-uncased"])
    card = ModelCard(model_card(cfg, MANIFEST, "/m.json", {}))
    assert card.data.base_model == "/models/distilbert-base-uncased" and card.data.license == "unknown"
    assert "fine-tuned from its pretrained weights" in card.text and "## Metrics" not in card.text
