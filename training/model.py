"""Sequence-classification models: a hub name, a local directory, or the offline `tiny` preset.

    from training.model import build_model
    model = build_model("tiny", label_map={"neg": 0, "pos": 1}, vocab_size=8000)
    model = build_model("/models/distilbert-base-uncased", label_map)   # save_pretrained layout

`num_labels`, `id2label` and `label2id` come from the tokenized data's label map. A
pretrained checkpoint's own classification head is replaced when its labels differ. Attention
uses PyTorch's scaled-dot-product kernels (SDPA).
"""

from __future__ import annotations


from conf.schema import PRESET, PRESET_NAMES, TINY, model_name_problem

# Small enough to train in seconds on a laptop CPU, big enough to beat the majority class.
TINY_CONFIG = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                   max_position_embeddings=512, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
# Architectures built from config with random weights (offline; benchmarks, smoke tests):
# `train.model=preset:<name>`. The base sizes are BERT-base's and DistilBERT-base's.
PRESETS = {
    "small": ("bert", dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)),
    "bert-base": ("bert", {}),
    "distilbert-base": ("distilbert", {}),
}
assert tuple(PRESETS) == PRESET_NAMES, "conf.schema.PRESET_NAMES names the presets the config accepts"
ATTENTION = "sdpa"


class ModelError(ValueError):
    """The model cannot be built; one line for the user."""


def _labels(label_map: dict[str, int]) -> dict:
    ids = sorted(label_map.values())
    if ids != list(range(len(ids))):
        raise ModelError(f"label ids must be 0..{len(ids) - 1}, got {ids}")
    id2label = {i: label for label, i in label_map.items()}
    return {"num_labels": len(ids), "id2label": id2label, "label2id": dict(label_map)}


def build_model(name_or_path: str, label_map: dict[str, int], vocab_size: int | None = None):
    from transformers import AutoModelForSequenceClassification, BertConfig

    problem = model_name_problem(name_or_path)
    if problem:
        raise ModelError(problem)
    labels = _labels(label_map)
    if name_or_path.startswith(PRESET):
        return _preset(name_or_path[len(PRESET):], labels, vocab_size)
    if name_or_path == TINY:
        if not vocab_size:
            raise ModelError("train.model=tiny needs the tokenizer's vocab_size")
        config = BertConfig(vocab_size=vocab_size, **TINY_CONFIG, **labels)
        return AutoModelForSequenceClassification.from_config(config, attn_implementation=ATTENTION)
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            name_or_path, attn_implementation=ATTENTION, ignore_mismatched_sizes=True, **labels)
    except OSError as exc:
        raise ModelError(f"could not load model {name_or_path!r}: {str(exc).splitlines()[0][:200]}; "
                         "offline, give a local save_pretrained directory or use train.model=tiny") from None


def _preset(name: str, labels: dict, vocab_size: int | None):
    from transformers import AutoModelForSequenceClassification, BertConfig, DistilBertConfig

    if not vocab_size:
        raise ModelError(f"train.model={PRESET}{name} needs the tokenizer's vocab_size")
    kind, sizes = PRESETS[name]
    config_class = BertConfig if kind == "bert" else DistilBertConfig
    config = config_class(vocab_size=vocab_size, **sizes, **labels)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation=ATTENTION)


def non_embedding_parameters(model) -> int:
    """N in the 6N FLOPs-per-token rule: every parameter outside the embedding tables."""
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
