"""A book's structure: optional parts, chapters, and the front and back matter around them.

Headings are short paragraphs of one or two lines:
- keyword headings in English, French, German and Spanish, with a roman, arabic or spelled-out
  number: "CHAPTER I.", "Chapter 1", "CHAPTER TWENTY-ONE", "Chapitre 3", "Kapitel 2", "Capítulo V",
  "BOOK ONE: 1805", "PART THE SECOND", "THE FIRST BOOK", "ACT III", "SCENE II. A room", "Stave I",
  "Canto 4", "Letter 2", "Erster Teil"; a second line, or a short title paragraph right below,
  is the chapter's own title;
- bare numbers: "IV", "IV.", "4", "12.  The Cyclone", "IV. The Copper Beeches";
- named body sections: PREFACE, INTRODUCTION, PROLOGUE, EPILOGUE, AFTERWORD, CONCLUSION...;
- titles alone ("THE SON OF THE BRAHMAN", a poem's title), set off by two or more blank lines: the
  chapters of a book without numbered ones, or whose numbered headings are less set off and fewer
  (poems with numbered sections), and titled sections before the first or after the last chapter;
- front and back matter: CONTENTS, ILLUSTRATIONS, TRANSCRIBER'S NOTE, ERRATA, INDEX, FOOTNOTES,
  ADVERTISEMENTS..., and whatever follows "THE END".

Rules that hold on any Gutenberg-style library, not on particular books:
- numbered headings count only as part of a sequence of their own style (1, 2, 3... restarting at 1
  in a new part): a lone numeral, an initial ("M."), a year ("MDCCCXXIX.") or an author line
  ("L. Frank Baum") is not a chapter;
- runs of headings with almost no text between them, headings under a CONTENTS heading, and
  headings before the body that the body repeats are a contents list (front matter), not chapters:
  the headings that occur in the body, in sequence, win;
- lines that repeat the book's title or name its author are its title page, not chapters;
- where a book numbers its chapters with a keyword ("CHAPTER IV"), bare numerals between them are
  sub-sections of the chapter and not boundaries;
- part-level headings (part, book, volume, act, canticle...) open the chapters below them, and a
  chapter's display title carries its part: "BOOK TWO · CHAPTER V".
A text with no headings is one body section.
"""

import re
from dataclasses import dataclass, replace

from corpus_assets.books.gutenberg import words

# Bump when the same text would split differently: stored books made by an older version are then
# ingested again (the library plan), and book_text shows stale in Dagster.
STRUCTURE_VERSION = "3"
FRONT, BODY, BACK = "front", "body", "back"
NAMES_PER_1000_WORDS = 2.0  # the author's name this often: an introduction about the author
PART_SEPARATOR = " · "
FRONT_MATTER_TITLE = "Front matter"
BACK_MATTER_TITLE = "Back matter"
MAX_HEADING_CHARS = 80

