"""The data report: what clean and tokenize saw, drawn for a person to look at.

    lakebert clean      # _runs/clean/<id>/: report.json, labels_per_split.png, text_length_chars.png, removed_rows.png
    lakebert tokenize   # _runs/tokenize/<id>/token_lengths.png; the manifest names both stages' files
    lakebert train      # logs them as the MLflow run's artifacts data_report/clean/ and data_report/tokenize/

    from spark_jobs.data_report import clean_figures, render_png
    for name, figure in clean_figures(report).items():     # {"labels_per_split.png": Figure, ...}
        storage.write_bytes(storage.join(folder, name), render_png(figure))

The figures are pure functions of what the stages report (clean's `report.json` dict,
tokenize's `tokenization.dataset.Manifest`), so they are tested from small hand-written ones. Each is a `matplotlib.figure.Figure`
drawn with the Agg canvas: no pyplot, no global state, no display needed. Bounded for any
number of labels: tick labels are written only up to `TICK_LABELS_MAX`, and a figure is at most
`FIGURE_MAX_INCHES` wide.

How tokenize finds clean's report: clean records its run folder in the silver table property
`REPORT_PROPERTY`, in the same ALTER TABLE as its state, so the Delta commit that ends a clean
run names its report. `clean_report_dir` reads it from the table's history as of the silver
version tokenize reads, so an older `tokenize.silver_version` gets the report of the clean run
that wrote that version.
"""

from __future__ import annotations

import io
import json
import math

from conf.schema import SPLITS
from tokenization.dataset import Manifest

REPORT_PROPERTY = "lakebert.clean.report_dir"
# File names of a report, under `_runs/<stage>/<stage_run_id>/`.
REPORT_JSON = "report.json"
LABELS_PER_SPLIT = "labels_per_split.png"
TEXT_LENGTHS = "text_length_chars.png"
REMOVED_ROWS = "removed_rows.png"
TOKEN_LENGTHS = "token_lengths.png"
CLEAN_FILES = (REPORT_JSON, LABELS_PER_SPLIT, TEXT_LENGTHS, REMOVED_ROWS)
TOKENIZE_FILES = (TOKEN_LENGTHS,)

# Character lengths span 10 to 100,000 (clean.min_chars to clean.max_chars) and are heavy-tailed:
# fixed-width bins put nearly every row into the first bin or two. Log-spaced bins, 10 per
# decade (each ~26% wider than the last), keep short and long texts readable on one axis.
CHAR_BINS_PER_DECADE = 10
# Token lengths run to tokenize.max_length (up to 1,000,000): one bar per length up to this many
# bars, wider bars above. The bar at max_length holds the truncated rows (and only them when the
# bar width divides max_length, as it always does up to TOKEN_BARS_MAX).
TOKEN_BARS_MAX = 128
TICK_LABELS_MAX = 60
FIGURE_MAX_INCHES = 16.0
FIGURE_DPI = 100
MAX_LENGTH_COLOR = "tab:red"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(min(FIGURE_MAX_INCHES, width), height), dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(figure)  # the figure draws with Agg, whatever backend pyplot would pick
    return figure


def render_png(figure) -> bytes:
    """The figure as PNG bytes (Agg), ready for `storage.write_bytes`."""
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=FIGURE_DPI)
    return out.getvalue()


def report_images(figures, data: dict) -> tuple[dict[str, bytes], list[str]]:
    """`figures(data)` ({file name: Figure}) as {file name: PNG bytes}, and the warnings. Drawn
    with matplotlib's maths text off, so a label such as `$x^$` is text, not a TeX error; an
    image that still cannot be drawn is a warning, never a failed stage (the JSON report stays)."""
    import matplotlib

    try:
        with matplotlib.rc_context({"text.parse_math": False}):
            return {name: render_png(figure) for name, figure in figures(data).items()}, []
    except Exception as exc:  # noqa: BLE001 - a picture is never worth failing the stage
        return {}, [f"the data report's images could not be drawn: {type(exc).__name__}: {exc}"]


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes)


