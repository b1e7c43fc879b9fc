"""Project Gutenberg cleanup: cut the header, licence and footer; read title, author and language.

Files without Gutenberg markers are plain text and pass through whole.
"""

import re
from dataclasses import dataclass

# "*** START OF THE PROJECT GUTENBERG EBOOK X ***", "***START OF THIS PROJECT GUTENBERG EBOOK X***",
# "*** START OF THE PROJECT GUTENBERG E-BOOK …", and the 1990s "*END*THE SMALL PRINT! …" header.
_START_MARKERS = re.compile(
    r"^[ \t]*\*{3}[ \t]*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$"
    r"|^[ \t]*\*END\*[ \t]*THE SMALL PRINT!.*$",
    re.IGNORECASE | re.MULTILINE,
)
_END_MARKERS = re.compile(
    r"^[ \t]*\*{3}[ \t]*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$"
    r"|^[ \t]*End of (?:the )?Project Gutenberg'?s?\b.*$",
    re.IGNORECASE | re.MULTILINE,
)
# Transcriber credits that sit just inside the start marker.
_PRODUCER_LINE = re.compile(
    r"^[ \t]*(?:Produced by|E-?text prepared by|Transcribed (?:from|by)|This e-?text was)\b.*$",
    re.IGNORECASE,
)
# Older headers give no "Title:" field, only "Project Gutenberg's X, by Y" or "The Project
# Gutenberg EBook of X, by Y" on the first line.
_FIRST_LINE_TITLE = re.compile(
    r"(?:The )?Project Gutenberg(?:'s| E-?Book of| E-?text of)\s+(?P<title>.+?)(?:,\s+by\s+(?P<author>.+))?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class GutenbergParts:
    body: str
    body_offset: int  # where `body` starts in the decoded file
    title: str | None
    author: str | None
    language: str | None
    has_markers: bool


def split_gutenberg(text: str) -> GutenbergParts:
    start = _START_MARKERS.search(text)
    if start is None:
        return GutenbergParts(text, 0, None, None, None, has_markers=False)
    header = text[: start.start()]
    end = _END_MARKERS.search(text, start.end())
    body_start = _skip_producer_credits(text, start.end())
    body_end = end.start() if end else len(text)
    title, author = _field(header, "Title"), _field(header, "Author")
    if title is None:
        title, first_line_author = _title_from_first_line(header)
        author = author or first_line_author
    return GutenbergParts(
        body=text[body_start:body_end],
        body_offset=body_start,
        title=title,
        author=author,
        language=_field(header, "Language"),
        has_markers=True,
    )


def _field(header: str, name: str) -> str | None:
    # Not anchored at line start: some headers run "…www.gutenberg.orgTitle: X" together.
    match = re.search(rf"{name}:[ \t]*(\S.*(?:\n[ \t]+\S.*)*)", header)
    if match is None:
        return None
    return " ".join(match.group(1).split())


def _title_from_first_line(header: str) -> tuple[str | None, str | None]:
    first_line = next((line.strip() for line in header.splitlines() if line.strip()), "")
    match = _FIRST_LINE_TITLE.search(first_line)
    if match is None:
        return None, None
    return match.group("title").strip(), (match.group("author") or "").strip() or None


def _skip_producer_credits(text: str, position: int) -> int:
    """Move past the marker line and any transcriber-credit paragraph right after it."""
    newline = text.find("\n", position)
    position = len(text) if newline < 0 else newline + 1
    while True:
        stripped_from = position + (len(text[position:]) - len(text[position:].lstrip("\n")))
        line_end = text.find("\n", stripped_from)
        line = text[stripped_from : line_end if line_end >= 0 else len(text)]
        if not _PRODUCER_LINE.match(line):
            return position
        paragraph_end = text.find("\n\n", stripped_from)
        position = len(text) if paragraph_end < 0 else paragraph_end + 2
