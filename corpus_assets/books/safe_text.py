"""Text from a library (file names, titles, book text) made safe to show: never markup, never a terminal
control sequence.

Book files and their names are untrusted: a title may hold `[/bold]` (markup to rich), `<script>`
(HTML), `|` or `*` (markdown), an escape sequence that clears a terminal, or bytes that are not
UTF-8. What is shown goes through one of these first.
"""

import re

# C0 and C1 control characters (tab and newline too, unless lines are kept), and the bidirectional overrides
# that make a name read backwards on screen (U+202A-202E, U+2066-2069, U+200E/F).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Markdown's punctuation, and the characters HTML gives meaning to.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def printable(text: str, keep_lines: bool = False) -> str:
    """`text` with bytes that were not valid UTF-8 (a file name's surrogate escapes) as `\\xNN` and control
    characters as escapes, so it shows as what it is on any terminal or page: on one line (a newline in
    a file name shows as `\\x0a`), or, with `keep_lines`, on its own lines (a traceback)."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    control = _CONTROL_BUT_LINES if keep_lines else _CONTROL
    return control.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)


def md_cell(text: str, limit: int = 90) -> str:
    """Text shortened to sit in one markdown table cell, shown as written: markdown punctuation and HTML
    characters escaped, whitespace collapsed."""
    flat = printable(" ".join(text.split()))
    flat = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return _MARKDOWN.sub(r"\\\1", flat).replace("&", "&amp;").replace("<", "&lt;")