_UNITS = {
    # English
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "first": 1, "second": 2, "third": 3, "fourth": 4,
    "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11,
    "twelfth": 12, "thirteenth": 13, "fourteenth": 14, "fifteenth": 15, "sixteenth": 16,
    "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    # French
    "un": 1, "une": 1, "premier": 1, "première": 1, "deux": 2, "deuxième": 2, "seconde": 2, "trois": 3,
    "troisième": 3, "quatre": 4, "quatrième": 4, "cinq": 5, "cinquième": 5, "sixième": 6, "sept": 7,
    "septième": 7, "huit": 8, "huitième": 8, "neuf": 9, "neuvième": 9, "dix": 10, "dixième": 10,
    # German
    "eins": 1, "erste": 1, "erster": 1, "erstes": 1, "zwei": 2, "zweite": 2, "zweiter": 2, "zweites": 2,
    "drei": 3, "dritte": 3, "dritter": 3, "drittes": 3, "vier": 4, "vierte": 4, "vierter": 4, "viertes": 4,
    "fünf": 5, "fünfte": 5, "fünfter": 5, "fünftes": 5, "sechs": 6, "sechste": 6, "sechster": 6,
    "sechstes": 6, "sieben": 7, "siebente": 7, "siebenter": 7, "siebentes": 7, "siebte": 7, "siebter": 7,
    "siebtes": 7, "acht": 8, "achte": 8, "achter": 8, "achtes": 8, "neun": 9, "neunte": 9, "neunter": 9,
    "neuntes": 9, "zehn": 10, "zehnte": 10, "zehnter": 10, "zehntes": 10,
    # Spanish
    "uno": 1, "primero": 1, "primera": 1, "dos": 2, "segundo": 2, "segunda": 2, "tres": 3, "tercero": 3,
    "tercera": 3, "cuatro": 4, "cuarto": 4, "cuarta": 4, "cinco": 5, "quinto": 5, "quinta": 5, "seis": 6,
    "sexto": 6, "sexta": 6, "siete": 7, "séptimo": 7, "séptima": 7, "ocho": 8, "octavo": 8, "octava": 8,
    "nueve": 9, "noveno": 9, "novena": 9, "diez": 10, "décimo": 10, "décima": 10,
}
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
    "ninety": 90, "twentieth": 20, "thirtieth": 30, "fortieth": 40, "fiftieth": 50,
}
_WORD = "|".join(sorted({*_UNITS, *_TENS}, key=len, reverse=True))
_SPELLED = rf"(?:(?:{_WORD})(?:[- ](?:{_WORD}))?)"
_ROMAN = r"(?=[MDCLXVI])M{0,3}(?:C[MD]|D?C{0,3})(?:X[CL]|L?X{0,3})(?:I[XV]|V?I{0,3})"
_NUMBER = rf"(?:{_ROMAN}|(?i:{_ROMAN})|\d{{1,3}}|(?i:{_SPELLED}))"

_PART_WORDS = (
    "book|part|volume|vol|act|canticle|"  # English
    "livre|partie|tome|acte|"  # French
    "buch|teil|band|abteilung|akt|aufzug|"  # German
    "libro|parte|tomo|acto|jornada"  # Spanish
)
_CHAPTER_WORDS = (
    "chapter|chap|scene|stave|canto|letter|section|essay|lecture|sermon|adventure|"
    "chapitre|scène|lettre|"
    "kapitel|szene|auftritt|brief|"
    "capítulo|capitulo|escena|carta"
)
_PART_LEVEL = set(_PART_WORDS.split("|"))

