"""Scoring the `@champion` on this run's validation data, for the decision whether a newly
registered version takes the alias (`training.tracking.registry.champion_decision`).

    score = champion_score_fn(cfg, client, manifest, split, our_tokenizer, device)
    decision = champion_decision(client, "lakebert-classifier", "7", "champion", 0.93, "f1_macro",
                                 degenerate=False, champion_score=score)

The champion is scored on the same validation rows: with its own logged metric when it was
trained on the same tokenized data, else by loading it from the registry and evaluating it
here (`score_other_model`, which re-encodes the rows with its own tokenizer if it has another).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from conf import Config
from conf.schema import VALIDATION
from tokenization.dataset import Manifest
from training.confusion import metrics_from
from training.data import TokenizedSplit, collate
from training.tracking.tags import TAG_MANIFEST_HASH, TAG_TOKENIZER


def score_other_model(model, tokenizer, split: TokenizedSplit, our_tokenizer, label_map: dict[str, int],
                      same_tokenizer: bool, max_length: int, device: torch.device, batch_size: int) -> dict | None:
    """Metrics of another registered model (`transformers` components) on this run's split, in
    one process. Same tokenizer: the split's own ids. Another one: the rows are decoded with
    ours and re-encoded with its. None when its labels are not ours."""
    their = {str(label): int(i) for i, label in model.config.id2label.items()}
    if set(their) != set(label_map):
        return None
    order = [their[label] for label, _ in sorted(label_map.items(), key=lambda kv: kv[1])]  # our id -> theirs
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = list(split.rows(shuffle=False))
    if not same_tokenizer:
        texts = our_tokenizer.decode_batch([list(map(int, ids)) for ids, _ in rows], skip_special_tokens=True)
        encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        rows = [(ids, label) for ids, (_, label) in zip(encoded, rows)]
    confusion = torch.zeros(len(order), len(order), dtype=torch.long)
    loss_sum = 0.0
    model.to(device).eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in collate(rows[start:start + batch_size], pad).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            logits = logits[:, order]  # columns in our label ids
            loss_sum += float(F.cross_entropy(logits, batch["labels"], reduction="sum"))
            index = batch["labels"] * len(order) + logits.argmax(dim=-1)
            confusion += torch.bincount(index.cpu(), minlength=len(order) ** 2).view(len(order), len(order))
    return metrics_from(confusion.numpy(), loss_sum, torch.zeros(0).numpy(), torch.zeros(0).numpy())


def champion_score_fn(cfg: Config, client, manifest: Manifest, split: TokenizedSplit, our_tokenizer,
                      device: torch.device):
    """How to score the current champion (a model version) on this run's validation data."""
    metric = cfg.train.select_metric

    def score(version) -> float | None:
        import mlflow

        run = client.get_run(version.run_id)
        logged = run.data.metrics.get(f"{VALIDATION}/{metric}")
        if run.data.tags.get(TAG_MANIFEST_HASH) == manifest.content_hash and logged is not None:
            return logged
        components = mlflow.transformers.load_model(f"models:/{version.name}/{version.version}",
                                                    return_type="components")
        same = run.data.tags.get(TAG_TOKENIZER) == manifest.tokenizer_fingerprint
        metrics = score_other_model(components["model"], components["tokenizer"], split, our_tokenizer,
                                    manifest.label_map, same, manifest.max_length or 512, device,
                                    cfg.train.batch_size)
        return None if metrics is None else metrics[metric]

    return score
