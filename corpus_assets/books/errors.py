class BookError(ValueError):
    """A book's file cannot be ingested; the message says what is wrong with it."""


# The metadata entry of a failed step that lists each book it failed for, as JSON
# {book id: {"stage", "problem", "bad_input"}}; read back from the run's event log to know which
# books of a batch failed (Dagster cannot fail one partition of a multi-partition step, dagster#17836).
FAILURES_KEY = "failures"
