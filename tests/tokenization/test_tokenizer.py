"""tokenization/ without Spark: loading, training, fingerprints and encode()."""

import random

import pytest
from transformers import AutoTokenizer

from spark_jobs.sample_data import LABELS, make_document
from tokenization import Encoder, TokenizerError, fingerprint, load_tokenizer, train_wordpiece


def _texts(n, seed=1):
    rng = random.Random(seed)
    return [make_document(rng, rng.choice(LABELS)) for _ in range(n)]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return train_wordpiece(_texts(1500), tmp_path_factory.mktemp("tok") / "wp", vocab_size=1200, lowercase=True)


def test_trained_tokenizer_loads_with_autotokenizer_and_lowercases(tok_dir):
    auto = AutoTokenizer.from_pretrained(str(tok_dir))
    assert auto.is_fast and auto.model_max_length == 512
    assert auto("The Striker")["input_ids"] == auto("the striker")["input_ids"]
    assert auto.convert_ids_to_tokens(auto("x")["input_ids"])[0] == "[CLS]"


@pytest.mark.parametrize("side", ["right", "left"])
def test_encode_matches_autotokenizer_exactly_with_truncation(tok_dir, side):
    texts = _texts(300, seed=2) + ["", "a", "Ünïcödé ﬁne — text", " ".join(_texts(5, seed=3))]  # long one last
    auto = AutoTokenizer.from_pretrained(str(tok_dir))
    auto.truncation_side = side
    want = auto(texts, truncation=True, max_length=48)["input_ids"]
    ids, offsets, lengths, truncated = Encoder(load_tokenizer(str(tok_dir)).to_str(), 48, side).encode(texts)
    got = [ids[offsets[i]:offsets[i + 1]].tolist() for i in range(len(texts))]
    assert got == want
    assert lengths.tolist() == [len(w) for w in want]
    assert truncated.tolist() == [len(auto(t)["input_ids"]) > 48 for t in texts]
    assert truncated[-1] and not truncated[-3]


def test_encode_returns_int32_flat_ids_with_offsets(tok_dir):
    ids, offsets, lengths, truncated = Encoder(load_tokenizer(str(tok_dir)).to_str(), 512).encode(["a b", "c"])
    assert ids.dtype.name == offsets.dtype.name == lengths.dtype.name == "int32"
    assert offsets.tolist() == [0, int(lengths[0]), int(lengths.sum())] and not truncated.any()


def test_load_from_tokenizer_json_file(tok_dir):
    tok = load_tokenizer(str(tok_dir / "tokenizer.json"))
    assert tok.backend.encode("the coach").ids == load_tokenizer(str(tok_dir)).backend.encode("the coach").ids


def test_missing_directory_and_corrupt_file_are_clear_errors(tmp_path):
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="has no tokenizer.json"):
        load_tokenizer(str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(TokenizerError, match="corrupt"):
        load_tokenizer(str(tmp_path / "bad"))


def test_hub_name_offline_names_it_and_suggests_a_local_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TokenizerError, match=r"'bert-base-uncased'.*local directory"):
        load_tokenizer("bert-base-uncased")


def test_fingerprint_covers_files_and_settings():
    files = {"tokenizer.json": b"{}", "vocab.txt": b"a\nb"}
    settings = {"max_length": 128, "truncation_side": "right"}
    assert fingerprint(files, settings) == fingerprint(dict(reversed(list(files.items()))), dict(settings))
    assert fingerprint(files, {**settings, "max_length": 64}) != fingerprint(files, settings)
    assert fingerprint({**files, "vocab.txt": b"a\nc"}, settings) != fingerprint(files, settings)


def test_max_length_must_leave_room_for_special_tokens(tok_dir):
    with pytest.raises(TokenizerError, match="no room"):
        Encoder(load_tokenizer(str(tok_dir)).to_str(), 2)


def test_a_models_own_tokenizer_matches_it_and_another_vocabulary_is_an_error_naming_both(tok_dir, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from tokenization import check_matches_model

    model_dir = tmp_path / "pretrained"
    BertForSequenceClassification(BertConfig(vocab_size=1200, hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64)).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(str(tok_dir)).save_pretrained(model_dir)
    check_matches_model(load_tokenizer(str(model_dir)), str(model_dir))
    check_matches_model(load_tokenizer(str(tok_dir)), str(model_dir))  # the same files elsewhere

    other = train_wordpiece(_texts(300, seed=9), tmp_path / "other", vocab_size=400)
    with pytest.raises(TokenizerError) as err:
        check_matches_model(load_tokenizer(str(other)), str(model_dir))
    message = str(err.value)
    assert "\n" not in message and str(other) in message and str(model_dir) in message
    assert "vocabularies differ" in message


def test_without_its_own_tokenizer_a_model_still_rejects_ids_beyond_its_embeddings(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from tokenization import check_matches_model

    small = tmp_path / "small-model"
    BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64)).save_pretrained(small)
    big = train_wordpiece(_texts(600, seed=4), tmp_path / "big", vocab_size=500)
    with pytest.raises(TokenizerError, match="embeddings have 100 rows"):
        check_matches_model(load_tokenizer(str(big)), str(small))


def test_lowercases_reads_the_tokenizers_own_normalizer(tok_dir, tmp_path):
    from tokenization import lowercases

    cased = train_wordpiece(_texts(300, seed=5), tmp_path / "cased", vocab_size=300, lowercase=False)
    assert lowercases(load_tokenizer(str(tok_dir))) and not lowercases(load_tokenizer(str(cased)))