# "CHAPTER IV.", "Chapter 1 PETER BREAKS THROUGH", "BOOK ONE: 1805", "SCENE II. A room."
_KEYWORD_HEADING = re.compile(
    rf"^(?P<word>(?i:{_PART_WORDS}|{_CHAPTER_WORDS}))\.?\s+(?P<number>{_NUMBER})(?![\w'’])"
    rf"(?P<rest>(?:[.:,;—–-]|\s).{{0,70}})?$"
)
# "THE FIRST BOOK", "Book the Second", "FIRST PART", "Erster Teil", "Erstes Kapitel", "Chapter the First"
_ORDINAL_HEADING = re.compile(
    rf"^(?i:(?:the\s+|his\s+)?(?P<n1>{_SPELLED})\s+(?P<w1>{_PART_WORDS}|{_CHAPTER_WORDS})"
    rf"|(?P<w2>{_PART_WORDS}|{_CHAPTER_WORDS})\s+the\s+(?P<n2>{_SPELLED}))\.?(?P<rest>[:.—–-].{{0,70}})?$"
)
# "IV", "IV.", "4", "12.  The Cyclone", "IV. THE COPPER BEECHES"; not "V. The best revenge is, not to..."
_BARE_NUMBER = re.compile(
    rf"^(?P<number>{_ROMAN}|\d{{1,3}})(?:\.?|\.\s+(?P<rest>[^\s.,;:].{{0,58}}[^,;:]))$"
)
_NAMED_BODY = re.compile(
    r"^(?i:(?:(?:the\s+)?(?:first|second|third|last|final)\s+)?(?:preface|introduction|prologue|"
    r"epilogue|foreword|afterword|conclusion|postscript|envoi|l'envoi|appendix|prélude|prologo|"
    r"prólogo|vorrede|vorwort|einleitung|nachwort|avant-propos|préface))\b[^.]{0,60}\.?$"
)
_CONTENTS = re.compile(r"^\W*(?i:(?:table\s+of\s+)?contents|table\s+des\s+matières|inhalt|inhaltsverzeichnis|índice)\b")
_FRONT_MATTER = re.compile(
    r"^(?i:(?:table\s+of\s+)?contents|list\s+of\s+(?:illustrations|plates|maps)|illustrations|"
    r"transcriber'?s?’?s?\s+(?:note|notes|preface)|editor'?s?’?s?\s+note|errata|"
    r"table\s+des\s+matières|inhalt|inhaltsverzeichnis|índice|produced\s+by|dramatis\s+person\w*|"
    r"persons\s+represented|(?:introduction|preface|foreword|note)\s+(?:by|to\s+the\s+(?:project\s+gutenberg|e-?text))\b"
    r")\b.{0,60}$"
)
_BACK_MATTER = re.compile(
    r"^(?i:index|general\s+index|footnotes|endnotes|notes\s+to\s+the\s+text|transcriber'?s?’?s?\s+notes?|"
    r"errata|advertisements?|glossary|notes|publisher'?s?\s+advertisements?|catalogue\s+of\s+books|"
    r"books\s+by\s+the\s+same\s+author|the\s+end|finis|fin|ende|end\s+of\s+the\s+(?:book|volume))\b.{0,40}$"
)
_SMALL_WORDS = {
    "a", "an", "the", "and", "or", "of", "in", "on", "at", "to", "for", "by", "with", "from", "into", "de", "la",
    "le", "les", "du", "des", "et", "der", "die", "das", "und", "von", "el", "los", "y", "del",
}
_THE_END = re.compile(r"^(?i:the\s+end|finis|fin|ende)\W*$")

_MAX_SKIP = 6  # a numbered chain may skip this many lost or misprinted headings
_SKIP_COST = 0.6  # per number skipped: one skip still pays, a run of strays does not
_RESTART_COST = 1.1  # numbering starting again at 1 with no part heading above it
_TITLED_TEXT_CHARS = 120  # text below a title-only heading (a short poem's)
_BODY_TEXT_CHARS = 1500  # prose below a heading that marks the start of the body
_LOOK_BACK = 64  # members of a style a chain may pass over (stray numerals between two chapters)
_PARAGRAPH = re.compile(r"[^\n]+(?:\n[^\S\n]*\S[^\n]*)*")
# Headings closer together than this (characters of other text between them) list contents.
_LISTING_GAP_CHARS = 300
_LISTING_MIN_RUN = 3
# Untitled text before the first heading stays body text when it is this long or longer.
_UNTITLED_OPENING_CHARS = 4000


@dataclass(frozen=True)
class Section:
    index: int
    title: str
    start: int
    end: int
    kind: str = BODY  # front | body | back
    part: str | None = None


@dataclass(frozen=True)
class _Heading:
    start: int
    end: int  # end of the heading's text, including a title paragraph taken from below it
    text: str
    level: str  # "part" | "chapter" | "named" | "front" | "back"
    style: str = ""  # numbered headings: keyword and kind of number, e.g. "chapter/roman"
    number: int | None = None


