import io

from spark_jobs.sources import CSV_DEFAULTS, csv_options, find_line


def test_csv_reader_options_given_replace_the_rfc_4180_defaults_whatever_their_case():
    assert csv_options({}) == CSV_DEFAULTS
    given = {"escape": "\\", "multiline": "false", "sep": ";"}
    assert csv_options(given) == {"header": "true", "quote": '"', **given}


def test_find_line_gives_the_line_and_byte_offset_where_a_record_starts():
    data = b"header\nabc\nxx abc\n\nabc again\n"
    for chunk in (1, 3, 1 << 20):
        assert find_line(io.BytesIO(data), b"abc", chunk) == (2, 7)
        assert find_line(io.BytesIO(data), b"abc again", chunk) == (5, data.index(b"abc again"))
        assert find_line(io.BytesIO(data), b"header", chunk) == (1, 0)
        assert find_line(io.BytesIO(data), b"xx abd", chunk) is None
