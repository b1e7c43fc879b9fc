"""Bytes → text for the encodings real book libraries hold.

UTF-8 (with or without BOM) and UTF-16 with a BOM decode as such; anything else that is not valid
UTF-8 is read as Windows-1252, which agrees with Latin-1 on every printable Latin-1 character and
adds the curly quotes and dashes Windows editors write in 0x80–0x9F. Line endings become `\n`.
"""

import codecs
from dataclasses import dataclass

from corpus_assets.books.errors import BookError

# Control characters other than tab, newline, form feed and carriage return: text files have
# almost none, binary files are full of them.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13))
_MAX_CONTROL_RATIO = 0.01


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str


def decode_book(data: bytes) -> DecodedText:
    """Decode a book file; raise `BookError` for empty or binary content."""
    if not data.strip():
        raise BookError("the file is empty")
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            text = data.decode(encoding, errors="replace")  # an odd byte count, a lone surrogate: marked, not fatal
            return _decoded(text, encoding if "\ufffd" not in text else f"{encoding} (with invalid bytes replaced)")
    _reject_binary(data)
    try:
        return _decoded(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    if _mostly_utf8(data):
        # Valid UTF-8 but for a few broken bytes (a truncated download, one bad edit): keep the
        # UTF-8 reading and mark the damage rather than mis-decode every other accented letter.
        return _decoded(data.decode("utf-8", errors="replace"), "utf-8 (with invalid bytes replaced)")
    return _decoded(data.decode("cp1252", errors="replace"), "windows-1252")


def _decoded(text: str, encoding: str) -> DecodedText:
    # No store takes a NUL in text (Postgres refuses it): anywhere in the file, not only where the
    # binary test looked (its first 64 KiB; and a UTF-16 file's zero bytes are not NULs until decoded).
    nul = text.find("\x00")
    if nul >= 0:
        raise BookError(f"the file holds a NUL character (at character {nul:,}): not plain text")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise BookError("the file holds only whitespace")
    return DecodedText(text=text, encoding=encoding)


def _reject_binary(data: bytes) -> None:
    sample = data[:65536]
    if b"\x00" in sample:
        raise BookError("the file is binary, not text (it contains NUL bytes)")
    control = sum(sample.count(b) for b in _CONTROL_BYTES)
    if control / len(sample) > _MAX_CONTROL_RATIO:
        raise BookError(f"the file is binary, not text ({control} control bytes in the first {len(sample)})")


def _mostly_utf8(data: bytes) -> bool:
    """True when the non-ASCII bytes are overwhelmingly well-formed UTF-8 sequences."""
    text = data.decode("utf-8", errors="replace")
    broken = text.count("\ufffd")
    multibyte = sum(1 for ch in text if ord(ch) > 127 and ch != "\ufffd")
    return multibyte >= 10 * broken
