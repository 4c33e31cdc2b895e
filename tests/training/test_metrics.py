"""training.metrics: the same numbers from 3 gloo ranks as from one process, checked against sklearn."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

from training.metrics import MetricAccumulator


def _data(num_labels, n=101, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, num_labels, generator=g), torch.randint(0, num_labels, (n,), generator=g)


def _single(num_labels):
    logits, labels = _data(num_labels)
    acc = MetricAccumulator(num_labels)
    for chunk in range(0, len(labels), 16):
        acc.update(logits[chunk:chunk + 16], labels[chunk:chunk + 16], float(chunk))
    return acc.compute()


def _worker(rank, world, port, num_labels, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        logits, labels = _data(num_labels)
        acc = MetricAccumulator(num_labels)
        mine = list(range(rank, len(labels), world))  # uneven shards: 34, 34, 33 rows
        for chunk in range(0, len(mine), 16):
            idx = mine[chunk:chunk + 16]
            acc.update(logits[idx], labels[idx], 0.0)
        result = acc.compute()
        out[rank] = result
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
@pytest.mark.parametrize("num_labels", [2, 4])
def test_distributed_metrics_equal_single_process(num_labels):
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(3, _free_port(), num_labels, out), nprocs=3, join=True)
    single = _single(num_labels)
    for rank in range(3):
        got = dict(out[rank])
        for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "confusion_matrix", "examples"):
            assert got[key] == pytest.approx(single[key]) if isinstance(got[key], float) else got[key] == single[key]
        if num_labels == 2:
            assert got["roc_auc"] == pytest.approx(single["roc_auc"])


@pytest.mark.parametrize("num_labels", [2, 4])
def test_metrics_match_sklearn(num_labels):
    logits, labels = _data(num_labels)
    got = _single(num_labels)
    preds = logits.argmax(-1).numpy()
    p, r, f, _ = precision_recall_fscore_support(labels.numpy(), preds, average="macro", zero_division=0)
    assert got["accuracy"] == pytest.approx(accuracy_score(labels.numpy(), preds))
    assert (got["precision_macro"], got["recall_macro"], got["f1_macro"]) == pytest.approx((p, r, f))
    assert got["confusion_matrix"] == confusion_matrix(labels.numpy(), preds, labels=list(range(num_labels))).tolist()
    if num_labels == 2:
        assert got["roc_auc"] == pytest.approx(roc_auc_score(labels.numpy(), torch.softmax(logits, -1)[:, 1].numpy()))
    assert got["loss"] == pytest.approx(sum(range(0, 101, 16)) / 101)


def test_500_classes_metrics_and_confusion_image_stay_bounded(tmp_path):
    """Issue 11: 1,250 labels held rank 0 for 9+ minutes at 8.9 GB drawing the confusion matrix."""
    import time

    from PIL import Image

    from training.metrics import ANNOTATE_MAX_LABELS, FIGURE_DPI, FIGURE_MAX_INCHES, confusion_figure

    started = time.monotonic()
    n = 500
    g = torch.Generator().manual_seed(1)
    acc = MetricAccumulator(n)
    for _ in range(10):
        acc.update(torch.randn(256, n, generator=g), torch.randint(0, n, (256,), generator=g), 0.0)
    metrics = acc.compute()
    assert metrics["examples"] == 2560 and len(metrics["confusion_matrix"]) == n
    figure = confusion_figure(metrics["confusion_matrix"], [f"label-{i}" for i in range(n)], "validation")
    assert len(figure.axes[0].texts) == 0  # no per-cell numbers at this size
    figure.savefig(tmp_path / "cm.png")
    width, height = Image.open(tmp_path / "cm.png").size
    assert max(width, height) <= (FIGURE_MAX_INCHES + 1) * FIGURE_DPI
    assert time.monotonic() - started < 60  # a generous guard; it takes about a second

    small = confusion_figure([[3, 1], [0, 4]], ["a", "b"], "small")
    assert len(small.axes[0].texts) == 4 and ANNOTATE_MAX_LABELS >= 2  # small matrices keep their numbers
