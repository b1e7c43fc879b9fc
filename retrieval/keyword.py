"""BM25 weights for a query's words, from the store's document frequencies."""

import math

from resources.postgres.store import WordStats

# Words held by more than this share of chunks still count in the score but do not select matches:
# at 1.35M chunks one such word alone would make ~70k rows to score.
MAX_MATCH_SHARE = 0.05


def idf(stats: WordStats, word: str) -> float:
    """BM25's inverse document frequency; a word rarer than every listed one counts as half the rarest."""
    share = stats.shares.get(word, stats.rarest_listed / 2)
    held = share * stats.chunks
    return math.log(1 + (stats.chunks - held + 0.5) / (held + 0.5))


def weigh(stats: WordStats, words: list[str]) -> tuple[dict[str, float], list[str]]:
    """({word: idf} for scoring, the words that select matches): the discriminative words, or the
    rarest two when all are common."""
    weights = {word: idf(stats, word) for word in words}
    matching = [w for w in words if stats.shares.get(w, 0.0) <= MAX_MATCH_SHARE]
    return weights, matching or sorted(words, key=weights.__getitem__, reverse=True)[:2]
