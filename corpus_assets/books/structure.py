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
from corpus_assets.books.numbers import LAST, ROMAN, key, leading_number, value

# Bump when the same text would split differently: stored books made by an older version are then
# ingested again (the library plan), and book_text shows stale in Dagster.
STRUCTURE_VERSION = "4"
FRONT, BODY, BACK = "front", "body", "back"
NAMES_PER_1000_WORDS = 2.0  # the author's name this often: an introduction about the author
PART_SEPARATOR = " · "
FRONT_MATTER_TITLE = "Front matter"
BACK_MATTER_TITLE = "Back matter"
MAX_HEADING_CHARS = 80

# Heading words of the library's languages, by level (compared without case or accents).
_PART_WORDS = {
    "en": "book part volume vol act canticle",
    "fr": "livre partie tome acte",
    "de": "buch teil band abteilung akt aufzug",
    "es": "libro parte tomo acto jornada",
    "it": "libro parte volume tomo atto",
    "pt": "livro parte volume tomo acto ato",
    "nl": "boek deel bedrijf",
    "la": "liber pars volumen actus",
    "fi": "kirja osa naytos",
    "no": "bok bog del akt handling bind",
}
_CHAPTER_WORDS = {
    "en": "chapter chap scene stave canto letter section essay lecture sermon adventure",
    "fr": "chapitre scene lettre chant",
    "de": "kapitel szene auftritt brief gesang",
    "es": "capitulo escena carta canto",
    "it": "capitolo scena lettera canto",
    "pt": "capitulo cena carta canto",
    "nl": "hoofdstuk tooneel toneel brief zang",
    "la": "caput capitulum commentarius epistula epistola",
    "fi": "luku runo kohtaus",
    "no": "kapitel kapittel scene optrin brev",
}
# "FEDERALIST No. 1", "Nr. 12": a number's own word, counted only in a sequence and only before digits.
_NUMBER_WORDS = {"no", "nr", "number", "num", "numero", "nummer"}
_PART_LEVEL = {word for listed in _PART_WORDS.values() for word in listed.split()}
_HEADING_WORDS = _PART_LEVEL | _NUMBER_WORDS | {word for listed in _CHAPTER_WORDS.values() for word in listed.split()}
# Between a heading word and its number: "Chapter the First", "THE FIRST BOOK", "Der erste Teil".
_ARTICLES = {"the", "his", "le", "la", "der", "die", "das", "el", "il", "lo", "o", "a", "het", "de", "den"}
# Around a heading: "-II-", "_THE FIRST CHAPTER_", "[ I ]", "* IV *"; a footnote's mark after it: "HOOFDSTUK[1]".
_DECORATION = " \t_*=~•·-–—[](){}<>#"
_NOTE_MARK = re.compile(r"\s*\[\d{1,4}\]$")
_WORD_SPANS = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
_MAX_PREFIX_WORDS = 8  # "C. IULI CAESARIS DE BELLO GALLICO COMMENTARIUS SECUNDUS"
_MAX_REST_CHARS = 72
_LETTER = re.compile(r"[A-Z]\.?")
_BARE_NUMBER = re.compile(
    rf"^(?P<number>{ROMAN}|\d{{1,3}})(?:\.?|\.\s+(?P<rest>[^\s.,;:].{{0,58}}[^,;:]))$"
)
# Sections a book names, in the library's languages: English, French, German, Spanish, Italian,
# Portuguese, Dutch, Latin, Finnish, Norwegian/Danish.
_NAMED_BODY = re.compile(
    r"^(?i:(?:(?:the\s+)?(?:first|second|third|last|final)\s+)?(?:preface|introduction|prologue|"
    r"epilogue|foreword|afterword|conclusion|postscript|envoi|l'envoi|appendix|"
    r"prélude|préface|avant-propos|avertissement|épilogue|"
    r"vorrede|vorwort|einleitung|nachwort|prolog|epilog|"
    r"prologo|prólogo|introducción|prefacio|epílogo|advertencia|"
    r"introduzione|prefazione|epilogo|conclusione|"
    r"introdução|prefácio|"
    r"inleiding|voorwoord|voorrede|nawoord|proloog|epiloog|"
    r"praefatio|prooemium|"
    r"johdanto|esipuhe|alkusanat|loppusanat|"
    r"indledning|innledning|forord|efterord|etterord))\b[^.]{0,60}\.?$"
)
_CONTENTS = re.compile(r"^\W*(?i:(?:table\s+of\s+)?contents|table\s+des\s+matières|inhalt|inhaltsverzeichnis|índice)\b")
_FRONT_MATTER = re.compile(
    r"^(?i:(?:table\s+of\s+)?contents|list\s+of\s+(?:illustrations|plates|maps)|illustrations|"
    r"transcriber'?s?’?s?\s+(?:note|notes|preface)|editor'?s?’?s?\s+note|errata|"
    r"table\s+des\s+matières|inhalt|inhaltsverzeichnis|índice|produced\s+by|dramatis\s+person\w*|"
    # The persons of a play, in the library's languages: front matter, and inside the body (a collection
    # of plays) part of the play above them, not a section of its own.
    r"persons\s+represented|persons\s+of\s+the\s+play|characters|personnages|personen|"
    r"personajes|personaggi|personagens|personerne|personer|henkilöt|"
    r"(?:introduction|preface|foreword|note)\s+(?:by|to\s+the\s+(?:project\s+gutenberg|e-?text))\b"
    r")\b.{0,60}$"
)
_CAST = re.compile(r"^(?i:dramatis\s+person|persons\s+(?:represented|of\s+the\s+play)|characters|personnages|"
                   r"personen|personajes|personaggi|personagens|personerne|personer|henkilöt)")
