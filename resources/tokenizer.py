"""The embedding model's tokenizer, without torch or Dagster: cheap to import in worker processes."""

import functools
from bisect import bisect_left, bisect_right
from collections.abc import Callable
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


# Longest text tokenized whole for `span_counter`: its offsets cost ~100 bytes a token as Python ints.
MAX_SPAN_CHARS = 2_000_000


def span_counter(location: str, text: str) -> Callable[[str], int]:
    """Counts the tokens of `text`'s substrings as `count_tokens` does, from one tokenization of `text`.

    The chunker counts each candidate chunk, ~20 overlapping substrings per chunk. A WordPiece
    tokenizer (MiniLM's) tokenizes each word on its own after a character-wise normalization, so a
    substring that starts and ends between words holds exactly the tokens of `text` inside it; any
    other substring (cut inside a word, not found) is tokenized itself. Other tokenizers, and texts
    over MAX_SPAN_CHARS, are counted by `count_tokens` alone. `tests/test_chunking.py` compares the
    two on every shared book.
    """
    tokenizer = load_tokenizer(location)
    if type(tokenizer.model).__name__ != "WordPiece" or len(text) > MAX_SPAN_CHARS:
        return functools.partial(count_tokens, location)
    return _SpanCounter(text, tokenizer.encode(text, add_special_tokens=False), functools.partial(count_tokens, location))


class _SpanCounter:
    def __init__(self, text: str, encoding, count: Callable[[str], int]):
        self._text, self._count, self._hint = text, count, 0
        offsets = encoding.offsets
        self._starts = [start for start, _ in offsets]
        self._ends = [end for _, end in offsets]
        words: dict[int, list[int]] = {}
        for (start, end), word in zip(offsets, encoding.word_ids, strict=True):
            span = words.setdefault(word, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
        spans = sorted(words.values())
        self._word_starts, self._word_ends = [s for s, _ in spans], [e for _, e in spans]

    def __call__(self, piece: str) -> int:
        at = self._locate(piece)
        if at is None or not (self._between_words(at) and self._between_words(at + len(piece))):
            return self._count(piece)
        return bisect_right(self._ends, at + len(piece)) - bisect_left(self._starts, at)

    def _locate(self, piece: str) -> int | None:
        """Where `piece` is in the text: the chunker asks about pieces near the last one."""
        if not piece:
            return None
        at = self._text.find(piece, self._hint)
        if at < 0:
            at = self._text.find(piece)  # any occurrence counts alike: its ends are checked
        if at >= 0:
            self._hint = at
        return at if at >= 0 else None

    def _between_words(self, position: int) -> bool:
        word = bisect_left(self._word_starts, position) - 1  # the last word starting before `position`
        return word < 0 or self._word_ends[word] <= position
