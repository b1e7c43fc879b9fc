-- Dagster's run, event and schedule storage lives beside the corpus database on the same server.
CREATE DATABASE dagster;