def split_sections(text: str, fallback_title: str, author: str | None = None) -> list[Section]:
    """Sections that cover `text` from start to end: front matter, the body's chapters (under their
    parts), back matter. `fallback_title` (the book's title) names a book without headings; lines
    that repeat the title or name the author are title-page lines, not chapters."""
    paragraphs = [(m.start(), m.end(), m.group()) for m in _PARAGRAPH.finditer(text)]
    headings = _drop_listings(list(_candidates(paragraphs, fallback_title)))
    headings = _drop_contents_entries(text, headings)
    headings = _in_sequence(headings)
    headings = _drop_sub_sections(headings)
    headings = _titled_chapters(text, paragraphs, headings, fallback_title, author)
    return _written_by_others(text, _sections(text, headings, fallback_title), author)


def _written_by_others(text: str, sections: list[Section], author: str | None) -> list[Section]:
    """An introduction, preface or appendix at either end of the body that names the book's author
    often (NAMES_PER_1000_WORDS) is about the author, by someone else: an editor's or translator's
    essay, the correspondence in an appendix. It is front (or back) matter; the author's own preface
    seldom names its writer."""
    names = {w for w in words(author or "") if len(w) > 2}
    body = [i for i, s in enumerate(sections) if s.kind == BODY]
    if not names or len(body) < 2:
        return sections

    def about_the_author(section: Section) -> bool:
        section_words = words(text[section.start : section.end])
        named = sum(w in names for w in section_words)
        return named >= 3 and named * 1000 >= NAMES_PER_1000_WORDS * len(section_words)

    kinds = {}
    for edge, kind in ((body, FRONT), (body[::-1], BACK)):
        for i in edge[:-1]:  # never the whole body
            if not _NAMED_BODY.match(sections[i].title) or sections[i].part:
                break
            if about_the_author(sections[i]):
                kinds[i] = kind
    return [replace(s, kind=kinds.get(s.index, s.kind)) for s in sections]


def _candidates(paragraphs: list[tuple[int, int, str]], book_title: str):
    title_paragraph = -1  # a paragraph taken as the title of the heading above it
    for i, (start, end, paragraph) in enumerate(paragraphs):
        lines = [" ".join(line.split()) for line in paragraph.split("\n")]
        if i == title_paragraph or len(lines) > 3 or any(len(line) > MAX_HEADING_CHARS for line in lines):
            continue
        first = _without_book_title(lines[0], book_title)  # "LITTLE WOMEN PART 2" is "PART 2"
        heading = _classify(first, start, start + len(paragraph.split("\n")[0])) if first else None
        if heading is None:
            continue
        if len(lines) > 1 and heading.level in ("front", "back"):
            yield replace(heading, end=end)
            continue
        if heading.level in ("part", "chapter", "named") and len(lines) > 1:
            # "CHAPTER I." / "THE TITLE": a heading's title on the lines below it; anything else
            # ("ACT V / Scene I. ... / Scene II. ...", "1. WU TZU, in 1 CHUAN or 6 / chapters...") is a
            # contents entry or a numbered paragraph.
            title_below = (_bare(first) and _looks_like_title(" ".join(lines[1:]))) or (
                heading.style and len(lines) == 2 and _looks_like_title(" ".join(lines))
                and not any(c.isdigit() for c in lines[1]))  # "12. The Cyclone That Carried" / "Dorothy Away"
            if not title_below or any(_classify(line, 0, 0) is not None for line in lines[1:]):
                continue
            joined = _joinable(first) if _bare(first) else first  # a title wrapping onto the next line
            heading = replace(heading, end=end, text=f"{joined} {' '.join(lines[1:])}")
        elif heading.level in ("part", "chapter", "named") and i + 1 < len(paragraphs) and _bare(first) and _is_title(
                paragraphs[i + 1][2], heading):
            title_paragraph = i + 1
            heading = replace(heading, end=paragraphs[i + 1][1],
                              text=f"{_joinable(first)} {' '.join(paragraphs[i + 1][2].split())}")
        yield heading


