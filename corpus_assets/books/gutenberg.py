"""Project Gutenberg cleanup: cut the header, licence and footer; read title, author and language.

Files without Gutenberg markers are plain text and pass through whole.
"""

import re
import unicodedata
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
    r"(?:The )?Project Gutenberg(?:'s| E-?Book of| E-?text of)\s+(?P<title>.+?)"
    r"(?:,?\s+by\s+(?P<author>(?:[A-Z][\w.'’-]*\s*){1,5}))?$",  # "Etext of Macbeth by Shakespeare"
    re.IGNORECASE,
)


# "Frankenstein; or, The Modern Prometheus", "Emma: A Novel", "Walden, or Life in the Woods"
_SUBTITLE_SPLIT = re.compile(r"\s*(?:[;:]\s+(?=\S)|,\s+(?=or\b)|\s+[—–]\s+)", re.IGNORECASE)
# "Complete", "Unabridged", "Vol. 1", "Volume II (of 3)", "Band 1", "Books I-IV": which volume of an
# edition, not part of the title.
_EDITION_SUFFIX = re.compile(
    r"[,.\s—–-]*\(?\b(?:complete|unabridged|(?:vol(?:ume)?|band|tome|tomo|books?|parts?|teil)\.?\s+"
    r"[\dIVXLC]+(?:\s*[-–]\s*[\dIVXLC]+)?(?:\s*\(?of\s+\d+\)?)?)\)?\.?$",
    re.IGNORECASE,
)


_TITLE_PAGE_CHARS = 1500
# Under a title on its title page, lines that are no subtitle: "by" (in the library's languages) before
# the author, and which edition or volume this is.
_BY = re.compile(r"(?i)(?:by|par|por|von|di|da|door|av|af)\b")
_EDITION_LINE = re.compile(r"(?i)\b(?:[ée]dition|edizione|edición|edição|auflage|uitgave|band|volume|tome|tomo|vol)\b")


@dataclass(frozen=True)
class GutenbergParts:
    body: str
    body_offset: int  # where `body` starts in the decoded file
    title: str | None
    subtitle: str | None
    author: str | None
    language: str | None
    has_markers: bool
    works: int = 1  # books in the file, one after another, each between its own start and end markers
    after_end: int = 0  # characters after the last end marker, not kept (the licence, usually)


def split_gutenberg(text: str) -> GutenbergParts:
    start = _START_MARKERS.search(text)
    if start is None:
        return GutenbergParts(text, 0, None, None, None, None, has_markers=False)
    header = text[: start.start()]
    end = _END_MARKERS.search(text, start.end())
    body_start = _skip_producer_credits(text, start.end())
    body_end = end.start() if end else len(text)
    # More books after the first one's end (files joined into one): each one's text is kept, in order,
    # its own header and licence left out; never silently cut at the first end marker.
    later: list[str] = []
    while end is not None and (start_again := _START_MARKERS.search(text, end.end())) is not None:
        end = _END_MARKERS.search(text, start_again.end())
        later.append(text[_skip_producer_credits(text, start_again.end()) : end.start() if end else len(text)])
    title_lines, author = _field_lines(header, "Title"), _field(header, "Author")
    if title_lines:
        title, subtitle = split_title(title_lines)
    else:
        first_line_title, first_line_author = _title_from_first_line(header)
        title, subtitle = split_title([first_line_title]) if first_line_title else (None, None)
        author = author or first_line_author
    body = text[body_start:body_end]
    if title:
        title = with_title_page_accents(title, body)
    if title and subtitle is None:
        subtitle = subtitle_from_title_page(body, title, author)
    return GutenbergParts(
        body="\n\n\n".join([body, *later]),
        body_offset=body_start,
        title=title,
        subtitle=subtitle,
        author=author,
        language=_field(header, "Language"),
        has_markers=True,
        works=1 + len(later),
        after_end=len(text) - end.end() if end else 0,
    )


def subtitle_from_title_page(body: str, title: str, author: str | None) -> str | None:
    """The subtitle a book's own title page gives under its title ("SIDDHARTHA" / "An Indian Tale",
    "OLIVER TWIST" / "OR" / "THE PARISH BOY'S PROGRESS"), when the header gives none."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", body[:_TITLE_PAGE_CHARS]) if p.strip()]
    title_words = words(title)
    for i, paragraph in enumerate(paragraphs[:-1]):
        if words(paragraph) != title_words:
            continue
        following = paragraphs[i + 1 : i + 3]
        if following[0].lower() == "or" and len(following) > 1:
            return f"Or, {following[1]}"
        line = following[0]
        names = set(words(author or ""))
        if (len(line) > 80 or _BY.match(line) or _EDITION_LINE.search(line) or names & set(words(line))
                or not line[0].isalpha() or line.endswith((".", ",", ";", ":")) and not line.lower().startswith("or")):
            return None
        return line
    return None


def with_title_page_accents(title: str, body: str) -> str:
    """The title with the accents its own title page gives it, where the header wrote it in plain ASCII
    ("Contes de la Becasse" under "CONTES DE LA BÉCASSE"), in the header's case."""
    if not title.isascii():
        return title
    for line in body[:_TITLE_PAGE_CHARS * 2].splitlines():
        line = unicodedata.normalize("NFC", " ".join(line.split()))
        if len(line) == len(title) and not line.isascii() and _folded(line) == _folded(title):
            return "".join(accented.lower() if plain.islower() else accented for plain, accented in zip(title, line))
    return title


def _folded(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text.upper()) if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """A line's words, upper-cased: how titles, authors and headings are compared."""
    return re.findall(r"\w+", text.upper())


def _field(header: str, name: str) -> str | None:
    lines = _field_lines(header, name)
    return " ".join(lines) if lines else None


def _field_lines(header: str, name: str) -> list[str]:
    """A header field's value and its indented continuation lines."""
    # Not anchored at line start: some headers run "…www.gutenberg.orgTitle: X" together.
    match = re.search(rf"{name}:[ \t]*(\S.*(?:\n[ \t]+\S.*)*)", header)
    if match is None:
        return []
    return [" ".join(line.split()) for line in match.group(1).splitlines() if line.strip()]


def split_title(lines: list[str]) -> tuple[str, str | None]:
    """The main title alone and the subtitle: a continuation line of the Title field, or what follows
    "; or," / ", or" / ": " on one line ("Frankenstein; or, the Modern Prometheus"). Edition notes
    ("Complete", "Volume 1 of 2" in a field of their own) are not part of either."""
    title, rest = lines[0], " ".join(lines[1:]) or None
    title = _EDITION_SUFFIX.sub("", title).strip()
    if rest is None:
        split = _SUBTITLE_SPLIT.search(title)
        if split is not None:
            title, rest = title[: split.start()].strip(), title[split.end():].strip()
    return title, rest or None


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