_BACK_MATTER = re.compile(
    r"^(?i:index|general\s+index|footnotes|endnotes|notes?\s+to\s+(?:the\s+text|chapter|book|canto|act)\b|transcriber'?s?’?s?\s+notes?|"
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
_PIECE_PART_CHARS = 5000  # a numbered part of a poem (median); chapters of prose run longer
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
    number: int | None = None  # its heading's number in its sequence, when it has one
    numbering: str | None = None  # that sequence (the heading's style): where numbers are looked for gaps


@dataclass(frozen=True)
class _Heading:
    start: int
    end: int  # end of the heading's text, including a title paragraph taken from below it
    text: str
    level: str  # "part" | "chapter" | "named" | "front" | "back"
    style: str = ""  # numbered headings: their heading word and prefix ("chapter/"), or "bare/roman"
    number: int | None = None
    volume: int | None = None  # "Chapter 2.IV": the chapter's volume, where its numbering starts again


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
    headings = _essay_before_the_book(text, headings, author)
    return _written_by_others(text, _sections(text, headings, fallback_title), author)


def _essay_before_the_book(text: str, headings: list[_Heading], author: str | None) -> list[_Heading]:
    """Numbered sections before the book's own chapters, in a numbering of their own ("I." ... "X."
    before "CAPITOLO PRIMO"), whose text names the book's author often (NAMES_PER_1000_WORDS): an
    editor's essay about the author, front matter as one section, not chapters."""
    chapters = [h for h in headings if h.level == "chapter" and h.number is not None]
    if not chapters or not author:
        return headings
    styles = [h.style for h in chapters]
    main = max(set(styles), key=styles.count)
    group = []
    for heading in headings:
        if heading.level in ("front", "back", "part"):  # a volume's heading above it all
            continue
        if heading.level != "chapter" or heading.style == main or heading.number is None:
            break
        group.append(heading)
    if len(group) < 2:
        return headings
    end = next((h.start for h in headings if h.start > group[-1].start and h not in group), len(text))
    essay_words = words(text[group[0].start : end])
    names = {w for w in words(author) if len(w) > 2}
    named = sum(w in names for w in essay_words)
    if named < 3 or named * 1000 < NAMES_PER_1000_WORDS * len(essay_words):
        return headings
    return [replace(h, level="front") if h is group[0] else h for h in headings if h is group[0] or h not in group]


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
                and not any(c.isdigit() for c in lines[1])) or (  # "12. The Cyclone That Carried" / "Dorothy Away"
                # "Scène V. - Harpagon ; Élise et Cléante, parlant ensemble, et restant" / "sur le devant..."
                heading.style.endswith("/") and not _bare(first) and len(first) >= 50 and not first.endswith((".", "!", "?")))
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
    if not (line[0].isupper() or line[0].isdigit() or line[0] in "[_*-—–(<=~•"):
        return None
    core = _NOTE_MARK.sub("", line).strip(_DECORATION)
    if not core or not (core[0].isupper() or core[0].isdigit()):
        return None
    if _FRONT_MATTER.match(core):
        return _Heading(start, end, line, "front")
    numbered = numbered_heading(core)
    if numbered and numbered.prefix and _BACK_MATTER.match(core):  # "NOTE TO CHAPTER XXIX"
        return _Heading(start, end, line, "back")
    if numbered:
        level = "part" if numbered.word in _PART_LEVEL else "chapter"
        # The heading word makes the style, whatever the number's form: "Scène première", "Scène II".
        # A prefix, or a number's own word ("No."), makes a style that counts only in a sequence.
        style = f"{numbered.prefix}/{numbered.word}" if numbered.prefix or numbered.word in _NUMBER_WORDS else f"{numbered.word}/"
        return _Heading(start, end, line, level, style, numbered.number, numbered.volume)
    if _NAMED_BODY.match(core):
        return _Heading(start, end, line, "named")
    if _BACK_MATTER.match(core):
        return _Heading(start, end, line, "back")
    if _LETTER.fullmatch(core) and not _BARE_NUMBER.match(core):  # "A", "B.": a dictionary's letters
        return _Heading(start, end, line, "chapter", "bare/letter", ord(core[0]) - 64)
    if bare := _BARE_NUMBER.match(core):
        number, kind = value(bare.group("number"))
        rest = bare.group("rest")
        if rest and (not _looks_like_title(rest) or any(c.isdigit() for c in rest)):
            return None
        # "-II-" and "II." are told apart: a decorated numeral is a style of its own.
        around = (line[: len(line) - len(line.lstrip(_DECORATION))] + "…" + line[len(line.rstrip(_DECORATION)):]).replace(" ", "")
        return _Heading(start, end, line, "chapter", f"bare/{kind}" + ("" if around == "…" else f"/{around}"), number)
    return None


