"""Store outages as one clear error: which store, where it was looked for, and what it said."""

from collections.abc import Iterator
from contextlib import contextmanager
import re
from urllib.parse import parse_qs, urlsplit

from dagster import Failure


class StoreUnavailable(ConnectionError):
    """A store could not be reached (down, refusing, wrong address or credentials).

    Steps that meet it are retried with backoff (`STORE_RETRY`); the message never holds credentials.
    """


class SchemaOutOfDate(Failure):
    """The corpus database is at another schema revision than the code: a step to take, not an
    outage to wait out, so a step that meets it fails at once instead of retrying."""

    def __init__(self, message: str):
        super().__init__(description=message, allow_retries=False)


class SearchTimeout(TimeoutError):
    """A search the store stopped at its time limit (`CORPUS_SEARCH_TIMEOUT_MS`): the service answers 504."""


def where(url: str) -> str:
    """A URL without its user, password and query: safe to log and to show in the UI."""
    parts = urlsplit(url)
    host = parts.hostname or ",".join(parse_qs(parts.query).get("host", [])) or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def redacted(url: str) -> str:
    """The URL with its password (in the user part, or a `password=` parameter) as `***`."""
    parts = urlsplit(url)
    if parts.password:
        url = url.replace(f":{parts.password}@", ":***@", 1)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", url)


@contextmanager
def reaching(store: str, url: str, *errors: type[BaseException]) -> Iterator[None]:
    """Turn the connection `errors` of `store` into a `StoreUnavailable` that names it."""
    try:
        yield
    except errors as error:
        raise StoreUnavailable(f"{store} at {where(url)} is unavailable: {type(error).__name__}: {error}") from error