def _without_book_title(line: str, book_title: str) -> str:
    title = words(book_title)
    if title and words(line)[: len(title)] == title and len(words(line)) > len(title):
        rest = re.sub(r"^\W*" + r"\W+".join(map(re.escape, title)) + r"\W*", "", line, flags=re.IGNORECASE)
        return rest or line
    return line


def _classify(line: str, start: int, end: int) -> _Heading | None:
    if not (line[0].isupper() or line[0].isdigit() or line[0] in "[_"):
        return None
    bare_line = line.strip("[]_ ")
    if _FRONT_MATTER.match(bare_line):
        return _Heading(start, end, line, "front")
    if keyword := _KEYWORD_HEADING.match(line):
        word = keyword.group("word").lower()
        number, kind = _value(keyword.group("number"))
        if number is None:
            return None
        level = "part" if word in _PART_LEVEL else "chapter"
        return _Heading(start, end, line, level, f"{word}/{kind}", number)
    if ordinal := _ORDINAL_HEADING.match(line):
        word = (ordinal.group("w1") or ordinal.group("w2")).lower()
        number, _ = _value(ordinal.group("n1") or ordinal.group("n2"))
        return _Heading(start, end, line, "part" if word in _PART_LEVEL else "chapter", f"{word}/ordinal", number)
    if _NAMED_BODY.match(line):
        return _Heading(start, end, line, "named")
    if _BACK_MATTER.match(bare_line):
        return _Heading(start, end, line, "back")
    if bare := _BARE_NUMBER.match(line):
        number, kind = _value(bare.group("number"))
        rest = bare.group("rest")
        if rest and (not _looks_like_title(rest) or any(c.isdigit() for c in rest)):
            return None
        return _Heading(start, end, line, "chapter", f"bare/{kind}", number)
    return None


def _value(number: str) -> tuple[int | None, str]:
    if number.isdigit():
        return int(number), "arabic"
    if re.fullmatch(_ROMAN, number) or (number.islower() and re.fullmatch(_ROMAN, number.upper())):
        return _roman_value(number.upper()), "roman"
    words = re.split(r"[- ]", number.lower())
    return sum(_UNITS.get(w, 0) + _TENS.get(w, 0) for w in words) or None, "words"


def _roman_value(roman: str) -> int:
    values = {"M": 1000, "D": 500, "C": 100, "L": 50, "X": 10, "V": 5, "I": 1}
    total = 0
    for char, following in zip(roman, [*roman[1:], ""]):
        value = values[char]
        total += -value if following and values[following] > value else value
    return total


def _bare(line: str) -> bool:
    """A heading with a number and no title of its own: "CHAPTER IV.", "XII", "PART TWO"."""
    if re.fullmatch(rf"(?:(?i:{_PART_WORDS}|{_CHAPTER_WORDS})\.?\s+)?{_NUMBER}\.?", line):
        return True
    ordinal = _ORDINAL_HEADING.fullmatch(line)
    return bool(ordinal and not ordinal.group("rest"))


def _is_title(paragraph: str, above: _Heading) -> bool:
    lines = paragraph.split("\n")
    text = " ".join(paragraph.split())
    if len(lines) > 2 or len(text) > MAX_HEADING_CHARS or not _looks_like_title(text):
        return False
    heading = _classify(text, 0, 0)
    if heading is None or heading.level == "named":  # "I" / "Introduction": the chapter's title
        return True
    # "7" / "I Go to Bristol": a title that happens to start with a numeral of another kind
    return heading.style.startswith("bare/") and above.style.startswith("bare/") and heading.style != above.style


def _looks_like_title(text: str) -> bool:
    """Short and capitalised like a title, not a sentence of prose or dialogue."""
    words = re.findall(r"[^\W\d_][\w'’-]*", text)
    if not words or text[0] in "\"“‘'(" or text.rstrip()[-1:] in "?!,;:\"”’":
        return False
    if text.upper() == text:
        return True
    content = [w for w in words if w.lower() not in _SMALL_WORDS]
    return bool(content) and sum(w[0].isupper() for w in content) / len(content) >= 0.6