@dataclass(frozen=True)
class Numbered:
    word: str  # the heading word, as compared ("chapter", "capitulo")
    number: int
    kind: str  # arabic, roman, words
    prefix: str = ""  # words before the heading word
    volume: int | None = None  # "Chapter 2.IV": 2


def numbered_heading(line: str) -> Numbered | None:
    """A numbered heading in any of the library's languages: "CHAPTER IV. The Title", "Chapter the
    First", "THE FIRST BOOK", "Canto Segundo", "EERSTE HOOFDSTUK", "Capítulo décimo séptimo", "LIBER
    PRIMVS", "Chapter 2.IV." (volume 2, chapter 4), "FEDERALIST No. 12". Words before the heading word
    ("C. IULI CAESARIS DE BELLO GALLICO COMMENTARIUS SECUNDUS") are its prefix: part of its style, so
    only headings that repeat them form a sequence. None for anything else."""
    spans = [(m.start(), m.end(), m.group()) for m in _WORD_SPANS.finditer(line)]
    texts = [text for _, _, text in spans]
    tokens = [key(text) for text in texts]
    for i, token in enumerate(tokens[: _MAX_PREFIX_WORDS + 1]):
        if token not in _HEADING_WORDS:
            continue
        # The heading word first: "Chapter IV", "Chapter the First", "Canto Segundo".
        j = i + 1 + (i + 1 < len(tokens) and tokens[i + 1] in _ARTICLES)
        used, number, kind = leading_number(texts[j:])
        first, after, volume = i, spans[j + used - 1][1] if used else 0, None
        if used == 1 and j + 1 < len(spans) and spans[j + 1][0] == after + 1 and line[after] == ".":
            inner, inner_number, inner_kind = leading_number(texts[j + 1 : j + 2])
            if inner and inner_kind in ("arabic", "roman"):  # "Chapter 1.II."
                volume, number, kind, after = number, inner_number, inner_kind, spans[j + 1][1]
        if not used and i > 0:  # the number first: "THE FIRST BOOK", "Erstes Kapitel", "EERSTE HOOFDSTUK"
            for count in (2, 1):  # an ordinal, or a numeral ("1. Kapitel"); not "TWO LETTERS"
                if i >= count and (found := leading_number(texts[i - count : i]))[0] == count and (
                        found[2] in ("ordinal", "roman") or found[2] == "arabic" and line[spans[i - 1][1]:][:1] == "."):
                    used, number, kind = found
                    first = i - count - (i > count and tokens[i - count - 1] in _ARTICLES)
                    after = spans[i][1]
                    break
        if not used or token in _NUMBER_WORDS and kind not in ("arabic", "roman"):  # "No one came": no heading
            continue
        rest = line[after:]
        if rest and not (rest[0] in ".:,;—–-)" or rest[0].isspace()) or len(rest) > _MAX_REST_CHARS:
            continue
        prefix = " ".join(tokens[:first])
        if prefix and (len(line) > MAX_HEADING_CHARS or not _looks_like_title(line)):
            continue
        return Numbered(token, number, kind, prefix, volume)
    return None