def _whole_rows(axis) -> None:
    """Ticks at whole numbers only on an axis of row counts (no "0.25 rows")."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


# --------------------------------------------------------------------------- clean

def labels_figure(labels_per_split: dict[str, dict[str, int]]):
    """Rows per label, one bar chart per split (train, validation, test), the same labels in the
    same order on each, so the splits' distributions compare at a glance."""
    splits = [s for s in SPLITS if s in labels_per_split] + sorted(set(labels_per_split) - set(SPLITS))
    labels = sorted({label for counts in labels_per_split.values() for label in counts})
    named = len(labels) <= TICK_LABELS_MAX
    figure = _figure(max(6.0, 0.35 * len(labels) + 2.0), 2.4 * max(1, len(splits)) + 0.8)
    figure.suptitle("Label distribution per split (silver rows)" if named else
                    f"Label distribution per split (silver rows): {len(labels):,} labels, names in {REPORT_JSON}")
    axes = figure.subplots(max(1, len(splits)), 1, sharex=True, squeeze=False)[:, 0]
    for ax, split in zip(axes, splits):
        counts = labels_per_split[split]
        ax.bar(range(len(labels)), [counts.get(label, 0) for label in labels], color="tab:blue")
        ax.set_title(f"{split}: {sum(counts.values()):,} rows")
        ax.set_ylabel("rows")
        _whole_rows(ax.yaxis)
    if not splits:
        _no_data(axes[0], "silver rows")
    if named and labels:
        axes[-1].set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes[-1].set_xlabel("label" if named else "label (position in name order)")
    return figure


def char_length_figure(histogram: dict):
    """Silver rows by text length in characters, on log-spaced bins (`char_length_bins`)."""
    figure = _figure(7.0, 4.0)
    ax = figure.add_subplot()
    edges, counts = histogram.get("edges", []), histogram.get("counts", [])
    if counts:
        ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges, edges[1:])], align="edge",
               color="tab:blue", edgecolor="white", linewidth=0.5)
        ax.set_xscale("log")
    else:
        _no_data(ax, "silver rows")
    ax.set_title(f"Text length of silver rows ({sum(counts):,} rows, {CHAR_BINS_PER_DECADE} bins per decade)")
    ax.set_xlabel("characters per row (log scale)")
    ax.set_ylabel("rows")
    _whole_rows(ax.yaxis)
    return figure


def char_length_bins(bucket_counts: dict[int, int], bins_per_decade: int = CHAR_BINS_PER_DECADE) -> dict:
    """{bucket: rows}, bucket = floor(log10(chars) * bins_per_decade), -> contiguous bins:
    `edges` (characters; bin i is [edges[i], edges[i+1])) and `counts`, empty buckets included."""
    if not bucket_counts:
        return {"bins_per_decade": bins_per_decade, "edges": [], "counts": []}
    first, last = min(bucket_counts), max(bucket_counts)
    edges = [round(10 ** (b / bins_per_decade), 3) for b in range(first, last + 2)]
    return {"bins_per_decade": bins_per_decade, "edges": edges,
            "counts": [bucket_counts.get(b, 0) for b in range(first, last + 1)]}


def _count_bars(ax, counts: dict[str, int], title: str, what: str) -> None:
    """Horizontal bars (reason names are long), largest first."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if ordered:
        ax.barh(range(len(ordered)), [n for _, n in ordered], color="tab:orange")
        ax.set_yticks(range(len(ordered)), [name for name, _ in ordered])
        ax.invert_yaxis()
    else:
        _no_data(ax, what)
    ax.set_title(f"{title}: {sum(counts.values()):,} rows")
    ax.set_xlabel("rows")
    _whole_rows(ax.xaxis)


def removed_rows_figure(quarantined_by_reason: dict[str, int], duplicates_by_kind: dict[str, int],
                        quarantine_table: dict[str, dict[str, int]] | None = None):
    """The rows clean took out of this run's batch (quarantined by reason, duplicates by kind)
    and, when given, the whole quarantine table by stage and reason: ingest's rejects (invalid
    UTF-8, a missing label, ...) never reach clean, but are quarantined all the same."""
    table = {f"{stage}: {reason}": n for stage, reasons in sorted((quarantine_table or {}).items())
             for reason, n in reasons.items()}
    panels = 2 + (quarantine_table is not None)
    figure = _figure(5.5 * panels, 0.4 * max(3, len(quarantined_by_reason), len(duplicates_by_kind), len(table)) + 1.6)
    figure.suptitle("Rows removed by clean (this run's batch)"
                    + (", and the quarantine table (every stage and run)" if panels == 3 else ""))
    axes = figure.subplots(1, panels)
    quarantine, duplicates = axes[:2]
    _count_bars(quarantine, quarantined_by_reason, "quarantined by reason", "rows quarantined")
    quarantine.set_ylabel("reason")
    _count_bars(duplicates, duplicates_by_kind, "duplicates by kind", "duplicates found")
    duplicates.set_ylabel("duplicate of an earlier row")
    if panels == 3:
        _count_bars(axes[2], table, "quarantine table", "rows in the quarantine table")
        axes[2].set_ylabel("stage: reason")
    return figure


def clean_figures(report: dict) -> dict[str, object]:
    """clean's report.json -> {file name: Figure}."""
    return {
        LABELS_PER_SPLIT: labels_figure(report.get("labels_per_split", {})),
        TEXT_LENGTHS: char_length_figure(report.get("text_length_histogram", {})),
        REMOVED_ROWS: removed_rows_figure(report.get("quarantined_by_reason", {}),
                                          report.get("duplicates_by_kind", {}), report.get("quarantine_table")),
    }


