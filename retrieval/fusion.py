"""Reciprocal rank fusion: one ranking from several, by 1 / (K + rank) summed over the lists."""

from collections.abc import Hashable, Sequence

# The constant of Cormack et al. (2009); it damps the weight of the very first ranks.
K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hashable]], k: int = K) -> list[tuple[Hashable, float]]:
    """Items of all rankings (best first) with their fused score, best first; ties keep first-seen order."""
    scores: dict[Hashable, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])