def _bare(line: str) -> bool:
    """A heading with a number and no title of its own: "CHAPTER IV.", "XII", "PART TWO", "-II-"."""
    core = _NOTE_MARK.sub("", line).strip(_DECORATION)
    if bare := _BARE_NUMBER.fullmatch(core):
        return not bare.group("rest")
    numbered = numbered_heading(core)
    return numbered is not None and not numbered.prefix and all(
        key(w) in _HEADING_WORDS | _ARTICLES or value(w)[0] for w in _WORD_SPANS.findall(core))


def _is_title(paragraph: str, above: _Heading) -> bool:
    lines = paragraph.split("\n")
    text = " ".join(paragraph.split())
    if len(lines) > 2 or len(text) > MAX_HEADING_CHARS or not _looks_like_title(text):
        return False
    heading = _classify(text, 0, 0)
    # "I" / "Introduction", "The Title of Chapter 1": the chapter's title
    if heading is None or heading.level == "named" or heading.style and not heading.style.endswith("/") and not heading.style.startswith("bare/"):
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
    first_body = next((h.start for h in headings if h.level in ("part", "chapter", "named")), len(text))
    front_end = max((h.end for h in headings if h.level == "front" and h.start < first_body), default=0)
    inside_headings = [(h.start, h.end) for h in headings]  # "XVI" / "After the Story": already a title
    # A play's title right above its persons: in a collection of plays, each play's cast list is its own.
    casts = [h.start for h in headings if h.level == "front" and _CAST.match(h.text.strip(_DECORATION))]
    found = []
    for start, end, paragraph in paragraphs[:-1]:
        line = " ".join(paragraph.split())
        above_cast = any(0 < cast - end <= _LISTING_GAP_CHARS for cast in casts)
        if ("\n" not in paragraph and (start > front_end or above_cast) and line[0].isalpha()
                and not any(a <= start < b for a, b in inside_headings) and len(line) <= MAX_HEADING_CHARS and _set_off(text, start)
                and _looks_like_title(line) and _classify(line, 0, 0) is None and not _title_page_line(line, book_title, author)):
            found.append(_Heading(start, end, line, "chapter", "titled"))
    merged = sorted([*headings, *found], key=lambda h: h.start)
    sections_of_pieces = _numbered_under_titles(text, merged)
    if sections_of_pieces:
        headings = [h for h in headings if h not in sections_of_pieces]
        merged = [h for h in merged if h not in sections_of_pieces]

    def text_below(i: int) -> int:
        """Characters from the heading to the next one; the persons of a play listed below its title
        (front matter inside the body) are the play's own text."""
        following = next((h.start for h in merged[i + 1 :]
                          if h.level != "front" or h.start < first_body and h.start not in casts), len(text))
        return following - merged[i].end

    # A title with no text of its own below it is a title page line or a caption.
    titled = [h for i, h in enumerate(merged) if h.style == "titled" and text_below(i) >= _TITLED_TEXT_CHARS]
    numbered = [h for h in headings if h.level == "chapter"]
    if not titled or numbered and (len(titled) < 2 * len(numbered)
                                   or sum(_set_off(text, h.start) for h in numbered) > 0.2 * len(numbered)):
        # Still chapters: a titled section with a chapter's worth of text before the first numbered
        # chapter or after the last ("THE CUSTOM-HOUSE", a closing poem).
        outside = [h for i, h in enumerate(merged) if h.style == "titled" and numbered
                   and not numbered[0].start < h.start < numbered[-1].start and text_below(i) >= _BODY_TEXT_CHARS]
        return sorted([*headings, *outside], key=lambda h: h.start)
    return sorted([*(h for h in headings if h.level != "chapter"), *titled], key=lambda h: h.start)


