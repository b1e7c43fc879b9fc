"""A query's keyword terms in a library of many languages (both stores), and BM25 weights for them
from the store's document frequencies with the words that select the chunks to score (Postgres')."""

import math
from collections.abc import Hashable, Mapping, Sequence

from resources.postgres.store import WordStats

# Postgres' keyword search reads every row holding a selecting word, so across the library the
# query's rarest words select, up to this many rows in all (estimated from their shares): the cost
# stays bounded as the library grows (a query of only common words still reads its rarest one's rows). At 634k chunks, every word held by <= 5 % of the chunks made
# 75k-176k rows per query (p50 517 ms); within this budget, p50 15 ms. On bench-retrieval's 25 books
# the answers were as good (keyword passage hit@10 0.76, hybrid 0.82, either way).
MATCH_ROWS = 2000
# Within one book only its own rows are read: words held by more than this share of all chunks
# still count in the score but do not select matches.
MAX_MATCH_SHARE = 0.05
# A query's words that count, the rarest first: a query of hundreds of words (a pasted page) costs a
# lookup per word; beyond this many its commoner words add little to the ranking.
MAX_WORDS = 32
# Stop words of one language a query must hold for that language to be taken as the query's own:
# one may be a content word of the query's language (helpers' queries "war", "my son", "original
# sin" found nothing when one sufficed).
MIN_STOP_WORDS = 2


def idf(stats: WordStats, word: str) -> float:
    """BM25's inverse document frequency; a word rarer than every listed one counts as half the rarest."""
    held = _share(stats, word) * stats.chunks
    return math.log(1 + (stats.chunks - held + 0.5) / (held + 0.5))


def weigh(stats: WordStats, words: list[str], in_one_book: bool = False) -> tuple[dict[str, float], list[str]]:
    """({word: idf} for scoring, the words that select matches): across the library, the words rarer
    than any in the statistics (rare, or in no chunk at all: a typo, another language's stem) and the
    rarest listed words within MATCH_ROWS (one at least); in one book the discriminative words, or
    the rarest two when all are common."""
    rarest_first = sorted(words, key=lambda word: _share(stats, word))[:MAX_WORDS]
    kept = set(rarest_first)
    weights = {word: idf(stats, word) for word in words if word in kept}
    if in_one_book:
        return weights, [w for w in words if _share(stats, w) <= MAX_MATCH_SHARE] or rarest_first[:2]
    matching, rows_left = [], MATCH_ROWS
    for word in rarest_first:
        rows = _share(stats, word) * stats.chunks
        if word in stats.shares and any(w in stats.shares for w in matching) and rows > rows_left:
            break
        matching.append(word)
        rows_left -= rows
    return weights, matching


def _share(stats: WordStats, word: str) -> float:
    return stats.shares.get(word, stats.rarest_listed / 2)


def query_terms(analysis: Mapping[str, Sequence[tuple[str, Sequence[Hashable]]]]) -> set:
    """The terms a keyword search looks for: each word's terms under every language of the library,
    except the stop words of the query's own language: the language of which the query holds the most
    stop words, at least MIN_STOP_WORDS (every tied one's). A stop word of one language is a rare,
    heavily weighted word in another's books: unless dropped, an English query's "in", "by", "the"
    match only a French novel's English epigraphs (issue #35: that book filled 48 % of keyword top-10
    slots for 44 English queries). One stop word is no evidence: "war", "die", "son", "sin" are
    content words in English and stop words in German or Spanish.
    `analysis`: {language: [(word, its terms there, none for a stop word)]}, from the store."""
    stops = {language: [word.lower() for word, terms in words if not terms] for language, words in analysis.items()}
    most = max(map(len, stops.values()), default=0)
    own = set().union(*(found for found in stops.values() if len(found) == most)) if most >= MIN_STOP_WORDS else set()
    return {term for words in analysis.values() for word, terms in words if word.lower() not in own for term in terms}
