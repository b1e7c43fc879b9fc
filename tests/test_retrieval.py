"""The pure parts of search: rank fusion, BM25 weights, a query's terms in many languages, the query-embedding cache, tsquery quoting,
the checks that refuse a query before any store."""

import numpy as np
import pytest

from resources.postgres.store import WordStats, _tsquery
from retrieval import QueryError, checked_query
from retrieval.engine import EmbeddingCache
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.keyword import MATCH_ROWS, MAX_MATCH_SHARE, idf, query_terms, weigh


def test_fusion_rewards_what_both_lists_rank_high():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]])
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    assert fused[0][1] == 1 / 11 + 1 / 12  # K = 10
    weighted = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=10, weights=[1.0, 3.0])
    assert [item for item, _ in weighted] == ["c", "a", "d", "b"] and weighted[0][1] == 1 / 13 + 3 / 11


def test_rare_words_weigh_more_and_select_matches_within_a_bounded_number_of_rows():
    stats = WordStats(chunks=1000, avg_tokens=250, shares={"said": 0.4, "whale": 0.01}, rarest_listed=0.01)
    weights, matching = weigh(stats, ["said", "whale", "ishmael"])
    assert weights["ishmael"] > weights["whale"] > weights["said"] > 0  # unlisted: rarer than the rarest listed
    assert matching == ["ishmael", "whale", "said"]  # 5 + 10 + 400 rows: within the budget, rarest first
    # In one book, a word held by more than MAX_MATCH_SHARE of all chunks selects nothing.
    assert weigh(stats, ["said", "whale", "ishmael"], in_one_book=True)[1] == ["whale", "ishmael"]
    assert stats.shares["said"] > MAX_MATCH_SHARE

    # At 1.35M chunks the rarest words select until MATCH_ROWS rows: "sea" (13,500 rows) would pass it.
    large = WordStats(chunks=1_350_000, avg_tokens=250, shares={"sea": 0.01, "whale": 0.001, "the": 0.9},
                      rarest_listed=0.0005)
    words = ["the", "sea", "whale", "ishmael"]
    _, matching = weigh(large, words)
    assert matching == ["ishmael", "whale"] and sum(large.shares.get(w, 0.00025) for w in matching) * 1_350_000 <= MATCH_ROWS
    assert weigh(large, words, in_one_book=True)[1] == ["sea", "whale", "ishmael"]
    # A word in no statistics may be in no chunk at all (a typo): the rarest listed word selects as well.
    assert weigh(large, ["whael", "sea"])[1] == ["whael", "sea"]
    assert weigh(large, ["whael", "ishmail", "whale", "sea"])[1] == ["whael", "ishmail", "whale"]
    # Only common words: the rarest still selects (two of them in one book), never no match at all.
    common = WordStats(chunks=1000, avg_tokens=250, shares={"said": 0.4, "man": 0.2, "one": 0.5}, rarest_listed=0.2)
    assert weigh(common, ["said", "man", "one"], in_one_book=True)[1] == ["man", "said"]
    assert weigh(large, ["the"])[1] == ["the"]
    assert idf(WordStats(1.0, 1.0, {}, 0.0), "x") > 0  # no statistics yet (before ANALYZE): every word alike