def _numbered_under_titles(text: str, merged: list[_Heading]) -> set[_Heading]:
    """Bare numerals that number the parts of titled pieces (poems in parts: "UN FANTOME" / "I. LES
    TÉNÈBRES" / "II. LE PARFUM", later "LE CHAT" / "I" / "II"): runs that start at 1 right under a title,
    again and again, with pieces shorter than a chapter. They are not chapters: the titles are."""
    runs: list[list[_Heading]] = []
    for i, heading in enumerate(merged[:-1]):
        below = merged[i + 1]
        if (heading.style != "titled" or not below.style.startswith("bare/") or below.number != 1
                or below.start - heading.end > _LISTING_GAP_CHARS):
            continue
        run = [below]
        for following in merged[i + 2 :]:
            if following.style != below.style or following.number != run[-1].number + 1:
                break
            run.append(following)
        runs.append(run)
    members = [h for run in runs for h in run]
    if len(runs) < 2:
        return set()
    following_starts = {h.start: (merged[i + 1].start if i + 1 < len(merged) else len(text)) for i, h in enumerate(merged)}
    sizes = sorted(following_starts[h.start] - h.start for h in members)
    return set(members) if sizes[len(sizes) // 2] < _PIECE_PART_CHARS else set()


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
    # A lone "C", "D", "I" or "X" is a roman numeral or a letter of the alphabet: the sequence decides.
    headings = sorted([*headings, *(replace(h, style="bare/letter", number=ord(h.text.strip(_DECORATION)[0]) - 64)
                                    for h in headings if h.style == "bare/roman" and _LETTER.fullmatch(h.text.strip(_DECORATION)))],
                      key=lambda h: h.start)
    keep: set[int] = {i for i, h in enumerate(headings) if h.number is None}
    chain_length: dict[str, int] = {}
    for style in {h.style for h in headings if h.number is not None}:
        members = [i for i, h in enumerate(headings) if h.style == style]
        level = headings[members[0]].level
        # Numbering starts again after a heading of a higher level (a part, a named section), or in a
        # new volume ("Chapter 2.I" after "Chapter 1.XL").
        restarts = [any(h.level in ("part", "named") and (level == "chapter" or h.level == "named")
                        for h in headings[previous + 1 : i])
                    or previous >= 0 and headings[i].volume is not None and headings[i].volume != headings[previous].volume
                    for previous, i in zip([-1, *members], members)]
        chain = _longest_chain([headings[i].number for i in members], restarts)
        numbers = [headings[members[j]].number for j in chain]
        steps = [b - a for a, b in zip(numbers, numbers[1:]) if b not in (1, LAST)]
        # A bare numeral, or a heading under a repeated title, counts only in company: numbered notes
        # (1, 6, 12, 15...) are not chapters (1, 2, 3...).
        if (style.startswith("bare/") or not style.endswith("/")) and (
                len(chain) < 2 or sum(step > 1 for step in steps) * 2 > len(steps)):
            continue
        keep.update(members[j] for j in chain)
        chain_length[style] = len(chain)
    kept: dict[int, _Heading] = {}
    for i in sorted(keep):
        heading = headings[i]
        other = kept.get(heading.start)
        if other is None or chain_length.get(heading.style, 0) > chain_length.get(other.style, 0):
            kept[heading.start] = heading
    return list(kept.values())


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
            if number == LAST:  # "THE LAST CHAPTER" follows any chapter of its style
                gain = 1.0
            elif numbers[j] < number <= numbers[j] + _MAX_SKIP:
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
    # (start, title, kind, part, number, style); parts open the chapters right below them
    boundaries: list[tuple[int, str, str, str | None, int | None, str | None]] = []
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
                    boundaries.append((after, BACK_MATTER_TITLE, BACK, None, None, None))
                continue
            boundaries.append((heading.start, heading.text, heading.level, None, None, None))
            pending_part = None
            continue
        if heading.level == "part":
            part = heading.text
            following = headings[i + 1] if i + 1 < len(headings) else None
            if following is not None and following.level == "chapter" and following.start - heading.end <= _LISTING_GAP_CHARS:
                pending_part = heading
            else:  # a part whose text comes before any chapter heading: a section of its own
                boundaries.append((heading.start, heading.text, BODY, part, None, None))
            continue
        if heading.level == "named":
            following = headings[i + 1] if i + 1 < len(headings) else None
            if following is not None and following.level == "chapter" and following.number == 1:
                part = heading.text  # "FIRST EPILOGUE" over its own chapters 1, 2, 3...
                pending_part = heading if following.start - heading.end <= _LISTING_GAP_CHARS else None
                if pending_part is None:
                    boundaries.append((heading.start, heading.text, BODY, part, None, None))
                continue
            part = None
        title = f"{part}{PART_SEPARATOR}{heading.text}" if part else heading.text
        start = pending_part.start if pending_part is not None else heading.start
        boundaries.append((start, title, BODY, part, heading.number, heading.style or None))
        pending_part = None
    boundaries.sort(key=lambda b: b[0])
    opening = text[: boundaries[0][0]]
    if opening.strip():
        kind = BODY if len(opening.strip()) >= _UNTITLED_OPENING_CHARS and boundaries[0][2] != FRONT else FRONT
        boundaries.insert(0, (0, FRONT_MATTER_TITLE if kind == FRONT else fallback_title, kind, None, None, None))
    else:
        boundaries[0] = (0, *boundaries[0][1:])
    sections = []
    for boundary in boundaries:
        if sections and not text[sections[-1][0] : boundary[0]].strip():
            sections.pop()  # nothing but blank lines before the next heading: "THE END" right above "INDEX"
        sections.append(boundary)
    return [
        Section(i, title, start, sections[i + 1][0] if i + 1 < len(sections) else len(text), kind, part, number, style)
        for i, (start, title, kind, part, number, style) in enumerate(sections)
    ]


# A body section holding more than this share of a long book's body: its chapters were likely not found.
_DOUBTFUL_SHARE, _LONG_BOOK_CHARS = 0.4, 150_000


def structure_doubts(text: str, sections: list[Section]) -> list[str]:
    """Why a book's sections may be wrong, for a person to check (`book_text` metadata, `corpus status`,
    `corpus inspect`): one section holding a large share of a long book, a numbered sequence with
    numbers missing, a contents list much longer or shorter than the chapters found."""
    doubts = []
    body = [s for s in sections if s.kind == BODY]
    body_chars = sum(s.end - s.start for s in body)
    if body_chars >= _LONG_BOOK_CHARS:
        largest = max(body, key=lambda s: s.end - s.start)
        share = (largest.end - largest.start) / body_chars
        if share > _DOUBTFUL_SHARE:
            doubts.append(f"one section ({largest.title[:60]}) holds {share:.0%} of the book" if len(body) > 1
                          else f"no chapters found in a book of {body_chars:,} characters")
    doubts += _gaps(body)
    contents = next((s for s in sections if s.kind == FRONT and _CONTENTS.match(s.title)), None)
    if contents is not None:
        entries = _contents_entries(text[contents.start : contents.end])
        parts = len({s.part for s in body if s.part})  # a contents list may name the parts (acts) alone
        if entries >= 5 and all(abs(entries - found) > max(3, 0.25 * entries) for found in (len(body), len(sections), parts)):
            doubts.append(f"the contents list has about {entries} entries, {len(body)} sections were found")
    return doubts


def _contents_entries(contents: str) -> int:
    """Entries a contents list holds: its numbered lines ("XII  The Title", "Chapter 3. ...") where it
    numbers them (a title may wrap onto more lines), else its paragraphs; less the heading."""
    numbered = 0
    for line in contents.splitlines()[1:]:
        words_ = _WORD_SPANS.findall(line)[:2]
        if words_ and (value(words_[0])[1] in ("arabic", "roman") and words_[0].isupper() or words_[0].isdigit()
                       or key(words_[0]) in _HEADING_WORDS and len(words_) > 1 and value(words_[1])[0]):
            numbered += 1
    return numbered if numbered >= 5 else len(_PARAGRAPH.findall(contents)) - 1


def _gaps(body: list[Section]) -> list[str]:
    """Numbers missing from a numbered sequence of chapters ("XVIII" between "XVII" and "XIX")."""
    found: dict[tuple[str | None, str], list[int]] = {}
    for section in body:
        if section.number is not None and section.number != LAST and section.numbering:
            found.setdefault((section.part, section.numbering), []).append(section.number)
    doubts = []
    for (part, _), numbers in found.items():
        missing = [n for a, b in zip(numbers, numbers[1:]) if a < b for n in range(a + 1, b)]
        if len(numbers) >= 3 and missing:
            where = f" in {part[:40]}" if part else ""
            doubts.append(f"chapter numbers missing{where}: {', '.join(map(str, missing[:5]))}"
                          + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return doubts
