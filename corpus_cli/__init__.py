"""The `corpus` command and what it needs outside Dagster's code location: the instance, launching
and waiting for runs, status, search. It imports the code location (`corpus_assets`), never the
other way round."""
