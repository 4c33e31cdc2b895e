"""spark_jobs.data_report: the figures' content, read back from the Figure objects, and their PNGs."""

import pytest

from spark_jobs.data_report import (
    LABELS_PER_SPLIT, REMOVED_ROWS, TEXT_LENGTHS, TICK_LABELS_MAX, TOKEN_BARS_MAX, TOKEN_LENGTHS, char_length_bins,
    clean_figures, render_png, report_images, token_length_bars, tokenize_figures,
)
from tokenization.dataset import Manifest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CLEAN_REPORT = {
    "quarantined_by_reason": {"label_conflict": 2, "too_short": 7},
    "duplicates_by_kind": {"exact": 5},
    "labels_per_split": {"train": {"ham": 30, "spam": 10}, "validation": {"ham": 4}, "test": {"ham": 3, "spam": 1}},
    "text_length_chars": {"min": 12, "max": 900},
    "text_length_histogram": char_length_bins({10: 3, 12: 20, 29: 1}),
}

MANIFEST = Manifest.from_dict({
    "max_length": 8,
    "splits": {
        "train": {"rows": 6, "truncated": 2, "length_histogram": {"3": 1, "5": 3, "8": 2}},
        "validation": {"rows": 2, "truncated": 0, "length_histogram": {"4": 2}},
    },
    "cross_split_duplicates": {"validation": 1, "test": 0},
})


def _bars(ax):
    return [(p.get_x(), p.get_width(), p.get_height()) for p in ax.patches]


def test_labels_figure_has_one_bar_per_label_in_every_split_with_its_row_count():
    figure = clean_figures(CLEAN_REPORT)[LABELS_PER_SPLIT]
    axes = figure.axes
    assert [ax.get_title() for ax in axes] == ["train: 40 rows", "validation: 4 rows", "test: 4 rows"]
    assert [[h for _, _, h in _bars(ax)] for ax in axes] == [[30, 10], [4, 0], [3, 1]]  # ham, spam everywhere
    assert all(ax.get_ylabel() == "rows" for ax in axes) and axes[-1].get_xlabel() == "label"
    assert [t.get_text() for t in axes[-1].get_xticklabels()] == ["ham", "spam"]
    assert "Label distribution per split" in figure.get_suptitle()


def test_labels_figure_names_no_ticks_beyond_the_limit_and_says_where_the_names_are():
    many = {"train": {f"label{i:04d}": 1 for i in range(TICK_LABELS_MAX + 1)}}
    figure = clean_figures({"labels_per_split": many})[LABELS_PER_SPLIT]
    assert len(figure.axes[0].patches) == TICK_LABELS_MAX + 1
    assert not any(t.get_text().startswith("label") for t in figure.axes[0].get_xticklabels())
    assert figure.axes[0].get_xlabel() == "label (position in name order)"
    assert f"{TICK_LABELS_MAX + 1} labels, names in report.json" in figure.get_suptitle()


def test_char_length_bins_are_log_spaced_and_contiguous_with_empty_bins_kept():
    bins = char_length_bins({10: 3, 12: 20})  # 10 bins per decade: [10, 12.589), ..., [15.849, 19.953)
    assert bins["edges"] == [10.0, 12.589, 15.849, 19.953]
    assert bins["counts"] == [3, 0, 20]
    assert char_length_bins({}) == {"bins_per_decade": 10, "edges": [], "counts": []}


def test_text_length_figure_draws_the_bins_on_a_log_axis():
    ax = clean_figures(CLEAN_REPORT)[TEXT_LENGTHS].axes[0]
    bars = _bars(ax)
    assert [h for _, _, h in bars] == CLEAN_REPORT["text_length_histogram"]["counts"]
    assert bars[0][0] == 10.0 and bars[-1][0] + bars[-1][1] == pytest.approx(1000.0)
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "characters per row (log scale)" and ax.get_ylabel() == "rows"
    assert ax.get_title().startswith("Text length of silver rows (24 rows")


