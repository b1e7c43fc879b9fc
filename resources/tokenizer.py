"""The embedding model's tokenizer, without torch or Dagster: cheap to import in worker processes."""

import functools
from pathlib import Path


@functools.cache
def load_tokenizer(location: str):
    from tokenizers import Tokenizer

    local = Path(location) / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(local)) if local.exists() else Tokenizer.from_pretrained(location)
    # Count every token: the file's own truncation (128 for MiniLM) would undercount long texts.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count_tokens(location: str, text: str) -> int:
    """Tokens the model at `location` sees for `text`, without the special tokens it adds."""
    return len(load_tokenizer(location).encode(text, add_special_tokens=False))


@functools.cache
def max_token_chars(location: str) -> int:
    """Characters in the longest token of the vocabulary (WordPiece's `##` prefix excluded).

    semchunk uses it to count long texts only as far as needed: chunking gets ~25% faster with
    identical chunks.
    """
    return max(len(token.removeprefix("##")) for token in load_tokenizer(location).get_vocab())
