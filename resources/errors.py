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


_KEY_VALUE = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def where(url: str) -> str:
    """Where a store is, without user, password or parameters: safe to log and to show in the UI. Any
    spelling of an address, even a malformed one (a password holding "/" or "#"), gives no secret."""
    if "://" not in url:  # libpq's key=value form: "host=db user=alice password=... dbname=corp"
        fields = {key.lower(): value.strip("'") for key, value in _KEY_VALUE.findall(url)}
        port = f":{fields['port']}" if fields.get("port", "").isdigit() else ""
        return f"postgresql://{fields.get('host') or fields.get('hostaddr') or 'localhost'}{port}/{fields.get('dbname', '')}"
    scheme, rest = url.split("://", 1)
    rest = rest[rest.rfind("@") + 1 :]  # user and password end at the last "@", whatever they hold
    address, _, query = rest.partition("?")
    address = address.split("#", 1)[0]
    host_port, _, path = address.partition("/")
    host, _, port = host_port.rpartition(":") if host_port.count(":") == 1 else (host_port, "", "")
    host = host or ",".join(parse_qs(query).get("host", [])) or "localhost"
    return f"{scheme}://{host}{':' + port if port.isdigit() else ''}{'/' + path if path else ''}"


def redacted(url: str) -> str:
    """The address with its password as `***`: in the user part (up to the last "@"), in a `password=`
    parameter, or in libpq's key=value form."""
    if "://" in url:
        scheme, rest = url.split("://", 1)
        at = rest.rfind("@")
        user = rest[:at]
        if at >= 0 and ":" in user:
            url = f"{scheme}://{user.split(':', 1)[0]}:***@{rest[at + 1:]}"
    return re.sub(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)", r"\1***", url)


@contextmanager
def reaching(store: str, url: str, *errors: type[BaseException]) -> Iterator[None]:
    """Turn the connection `errors` of `store` into a `StoreUnavailable` that names it."""
    try:
        yield
    except errors as error:
        raise StoreUnavailable(f"{store} at {where(url)} is unavailable: {type(error).__name__}: {error}") from error
