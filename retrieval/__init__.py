"""Search over the indexes, shared by `corpus search` and `corpus serve`: dense (vector similarity),
keyword (BM25) and hybrid (both, fused by reciprocal rank), in Postgres/pgvector or Qdrant."""
