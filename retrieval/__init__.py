"""Search over the indexes, shared by `corpus search` and `corpus serve`: dense (vector similarity),
keyword (BM25) and hybrid (both, fused by reciprocal rank), in Postgres/pgvector or Qdrant."""

STORES = ("pgvector", "qdrant")
MODES = ("dense", "keyword", "hybrid")
DEFAULT_MODE = "hybrid"  # the best on bench/results/retrieval.md, in both stores
MAX_K = 1000