def _joinable(first: str) -> str:
    return first if first.endswith((".", ":")) else f"{first}."


def _drop_listings(headings: list[_Heading]) -> list[_Heading]:
    """Runs of numbered or named headings with almost no text between them list contents: drop them,
    keeping the real heading(s) where a listing runs straight into the first chapter."""
    kept: list[_Heading] = []
    run: list[_Heading] = []
    for heading in [*headings, None]:
        listable = heading is not None and heading.level in ("part", "chapter", "named")
        if run and (not listable or heading.start - run[-1].end > _LISTING_GAP_CHARS):
            if len(run) < _LISTING_MIN_RUN:
                kept.extend(run)
            else:
                opening_part = [run[-2]] if run[-2].level == "part" and run[-1].level != "part" else []
                kept.extend([*opening_part, run[-1]])
            run = []
        if listable:
            run.append(heading)
        elif heading is not None:
            kept.append(heading)
    return sorted(kept, key=lambda h: h.start)


def _drop_contents_entries(text: str, headings: list[_Heading]) -> list[_Heading]:
    """Before the body starts, a heading the body repeats is an entry of a contents list."""
    start = _body_start(text, headings)

    def key(heading: _Heading):
        return (heading.style, heading.number) if heading.number is not None else words(heading.text)[:1]

    # A contents list runs from its heading to the body or to the next front matter heading.
    contents = next((i for i, h in enumerate(headings) if h.level == "front" and _CONTENTS.match(h.text)), None)
    contents_from = headings[contents].end if contents is not None else start
    contents_to = next((h.start for h in headings[contents + 1 :] if h.level == "front"), start) if contents is not None else start
    kept = []
    for i, heading in enumerate(headings):
        listed = heading.level in ("part", "chapter", "named") and heading.start < start
        if listed and (contents_from <= heading.start < contents_to or any(
                key(h) == key(heading) for h in headings[i + 1 :] if h.level == heading.level)):
            continue
        kept.append(heading)
    return kept


def _body_start(text: str, headings: list[_Heading]) -> int:
    """Where the body begins: the first heading with a stretch of prose below it (or the part heading
    right above that one)."""
    for prose_chars in (_BODY_TEXT_CHARS, _LISTING_GAP_CHARS):  # a book of short chapters: the latter
        for i, heading in enumerate(headings):
            following = headings[i + 1].start if i + 1 < len(headings) else len(text)
            if heading.level in ("part", "chapter", "named") and following - heading.end >= prose_chars:
                above = headings[i - 1] if i else None
                if above is not None and above.level == "part" and heading.start - above.end <= _LISTING_GAP_CHARS:
                    return above.start
                return heading.start
    return len(text)


