"""One Dagster resource per external system: the library folder, Postgres, the embedding model,
and the per-book artifact store."""
