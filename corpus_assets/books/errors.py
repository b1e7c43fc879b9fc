class BookError(ValueError):
    """A book's file cannot be ingested; the message says what is wrong with it."""
