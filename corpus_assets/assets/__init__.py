"""Book assets, one module per stage: raw → text → chunks → embeddings → pgvector."""
