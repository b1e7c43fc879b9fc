"""Chapter and part headings, in the many styles books use.

A heading is a paragraph of one short line, such as "CHAPTER I", "Chapter 1.", "BOOK ONE: 1805",
"ACT I", "SCENE II. A room", "Stave I", "Canto 1", "Letter 4", "THE FIRST BOOK" or a bare roman
numeral ("IV." or "IV. The Title"). Runs of headings with almost no text between them are a table
of contents and are not boundaries. Part-level headings (BOOK, PART, VOLUME, ACT) prefix the titles of
the chapters inside them. A text with no headings is one section.
"""

import re
from dataclasses import dataclass

_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    "sixteen|seventeen|eighteen|nineteen|twenty|first|second|third|fourth|fifth|sixth|seventh|"
    "eighth|ninth|tenth|eleventh|twelfth|last|final"
)
_ROMAN = r"(?=[MDCLXVI])M*(?:C[MD]|D?C{0,3})(?:X[CL]|L?X{0,3})(?:I[XV]|V?I{0,3})"
_NUMBER = rf"(?:{_ROMAN}|\d{{1,4}}|(?:{_NUMBER_WORDS})(?:[- ](?:{_NUMBER_WORDS}))?)"
_PART_WORDS = "book|part|volume|act|adventure"
_CHAPTER_WORDS = "chapter|scene|stave|canto|letter|section|essay|lecture|sermon"

_KEYWORD_HEADING = re.compile(
    rf"^(?P<word>{_PART_WORDS}|{_CHAPTER_WORDS})\.?\s+(?P<number>{_NUMBER})\b(?P<rest>.*)$",
    re.IGNORECASE,
)
# "THE FIRST BOOK", "FIRST EPILOGUE: 1813 - 20", "PREFACE", "INTRODUCTION."
_NAMED_PART = re.compile(
    rf"^(?:the\s+(?:{_NUMBER_WORDS})\s+(?:{_PART_WORDS})\.?"
    rf"|(?:(?:{_NUMBER_WORDS})\s+)?(?:prologue|epilogue)\b[^.]{{0,40}}\.?)$",
    re.IGNORECASE,
)
# Matter outside the numbered chapters; it also closes the part before it.
_MATTER_HEADING = re.compile(
    r"^(?:preface|introduction|appendix|conclusion|afterword|foreword|notes|contents)\b[^.]{0,40}\.?$",
    re.IGNORECASE,
)
# A bare roman numeral, alone or with a dot and a short title ("IV." / "IV. The Copper Beeches"),
# but not a numbered sentence ("V. The best kind of revenge is, not to become like them.").
_ROMAN_HEADING = re.compile(rf"^{_ROMAN}(?:\.?|\.\s+[^\s.].{{0,60}}[^.,;:])$")

_ONE_LINE_PARAGRAPH = re.compile(r"(?:(?<=\n\n)|\A)(?P<line>[^\n]+)(?=\n\n|\n?\Z)")
MAX_HEADING_CHARS = 80
# Headings closer together than this (in characters of other text) list contents, not chapters.
_TOC_GAP_CHARS = 100
_TOC_MIN_RUN = 3
FRONT_MATTER_TITLE = "Front matter"


@dataclass(frozen=True)
class Section:
    index: int
    title: str
    start: int
    end: int


@dataclass(frozen=True)
class _Heading:
    start: int
    end: int
    text: str
    is_part: bool
    closes_part: bool = False


def split_sections(text: str, fallback_title: str) -> list[Section]:
    """Split `text` at chapter headings into sections that cover it from start to end."""
    headings = _drop_contents_listings(list(_find_headings(text)))
    boundaries: list[tuple[int, str]] = []
    part: str | None = None
    pending_part_start: int | None = None
    for i, heading in enumerate(headings):
        if heading.is_part:
            part = heading.text
            following = headings[i + 1] if i + 1 < len(headings) else None
            if following and not following.is_part and following.start - heading.end <= _TOC_GAP_CHARS:
                # A part heading right above a chapter heading opens that chapter's section.
                pending_part_start = heading.start
            else:  # a part whose text comes before any chapter heading: a section of its own
                boundaries.append((heading.start, heading.text))
            continue
        if heading.closes_part:
            part = None
        title = f"{part} / {heading.text}" if part else heading.text
        start = pending_part_start if pending_part_start is not None else heading.start
        boundaries.append((start, title))
        pending_part_start = None
    if not boundaries:
        return [Section(0, fallback_title, 0, len(text))]
    if text[: boundaries[0][0]].strip():
        boundaries.insert(0, (0, FRONT_MATTER_TITLE))
    else:
        boundaries[0] = (0, boundaries[0][1])
    return [
        Section(i, title, start, boundaries[i + 1][0] if i + 1 < len(boundaries) else len(text))
        for i, (start, title) in enumerate(boundaries)
    ]


def _find_headings(text: str):
    """One-line paragraphs that look like headings."""
    for match in _ONE_LINE_PARAGRAPH.finditer(text):
        line = match.group("line").strip()
        if not line or len(line) > MAX_HEADING_CHARS or not line[0].isupper():
            continue
        keyword = _KEYWORD_HEADING.match(line)
        is_part = bool(keyword and keyword.group("word").lower() in _PART_WORDS.split("|"))
        is_part = is_part or bool(_NAMED_PART.match(line))
        closes_part = bool(_MATTER_HEADING.match(line))
        if keyword or is_part or closes_part or _ROMAN_HEADING.match(line):
            title = " ".join(line.split())
            yield _Heading(match.start("line"), match.end("line"), title, is_part, closes_part)


def _drop_contents_listings(headings: list[_Heading]) -> list[_Heading]:
    """Drop runs of headings with no text between them, keeping the real heading(s) that end a
    run when the contents listing runs straight into the first chapter."""
    kept: list[_Heading] = []
    run: list[_Heading] = []
    for heading in [*headings, None]:
        if run and (heading is None or heading.start - run[-1].end > _TOC_GAP_CHARS):
            if len(run) < _TOC_MIN_RUN:
                kept.extend(run)
            else:
                last = run[-1]
                opening_part = [run[-2]] if run[-2].is_part and not last.is_part else []
                kept.extend([*opening_part, last])
            run = []
        if heading is not None:
            run.append(heading)
    return kept