def test_removed_rows_figure_shows_quarantine_reasons_and_duplicate_kinds_largest_first():
    quarantine, duplicates = clean_figures(CLEAN_REPORT)[REMOVED_ROWS].axes
    assert quarantine.get_title() == "quarantined by reason: 9 rows"
    assert [w for _, w, _ in _bars(quarantine)] == [7, 2]  # horizontal bars: the width is the count
    assert [t.get_text() for t in quarantine.get_yticklabels()] == ["too_short", "label_conflict"]
    assert quarantine.get_xlabel() == "rows" and quarantine.get_ylabel() == "reason"
    assert duplicates.get_title() == "duplicates by kind: 5 rows"
    assert [w for _, w, _ in _bars(duplicates)] == [5]


def test_removed_rows_figure_adds_the_quarantine_table_by_stage_and_reason():
    report = {**CLEAN_REPORT, "quarantine_table": {"clean": {"too_short": 7}, "ingest": {"empty_text": 3, "nul_byte": 1}}}
    figure = clean_figures(report)[REMOVED_ROWS]
    table = figure.axes[2]
    assert len(figure.axes) == 3 and table.get_title() == "quarantine table: 11 rows"
    assert [t.get_text() for t in table.get_yticklabels()] == ["clean: too_short", "ingest: empty_text",
                                                             "ingest: nul_byte"]
    assert [w for _, w, _ in _bars(table)] == [7, 3, 1] and table.get_ylabel() == "stage: reason"


def test_an_empty_report_draws_empty_charts_that_say_so():
    figures = clean_figures({"labels_per_split": {}, "quarantined_by_reason": {}, "duplicates_by_kind": {}})
    quarantine, duplicates = figures[REMOVED_ROWS].axes
    assert not quarantine.patches and [t.get_text() for t in quarantine.texts] == ["no rows quarantined"]
    assert not duplicates.patches and [t.get_text() for t in duplicates.texts] == ["no duplicates found"]
    assert not figures[TEXT_LENGTHS].axes[0].patches
    assert all(render_png(f).startswith(PNG_SIGNATURE) for f in figures.values())


def test_token_length_figure_has_a_bar_per_length_and_a_line_at_max_length_per_split():
    figure = tokenize_figures(MANIFEST)[TOKEN_LENGTHS]
    train, validation = figure.axes
    assert [(x + w / 2, h) for x, w, h in _bars(train)] == [(3, 1), (5, 3), (8, 2)]  # centred on the length
    assert [(x + w / 2, h) for x, w, h in _bars(validation)] == [(4, 2)]
    for ax in (train, validation):
        (line,) = ax.get_lines()
        assert list(line.get_xdata()) == [8, 8]
    assert train.get_legend().get_texts()[0].get_text() == "max_length 8: 2 rows truncated (33%)"
    assert train.get_title() == "train: 6 rows"
    assert validation.get_title() == "validation: 2 rows, 1 removed (same token ids as an earlier row in another split)"
    assert validation.get_xlabel() == "tokens per row (special tokens included)" and train.get_ylabel() == "rows"
    assert figure.get_suptitle() == "Token length per split (tokenize.max_length = 8)"


def test_long_max_lengths_are_binned_so_max_length_keeps_a_bar_of_its_own():
    max_length = 4 * TOKEN_BARS_MAX
    width, bars = token_length_bars({2: 1, 3: 1, 5: 2, max_length - 1: 4, max_length: 9}, max_length)
    assert width == 4
    assert bars == {0: 2, 4: 2, max_length - 4: 4, max_length: 9}


def test_every_figure_renders_to_png():
    figures = {**clean_figures(CLEAN_REPORT), **tokenize_figures(MANIFEST)}
    assert set(figures) == {LABELS_PER_SPLIT, TEXT_LENGTHS, REMOVED_ROWS, TOKEN_LENGTHS}
    assert all(render_png(f).startswith(PNG_SIGNATURE) for f in figures.values())


def test_labels_that_look_like_tex_are_drawn_as_text_and_a_failing_image_is_a_warning():
    report = {**CLEAN_REPORT, "labels_per_split": {"train": {"$x^$": 3, "$\\foo$": 1}}}
    images, warnings = report_images(clean_figures, report)
    assert warnings == [] and all(png.startswith(PNG_SIGNATURE) for png in images.values())

    def broken(_):
        raise ValueError("no axes")

    assert report_images(broken, report) == ({}, ["the data report's images could not be drawn: ValueError: no axes"])