def test_a_querys_own_stop_words_are_dropped_in_every_language_of_the_library():
    # {language: [(word, its terms there: none for a stop word)]}, as either store analyses a query.
    english_query = {"english": [("The", []), ("son", ["son"]), ("of", []), ("the", []), ("sea", ["sea"])],
                     "french": [("The", ["the"]), ("son", []), ("of", ["of"]), ("the", ["the"]), ("sea", ["sea"])]}
    # English (3 stop words) over French (1): "the" and "of" go everywhere, "son" stays (French's "his").
    assert query_terms(english_query) == {"son", "sea"}
    german_query = {"english": [("Der", ["der"]), ("Mann", ["mann"]), ("die", ["die"])],
                    "german": [("Der", []), ("Mann", ["mann"]), ("die", [])]}
    assert query_terms(german_query) == {"mann"}
    # A tie drops the stop words of every tied language.
    assert query_terms({"english": [("in", []), ("the", []), ("Rom", ["rom"])],
                        "german": [("in", []), ("the", ["the"]), ("Rom", ["rom"])],
                        "dutch": [("in", []), ("the", []), ("Rom", ["rom"])]}) == {"rom"}
    # One stop word is no evidence: "war" (German), "son" (French), "sin" (Spanish) stay English words.
    assert query_terms({"english": [("war", ["war"])], "german": [("war", [])]}) == {"war"}
    assert query_terms({"english": [("my", []), ("son", ["son"])], "french": [("my", ["my"]), ("son", [])]}) == {"my", "son"}
    assert query_terms({"english": [("original", ["origin"]), ("sin", ["sin"])],
                        "spanish": [("original", ["original"]), ("sin", [])]}) == {"origin", "original", "sin"}
    # Only stop words of the query's language: no term at all (keyword search finds nothing, as it should).
    assert query_terms({"english": [(w, []) for w in "to be or not to be".split()],
                        "french": [(w, [w]) for w in "to be or not to be".split()]}) == set()
    assert query_terms({"english": [("whale", ["whale"])], "french": [("whale", ["whal"])]}) == {"whale", "whal"}
    assert query_terms({}) == set()


def test_words_are_quoted_as_tsquery_literals():
    assert _tsquery("o'brien") == "'o''brien'" and _tsquery("a\\b") == "'a\\\\b'"


def test_the_embedding_cache_counts_and_evicts_the_least_recently_used():
    calls = []

    def embed(query: str) -> np.ndarray:
        calls.append(query)
        return np.array([len(query)], dtype=np.float32)

    cache = EmbeddingCache(capacity=2)
    assert not cache.get("a", embed)[1] and not cache.get("bb", embed)[1]
    assert cache.get("a", embed)[1]  # a hit; "bb" is now the least recently used
    cache.get("ccc", embed)
    assert not cache.get("bb", embed)[1] and calls == ["a", "bb", "ccc", "bb"]
    assert cache.stats() == {"hits": 1, "misses": 4, "hit_rate": 0.2, "size": 2, "capacity": 2}
    none = EmbeddingCache(capacity=0)
    assert not none.get("a", embed)[1] and not none.get("a", embed)[1] and none.stats()["size"] == 0


def test_a_query_is_checked_without_any_store():
    assert checked_query("  the \n whale\t ", 1, None, "qdrant", "dense") == "the whale"
    assert checked_query("'; DROP TABLE chunks; --", 1000, "a_book", "pgvector", "keyword")  # data, not refused
    for query, k, book, store, mode, message in [
        ("\n\t ", 5, None, "pgvector", "hybrid", "the query is empty"),
        ("", 5, None, "pgvector", "hybrid", "the query is empty"),
        ("ca\x00t", 5, None, "pgvector", "hybrid", "the query holds a NUL character"),
        ("cat", 5, "bo\x00ok", "pgvector", "hybrid",
         r"unknown book 'bo\\x00ok': not a book id \(`corpus status` lists the books\)"),
        ("cat", 5, "*", "pgvector", "hybrid", r"unknown book '\*': not a book id \(`corpus status` lists the books\)"),
        ("cat " * 300, 5, None, "pgvector", "hybrid", "the query is 1,199 characters long, over the limit of 1,000"),
        ("cat", 0, None, "pgvector", "hybrid", "k must be between 1 and 1000, not 0"),
        ("cat", 1001, None, "pgvector", "hybrid", "k must be between 1 and 1000, not 1001"),
        ("cat", 5, None, "elastic", "hybrid", "unknown store 'elastic': one of pgvector, qdrant"),
        ("cat", 5, None, "qdrant", "fuzzy", "unknown mode 'fuzzy': one of dense, keyword, hybrid"),
    ]:
        with pytest.raises(QueryError, match=f"^{message}$"):
            checked_query(query, k, book, store, mode)
