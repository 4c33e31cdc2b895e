"""Classification metrics computed over all ranks, not rank 0's shard alone.

    acc = MetricAccumulator(num_labels)
    acc.update(logits, labels, loss_sum)          # on each rank, for each eval batch
    metrics = acc.compute()                       # all-reduced / all-gathered when distributed

Each rank keeps a confusion matrix, the summed loss and (for binary tasks) the positive-class
scores. `compute()` sums the matrices and losses across ranks and gathers the scores, so every
rank gets the metrics of the whole evaluation set, identical to a single process over the
same rows.

Many classes stay cheap: the matrix is a (labels x labels) integer array (500 labels: 250,000
cells), and its image is bounded (`confusion_figure`): numbers in the cells and tick labels
only up to `ANNOTATE_MAX_LABELS` / `TICK_LABELS_MAX`, a figure of at most `FIGURE_MAX_INCHES`.
The unbounded version (a 750-inch figure with 1.5 million text artists for 1,250 labels)
held rank 0 for minutes at 9 GB.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from training.confusion import metrics_from


ANNOTATE_MAX_LABELS = 30
"""Write each cell's count into the image up to this many labels."""
TICK_LABELS_MAX = 60
"""Name every row and column up to this many labels; above, the axes show indices only."""
FIGURE_MAX_INCHES = 16.0
FIGURE_DPI = 100


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class MetricAccumulator:
    def __init__(self, num_labels: int):
        self.num_labels = num_labels
        self.confusion = torch.zeros(num_labels, num_labels, dtype=torch.long)
        self.loss_sum = torch.zeros((), dtype=torch.float64)
        self.scores: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss_sum: torch.Tensor | float) -> None:
        logits, labels = logits.detach().float().cpu(), labels.detach().cpu()
        preds = logits.argmax(dim=-1)
        index = labels * self.num_labels + preds
        self.confusion += torch.bincount(index, minlength=self.num_labels ** 2).view(self.num_labels, self.num_labels)
        self.loss_sum += float(loss_sum)
        if self.num_labels == 2:
            self.scores.append(torch.softmax(logits, dim=-1)[:, 1].double())
            self.targets.append(labels)

    def compute(self) -> dict:
        confusion, loss_sum = self.confusion.clone(), self.loss_sum.clone()
        scores = torch.cat(self.scores) if self.scores else torch.zeros(0, dtype=torch.float64)
        targets = torch.cat(self.targets) if self.targets else torch.zeros(0, dtype=torch.long)
        if _distributed():
            dist.all_reduce(confusion)
            dist.all_reduce(loss_sum)
            if self.num_labels == 2:
                scores, targets = _all_gather_1d(scores), _all_gather_1d(targets)
        return metrics_from(confusion.numpy(), float(loss_sum), scores.numpy(), targets.numpy())


def _all_gather_1d(t: torch.Tensor) -> torch.Tensor:
    """Gather tensors of different lengths from every rank."""
    size = torch.tensor([t.numel()], dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=t.dtype)
    padded[:t.numel()] = t
    out = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(out, padded)
    return torch.cat([o[:int(s.item())] for o, s in zip(out, sizes)])


def png_bytes(figure) -> bytes:
    """A matplotlib figure as PNG bytes."""
    import io

    image = io.BytesIO()
    figure.savefig(image, format="png")
    return image.getvalue()


def confusion_figure(matrix: list[list[int]], labels: list[str], title: str):
    """The confusion matrix as a matplotlib figure (rows: true label, columns: predicted).

    Bounded for any number of labels: at most FIGURE_MAX_INCHES square (1,600 px at
    FIGURE_DPI), counts written only up to ANNOTATE_MAX_LABELS, tick labels only up to
    TICK_LABELS_MAX. Above that it is a heat map of row-normalized recall, which is what
    can still be read at that size; the exact counts are in the JSON beside it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    values = np.asarray(matrix)
    n = len(labels)
    size = min(FIGURE_MAX_INCHES, max(3.0, 0.6 * n + 1.5))
    fig = Figure(figsize=(min(FIGURE_MAX_INCHES + 1, size + 1), size), dpi=FIGURE_DPI)
    ax = fig.add_subplot()
    annotate = n <= ANNOTATE_MAX_LABELS
    if annotate:
        shown = values
    else:
        rows = values.sum(axis=1, keepdims=True)
        shown = np.divide(values, rows, out=np.zeros(values.shape, dtype=float), where=rows > 0)
        title = f"{title}: {n} labels, row-normalized (counts in the JSON)"
    image = ax.imshow(shown, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax)
    if n <= TICK_LABELS_MAX:
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if annotate:
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, str(value), ha="center", va="center",
                    color="white" if value > values.max() / 2 else "black")
    fig.tight_layout()
    return fig
