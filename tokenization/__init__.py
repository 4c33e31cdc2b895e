"""Tokenizers for lakebert, without Spark: load, train (WordPiece), fingerprint, encode.

    from tokenization import Encoder, load_tokenizer
"""

from tokenization.tokenizer import (
    Encoder, LoadedTokenizer, TokenizerError, check_matches_model, fingerprint, load_tokenizer, lowercases,
    train_wordpiece,
)

__all__ = ["Encoder", "LoadedTokenizer", "TokenizerError", "check_matches_model", "fingerprint", "load_tokenizer",
           "lowercases", "train_wordpiece"]
