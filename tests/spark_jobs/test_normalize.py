from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from conf import load_config
from spark_jobs import normalize as N


def _apply(spark, fn, rows):
    """[(input, expected)] -> (actual df, expected df), both with one `text` column."""
    got = spark.createDataFrame([(i,) for i, _ in rows], "text string").select(fn(F.col("text")).alias("text"))
    want = spark.createDataFrame([(e,) for _, e in rows], "text string")
    return got, want


def test_fix_mojibake_repairs_cp1252_decoded_utf8_and_keeps_correct_text(spark):
    got, want = _apply(spark, N.fix_mojibake, [
        ("Price: Â£5", "Price: £5"),
        ("the cafÃ©â€™s menu", "the café’s menu"),
        ("São Paulo café", "São Paulo café"),  # correct accented text is left alone
        ("plain ascii", "plain ascii"),
        (None, None),
    ])
    assertDataFrameEqual(got, want, checkRowOrder=True)


def test_strip_html_tags_removes_tags_comments_and_script_bodies(spark):
    got, want = _apply(spark, N.strip_html_tags, [
        ("<p>Hello <b>world</b></p>", " Hello  world  "),
        ("a<script>var x = 1 < 2;</script>b", "a b"),
        ("x<!-- hidden -->y", "x y"),
        ("3 < 4 and 5 > 2", "3 < 4 and 5 > 2"),  # comparisons are not tags
    ])
    assertDataFrameEqual(got, want, checkRowOrder=True)


def test_unescape_html_decodes_named_and_numeric_entities(spark):
    got, want = _apply(spark, N.unescape_html, [
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("it&#39;s &lt;fine&gt;", "it's <fine>"),
        ("no entities", "no entities"),
    ])
    assertDataFrameEqual(got, want, checkRowOrder=True)


def test_nfkc_folds_compatibility_characters(spark):
    got, want = _apply(spark, N.nfkc, [("ﬁne", "fine"), ("ＡＢＣ１２３", "ABC123"), ("x\u00a0y", "x y")])
    assertDataFrameEqual(got, want, checkRowOrder=True)


def test_remove_control_chars_keeps_tabs_and_newlines(spark):
    got, want = _apply(spark, N.remove_control_chars, [
        ("a\u0007b\u200bc\ufeffd", "abcd"),
        ("line1\nline2\tx", "line1\nline2\tx"),
    ])
    assertDataFrameEqual(got, want, checkRowOrder=True)


def test_collapse_whitespace_joins_runs_and_trims(spark):
    got, want = _apply(spark, N.collapse_whitespace, [("  a \n\t b\u00a0\u00a0c  ", "a b c"), ("", "")])
    assertDataFrameEqual(got, want, checkRowOrder=True)


def test_normalize_text_chains_steps_and_lowercases_when_configured(spark):
    clean_cfg = load_config(overrides=["clean.lowercase=true"]).clean
    got, want = _apply(spark, lambda c: N.normalize_text(c, clean_cfg), [
        ("<p>Caf\u00c3\u00a9  &amp;\n<i>Bar</i></p>", "café & bar"),
        ("&lt;b&gt;kept as text&lt;/b&gt;", "<b>kept as text</b>"),
    ])
    assertDataFrameEqual(got, want, checkRowOrder=True)


def test_normalize_text_leaves_html_when_strip_html_is_off(spark):
    clean_cfg = load_config(overrides=["clean.strip_html=false", "clean.fix_mojibake=false"]).clean
    got, want = _apply(spark, lambda c: N.normalize_text(c, clean_cfg), [("<b>x</b> &amp;", "<b>x</b> &amp;")])
    assertDataFrameEqual(got, want, checkRowOrder=True)
