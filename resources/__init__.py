"""One Dagster resource per external system, each in its own home: the library folder, the
embedding model, the per-book artifacts, and the three stores (`postgres/`, `qdrant/`, `graph/`),
each package holding every query the project makes to that store."""
