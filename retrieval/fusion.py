"""Reciprocal rank fusion: one ranking from several, by weight / (K + rank) summed over the lists."""

from collections.abc import Hashable, Sequence

# Damps the weight of the very first ranks. Cormack et al. (2009) chose 60; on the unseen queries'
# dev split (bench/retrieval/eval.py --sweep, 200 queries over 70 books) 10 ranked better: hybrid
# passage hit@10 / MRR 0.59 / 0.40 against 0.57 / 0.37 (pgvector), 0.62 / 0.41 against 0.58 / 0.39 (Qdrant).
K = 10


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hashable]], k: int = K,
                           weights: Sequence[float] | None = None) -> list[tuple[Hashable, float]]:
    """Items of all rankings (best first) with their fused score, best first; ties keep first-seen order.
    `weights`: one per ranking (default: 1 each)."""
    scores: dict[Hashable, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])
