"""Numbers as books write them in headings: roman, arabic, and spelled out in the library's languages.

Spelled numbers, cardinal and ordinal, come from num2words (every form from 1 to 200 in English,
French, German, Spanish, Italian, Portuguese, Dutch, Finnish, Norwegian, Danish and Swedish:
"seventeenth", "dix-septième", "siebzehnte", "décimo séptimo", "diciassettesimo", "zeventiende",
"seitsemästoista") with their other genders and cases ("primera", "erstes", "première"), and a table
of Latin (which num2words lacks: "primus", "secundus", "LIBER PRIMVS"). Words are compared without
accents, case, spaces or hyphens, so "Décimo séptimo", "DECIMO-SEPTIMO" and "décimoséptimo" are one.
"""

import re
import unicodedata
from functools import cache

from num2words import num2words

LANGUAGES = ("en", "fr", "de", "es", "it", "pt", "pt_BR", "nl", "fi", "no", "da", "sv")
HIGHEST = 200
ROMAN = r"(?=[MDCLXVI])M{0,3}(?:C[MD]|D?C{0,3})(?:X[CL]|L?X{0,3})(?:I[XV]|V?I{0,3})"
LAST = 10**6  # "THE LAST CHAPTER", "Chapter the Last": after every other of its sequence
_LAST_WORDS = {"last", "final", "dernier", "derniere", "letzte", "letztes", "letzter", "ultimo", "ultima", "laatste",
               "viimeinen", "siste", "sidste", "sista", "ultimus"}
_LATIN = {
    1: "primus", 2: "secundus", 3: "tertius", 4: "quartus", 5: "quintus", 6: "sextus", 7: "septimus",
    8: "octavus", 9: "nonus", 10: "decimus", 11: "undecimus", 12: "duodecimus", 13: "tertius decimus",
    14: "quartus decimus", 15: "quintus decimus", 16: "sextus decimus", 17: "septimus decimus",
    18: "duodevicesimus", 19: "undevicesimus", 20: "vicesimus",
}
# Forms older books use that num2words does not give.
_OTHER_FORMS = {"undecimo": 11, "duodecimo": 12, "decimoterzo": 13, "decimoquarto": 14, "decimoquinto": 15,
                "decimosesto": 16, "decimosettimo": 17, "decimottavo": 18, "decimonono": 19, "seconde": 2}
_LATIN_CARDINALS = {1: "unus", 2: "duo", 3: "tres", 4: "quattuor", 5: "quinque", 6: "sex", 7: "septem", 8: "octo",
                    9: "novem", 10: "decem", 11: "undecim", 12: "duodecim", 20: "viginti"}


def key(text: str) -> str:
    """A number word as compared: lower case, no accents, no spaces or hyphens."""
    plain = unicodedata.normalize("NFKD", text.lower())
    return re.sub(r"[\s\-‐]+", "", "".join(c for c in plain if not unicodedata.combining(c)))


def _inflections(word: str, language: str) -> set[str]:
    """The other genders and cases of an ordinal: "primero" → "primera", "erste" → "erstes"."""
    forms = {word}
    if language in ("es", "it", "pt", "pt_BR") and word.endswith("o"):
        forms |= {word[:-1] + "a", word[:-1] + "os", word[:-1] + "as"}
    if language == "es" and word.endswith(("primero", "tercero")):
        forms.add(word[:-1])  # "primer capítulo"
    if language == "fr":
        forms |= {word + "s", word.replace("premier", "premiere"), word.replace("second", "seconde")}
    if language == "de" and word.endswith("e"):
        forms |= {word + ending for ending in ("r", "s", "n", "m")}
    if language in ("no", "da", "sv") and word.endswith("e"):
        forms.add(word + "n")
    if language == "nl":
        forms.add(word.replace("ij", "y"))  # the older spelling: "vyfde", "zevende"
    return forms


@cache
def spelled() -> dict[str, int]:
    """Every spelled number word known, by `key`: its value."""
    return {word: number for word, (number, _) in _spelled_forms().items()}


@cache
def ordinals() -> frozenset[str]:
    """The spelled numbers (by `key`) that are ordinals: "first", "erstes", "segundo", "primus"."""
    return frozenset(word for word, (_, ordinal) in _spelled_forms().items() if ordinal)


@cache
def _spelled_forms() -> dict[str, tuple[int, bool]]:
    table: dict[str, tuple[int, bool]] = {}
    for number in range(HIGHEST, 0, -1):  # lower numbers win a clash of forms
        for language in LANGUAGES:
            for form in ("cardinal", "ordinal"):
                try:
                    word = num2words(number, lang=language, to=form)
                except NotImplementedError:
                    continue
                for inflected in _inflections(word, language):
                    table[key(inflected)] = (number, form == "ordinal")
        if number in _LATIN:
            stem = _LATIN[number]
            for inflected in (stem, stem.replace("us", "a"), stem.replace("us", "um"), stem.replace("us", "i")):
                table[key(inflected)] = (number, True)
                table[key(inflected.replace("u", "v"))] = (number, True)  # LIBER PRIMVS
        if number in _LATIN_CARDINALS:
            table[key(_LATIN_CARDINALS[number])] = (number, False)
    for word, number in _OTHER_FORMS.items():
        for inflected in _inflections(word, "it") | _inflections(word, "es"):
            table.setdefault(key(inflected), (number, True))
    table.pop(key("a"), None)  # "un" / "une" stay ("Chapitre un"); a lone article never counts
    return table


def roman_value(roman: str) -> int:
    values = {"M": 1000, "D": 500, "C": 100, "L": 50, "X": 10, "V": 5, "I": 1}
    total = 0
    for char, following in zip(roman, [*roman[1:], ""]):
        value = values[char]
        total += -value if following and values[following] > value else value
    return total


def value(token: str) -> tuple[int | None, str]:
    """A number written as one token, and how: "arabic", "roman", "ordinal" ("second") or "words" ("two")
    (None if it is none)."""
    if token.isdigit() and len(token) <= 3:
        return int(token), "arabic"
    if re.fullmatch(ROMAN, token) or (token.islower() and re.fullmatch(ROMAN, token.upper())):
        return roman_value(token.upper()), "roman"
    if key(token) in _LAST_WORDS:
        return LAST, "ordinal"
    number = spelled().get(key(token))
    return (number, "ordinal" if key(token) in ordinals() else "words") if number else (None, "")


def leading_number(tokens: list[str], most: int = 4) -> tuple[int, int | None, str]:
    """The number the first tokens spell (up to `most` of them: "décimo séptimo", "vingt et unième"),
    as (tokens used, value, kind); (0, None, "") when they spell none."""
    for used in range(min(most, len(tokens)), 0, -1):
        if used == 1:
            number, kind = value(tokens[0])
        else:
            joined = key("".join(tokens[:used]))
            number, kind = spelled().get(joined), "ordinal" if joined in ordinals() else "words"
        if number:
            return used, number, kind
    return 0, None, ""