def _titled_chapters(text: str, paragraphs: list[tuple[int, int, str]], headings: list[_Heading],
                     book_title: str, author: str | None) -> list[_Heading]:
    """Chapters known only by a title ("THE SON OF THE BRAHMAN", "Song of Myself"): a one-line
    paragraph that looks like a title, set off by two or more blank lines above it, with text of its
    own below it. A book's numbered headings give way to them where the titles are more numerous and
    set off more (poems with numbered sections); otherwise they only count in a book without numbered
    chapters."""
    front_end = max((h.end for h in headings if h.level == "front"), default=0)
    inside_headings = [(h.start, h.end) for h in headings]  # "XVI" / "After the Story": already a title
    found = []
    for start, end, paragraph in paragraphs[:-1]:
        line = " ".join(paragraph.split())
        if ("\n" not in paragraph and start > front_end and line[0].isalpha()
                and not any(a <= start < b for a, b in inside_headings) and len(line) <= MAX_HEADING_CHARS and _set_off(text, start)
                and _looks_like_title(line) and _classify(line, 0, 0) is None and not _title_page_line(line, book_title, author)):
            found.append(_Heading(start, end, line, "chapter", "titled"))
    merged = sorted([*headings, *found], key=lambda h: h.start)
    # A title with no text of its own below it is a title page line or a caption.
    titled = [h for i, h in enumerate(merged) if h.style == "titled" and (
        (merged[i + 1].start if i + 1 < len(merged) else len(text)) - h.end >= _TITLED_TEXT_CHARS)]
    numbered = [h for h in headings if h.level == "chapter"]
    if not titled or numbered and (len(titled) < 2 * len(numbered)
                                   or sum(_set_off(text, h.start) for h in numbered) > 0.2 * len(numbered)):
        # Still chapters: a titled section with a chapter's worth of text before the first numbered
        # chapter or after the last ("THE CUSTOM-HOUSE", a closing poem).
        outside = [h for i, h in enumerate(merged) if h.style == "titled" and numbered
                   and not numbered[0].start < h.start < numbered[-1].start
                   and (merged[i + 1].start if i + 1 < len(merged) else len(text)) - h.end >= _BODY_TEXT_CHARS]
        return sorted([*headings, *outside], key=lambda h: h.start)
    return sorted([*(h for h in headings if h.level != "chapter"), *titled], key=lambda h: h.start)


def _title_page_line(line: str, book_title: str, author: str | None) -> bool:
    line_words = words(line)
    names = [w for w in words(author or "") if len(w) > 2]
    return line_words == words(book_title) or bool(names) and sum(w in line_words for w in names) >= min(2, len(names))


def _set_off(text: str, start: int) -> bool:
    """Two or more blank lines above."""
    return text.count("\n", max(start - 3, 0), start) == 3


def _in_sequence(headings: list[_Heading]) -> list[_Heading]:
    """Keep each numbered style's longest chain (see `_longest_chain`); bare numerals need a chain of
    two or more."""
    keep: set[int] = {i for i, h in enumerate(headings) if h.number is None}
    for style in {h.style for h in headings if h.number is not None}:
        members = [i for i, h in enumerate(headings) if h.style == style]
        level = headings[members[0]].level
        # Numbering starts again after a heading of a higher level: a part, or a named section.
        restarts = [any(h.level in ("part", "named") and (level == "chapter" or h.level == "named")
                        for h in headings[previous + 1 : i]) for previous, i in zip([-1, *members], members)]
        chain = _longest_chain([headings[i].number for i in members], restarts)
        numbers = [headings[members[j]].number for j in chain]
        steps = [b - a for a, b in zip(numbers, numbers[1:]) if b != 1]
        if style.startswith("bare/") and (len(chain) < 2 or sum(step > 1 for step in steps) * 2 > len(steps)):
            continue  # numbered notes (1, 6, 12, 15...), not chapters (1, 2, 3...)
        keep.update(members[j] for j in chain)
    return [h for i, h in enumerate(headings) if i in keep]


def _longest_chain(numbers: list[int], restarts: list[bool]) -> list[int]:
    """Indexes of the best-supported run of rising numbers: each member one above the one before
    it, or a few above (a heading the text lost or misprinted, at a cost per number skipped), or 1
    again (free under a new part; elsewhere, as in cantos of three canticles with no part headings,
    at a cost that only a sequence continuing from it repays, so a stray "I." stays out)."""
    score = [0.0] * len(numbers)
    previous = [-1] * len(numbers)
    restarts_before = [0]  # restarts_before[i]: how many restarts among the first i members
    for restart in restarts:
        restarts_before.append(restarts_before[-1] + restart)
    for i, number in enumerate(numbers):
        score[i] = 1.0  # a chain may start anywhere: the first heading of a book's second volume
        for j in range(i - 1, max(i - _LOOK_BACK, 0) - 1, -1):
            if numbers[j] < number <= numbers[j] + _MAX_SKIP:
                gain = 1.0 - _SKIP_COST * (number - numbers[j] - 1)
            elif number == 1:
                gain = 1.0 if restarts_before[i + 1] > restarts_before[j + 1] else 1.0 - _RESTART_COST
            else:
                continue
            if score[j] + gain > score[i]:
                score[i], previous[i] = score[j] + gain, j
    best = max(range(len(numbers)), key=lambda i: (score[i], -i), default=-1)
    chain = []
    while best >= 0:
        chain.append(best)
        best = previous[best]
    return chain[::-1]