# --------------------------------------------------------------------------- tokenize

def token_length_bars(histogram: dict[int, int], max_length: int) -> tuple[int, dict[int, int]]:
    """{tokens: rows} -> (bar width, {first length of the bar: rows}). A bar covers `width`
    lengths from a multiple of `width`, so max_length, when a multiple, is a bar of its own."""
    width = max(1, math.ceil(max_length / TOKEN_BARS_MAX))
    bars: dict[int, int] = {}
    for length, rows in histogram.items():
        start = int(length) // width * width
        bars[start] = bars.get(start, 0) + rows
    return width, dict(sorted(bars.items()))


def token_length_figure(manifest: Manifest):
    """Rows by token length (special tokens included), one chart per split, with a vertical line
    at tokenize.max_length: the rows there were cut to it (`truncated`)."""
    max_length = manifest.max_length
    stats = manifest.splits
    splits = [s for s in SPLITS if s in stats] + sorted(set(stats) - set(SPLITS))
    removed = manifest.cross_split_duplicates
    figure = _figure(8.0, 2.4 * max(1, len(splits)) + 0.8)
    figure.suptitle(f"Token length per split (tokenize.max_length = {max_length:,})")
    axes = figure.subplots(max(1, len(splits)), 1, sharex=True, squeeze=False)[:, 0]
    for ax, split in zip(axes, splits):
        s = stats[split]
        width, bars = token_length_bars({int(k): v for k, v in s.length_histogram.items()}, max_length)
        # Bar i covers the lengths [start, start + width - 1]; an integer length l is drawn on [l - 0.5, l + 0.5].
        ax.bar([start + (width - 1) / 2 for start in bars], list(bars.values()), width=width, color="tab:blue")
        truncated, rows = s.truncated, s.rows
        ax.axvline(max_length, color=MAX_LENGTH_COLOR, linestyle="--",
                   label=f"max_length {max_length:,}: {truncated:,} rows truncated ({truncated / max(rows, 1):.0%})")
        ax.legend(loc="best", fontsize="small")
        title = f"{split}: {rows:,} rows"
        if removed.get(split):
            title += f", {removed[split]:,} removed (same token ids as an earlier row in another split)"
        ax.set_title(title)
        ax.set_ylabel("rows")
        _whole_rows(ax.yaxis)
    if not splits:
        _no_data(axes[0], "tokenized rows")
    axes[-1].set_xlabel("tokens per row (special tokens included)")
    return figure


def tokenize_figures(manifest: Manifest) -> dict[str, object]:
    """The tokenized dataset's manifest -> {file name: Figure}."""
    return {TOKEN_LENGTHS: token_length_figure(manifest)}


# --------------------------------------------------------------------------- where clean's report is

def clean_report_dir(spark, silver, version: int) -> str | None:
    """The report folder of the clean run that wrote `silver` (a `spark_jobs.tables.Table`) as of
    `version`: the newest `REPORT_PROPERTY` set at or before it. None when there is none (silver
    cleaned before reports were recorded) or the history cannot be read."""
    try:
        return report_dir_in(silver.history(spark), version)
    except Exception:  # noqa: BLE001 - a report is never worth failing the stage
        return None


def report_dir_in(history: list[dict], version: int) -> str | None:
    """`clean_report_dir` over history rows already read (`Table.history`)."""
    for commit in sorted(history, key=lambda c: c["version"], reverse=True):
        if commit["version"] <= version and commit["operation"] == "SET TBLPROPERTIES":
            try:
                found = json.loads(commit["properties"] or "{}").get(REPORT_PROPERTY)
            except json.JSONDecodeError:
                continue
            if found:
                return found
    return None