def _drop_sub_sections(headings: list[_Heading]) -> list[_Heading]:
    """Bare numerals between keyword chapter headings number sub-sections, not chapters."""
    keyword_chapters = [h.start for h in headings if h.level == "chapter" and not h.style.startswith("bare/")]
    if len(keyword_chapters) < 2:
        return headings
    first, last = keyword_chapters[0], keyword_chapters[-1]
    return [h for h in headings if not (h.style.startswith("bare/") and first < h.start < last)]


def _sections(text: str, headings: list[_Heading], fallback_title: str) -> list[Section]:
    body_headings = [h for h in headings if h.level in ("part", "chapter", "named")]
    if not body_headings:
        return [Section(0, fallback_title, 0, len(text))]
    first_body, last_body = body_headings[0].start, body_headings[-1].start
    # (start, title, kind, part); parts open the chapters right below them
    boundaries: list[tuple[int, str, str, str | None]] = []
    part: str | None = None
    pending_part: _Heading | None = None
    for i, heading in enumerate(headings):
        if heading.level == "front" and heading.start > first_body:
            continue  # a contents heading inside the body (a volume's own contents list) stays body text
        if heading.level == "back" and heading.start < last_body:
            continue
        if heading.level in ("front", "back"):
            if _THE_END.match(heading.text):
                after = heading.end
                if text[after:].strip():
                    boundaries.append((after, BACK_MATTER_TITLE, BACK, None))
                continue
            boundaries.append((heading.start, heading.text, heading.level, None))
            pending_part = None
            continue
        if heading.level == "part":
            part = heading.text
            following = headings[i + 1] if i + 1 < len(headings) else None
            if following is not None and following.level == "chapter" and following.start - heading.end <= _LISTING_GAP_CHARS:
                pending_part = heading
            else:  # a part whose text comes before any chapter heading: a section of its own
                boundaries.append((heading.start, heading.text, BODY, part))
            continue
        if heading.level == "named":
            following = headings[i + 1] if i + 1 < len(headings) else None
            if following is not None and following.level == "chapter" and following.number == 1:
                part = heading.text  # "FIRST EPILOGUE" over its own chapters 1, 2, 3...
                pending_part = heading if following.start - heading.end <= _LISTING_GAP_CHARS else None
                if pending_part is None:
                    boundaries.append((heading.start, heading.text, BODY, part))
                continue
            part = None
        title = f"{part}{PART_SEPARATOR}{heading.text}" if part else heading.text
        start = pending_part.start if pending_part is not None else heading.start
        boundaries.append((start, title, BODY, part))
        pending_part = None
    boundaries.sort(key=lambda b: b[0])
    opening = text[: boundaries[0][0]]
    if opening.strip():
        kind = BODY if len(opening.strip()) >= _UNTITLED_OPENING_CHARS and boundaries[0][2] != FRONT else FRONT
        boundaries.insert(0, (0, FRONT_MATTER_TITLE if kind == FRONT else fallback_title, kind, None))
    else:
        boundaries[0] = (0, *boundaries[0][1:])
    sections = []
    for start, title, kind, part in boundaries:
        if sections and not text[sections[-1][0] : start].strip():
            sections.pop()  # nothing but blank lines before the next heading: "THE END" right above "INDEX"
        sections.append((start, title, kind, part))
    return [
        Section(i, title, start, sections[i + 1][0] if i + 1 < len(sections) else len(text), kind, part)
        for i, (start, title, kind, part) in enumerate(sections)
    ]
