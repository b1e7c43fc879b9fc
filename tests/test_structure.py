import json
import os
import re
import subprocess
import sys
from pathlib import Path

from corpus_assets.books.gutenberg import split_title
from corpus_assets.books.structure import BACK, BODY, FRONT, FRONT_MATTER_TITLE, split_sections, structure_doubts
from corpus_assets.books.decode import decode_book
from corpus_assets.books.gutenberg import split_gutenberg


def sections_of(shared_books, name):
    parts = split_gutenberg(decode_book((shared_books / name).read_bytes()).text)
    return parts.body, split_sections(parts.body, parts.title)


def assert_covers(text, sections):
    assert sections[0].start == 0 and sections[-1].end == len(text)
    for before, after in zip(sections, sections[1:]):
        assert before.end == after.start
    assert [s.index for s in sections] == list(range(len(sections)))


def test_alice_has_twelve_titled_chapters_and_no_contents_entries(shared_books):
    text, sections = sections_of(shared_books, "11_alices-adventures-in-wonderland.txt")
    assert_covers(text, sections)
    assert sections[0].title == FRONT_MATTER_TITLE
    assert [s.title for s in sections[1:]][:2] == ["CHAPTER I. Down the Rabbit-Hole", "CHAPTER II. The Pool of Tears"]
    assert len(sections) == 13
    assert all(s.end - s.start > 1000 for s in sections[1:])


def test_numbered_chapters_pride_and_prejudice(shared_books):
    text, sections = sections_of(shared_books, "1342_pride-and-prejudice.txt")
    assert_covers(text, sections)
    assert [s.title for s in sections if s.title.startswith("Chapter")] == [f"Chapter {i}" for i in range(1, 62)]


def test_books_and_chapters_war_and_peace(shared_books):
    text, sections = sections_of(shared_books, "2600_war-and-peace.txt")
    assert_covers(text, sections)
    titles = [s.title for s in sections]
    assert "BOOK ONE: 1805 · CHAPTER I" in titles
    assert "BOOK FIFTEEN: 1812 - 13 · CHAPTER XX" in titles
    assert any(t.startswith("FIRST EPILOGUE") for t in titles)
    assert len(sections) > 360


def test_acts_and_scenes_hamlet(shared_books):
    text, sections = sections_of(shared_books, "1524_hamlet.txt")
    assert_covers(text, sections)
    titles = [s.title for s in sections]
    assert "ACT I · SCENE I. Elsinore. A platform before the Castle." in titles
    assert "ACT V · SCENE II. A hall in the Castle." in titles


def test_letters_then_chapters_frankenstein(shared_books):
    _, sections = sections_of(shared_books, "84_frankenstein.txt")
    body = [s.title for s in sections if s.kind == BODY]
    assert [t.split(".")[0] for t in body[:4]] == ["Letter 1", "Letter 2", "Letter 3", "Letter 4"]
    assert body[-1] == "Chapter 24"
    assert [s.title for s in sections if s.kind == FRONT] == [FRONT_MATTER_TITLE, "CONTENTS"]


def prose(words: str) -> str:
    return " ".join([words] * 80)  # a real section's worth of text, not a contents line


def test_other_heading_styles():
    text = "\n\n".join(
        [prose("Preface words here."), "STAVE I", prose("Marley was dead."), "Stave II.",
         prose("The first of the three spirits."), "Canto 1", prose("Midway upon the journey."),
         "BOOK ONE", "CHAPTER 1.", prose("It began."), "XIV.", prose("Numbered part.")]
    )
    titles = [s.title for s in split_sections(text, "Fallback")]
    assert titles == [FRONT_MATTER_TITLE, "STAVE I", "Stave II.", "Canto 1", "BOOK ONE · CHAPTER 1."]


def test_numbered_sentences_and_prose_are_not_headings():
    text = "\n\n".join([prose("I went out."), "V. The best revenge is not to become like them.", "I", prose("Short.")])
    titles = [s.title for s in split_sections(text, "T")]
    assert titles == ["T"]  # a lone numeral is no chapter


def test_no_headings_gives_one_section_named_after_the_book():
    text = prose("Just prose.") + "\n\nI wish I could get well faster.\n\n" + prose("No chapters at all.")
    assert [(s.title, s.start, s.end) for s in split_sections(text, "My Book")] == [("My Book", 0, len(text))]


def test_lone_numerals_initials_years_and_author_lines_are_not_chapters():
    text = "\n\n".join([
        "CHAPTER I.", prose("It began."), "L. Frank Baum", prose("More."), "M.", prose("Still more."),
        "CHAPTER II.", prose("Then."), "MDCCCXXIX.", prose("A year."), "I.", prose("A stray numeral."),
        "CHAPTER III.", prose("The end."),
    ])
    assert [s.title for s in split_sections(text, "T")] == ["CHAPTER I.", "CHAPTER II.", "CHAPTER III."]


def test_the_body_wins_over_a_contents_list_and_front_back_matter_are_their_own_kinds():
    contents = "\n\n".join(["CONTENTS", "CHAPTER I. The Start", "CHAPTER II. The Middle", "CHAPTER III. The Last"])
    text = "\n\n".join([
        "Produced by a volunteer.", contents, "CHAPTER I.", "THE START", prose("Once."),
        "CHAPTER II.", "THE MIDDLE", prose("Then."), "CHAPTER III.", "THE LAST", prose("Last."),
        "THE END", "INDEX", "Apples, 12\nPears, 14",
    ])
    sections = split_sections(text, "T")
    assert [(s.kind, s.title) for s in sections] == [
        (FRONT, "Produced by a volunteer."), (FRONT, "CONTENTS"), (BODY, "CHAPTER I. THE START"),
        (BODY, "CHAPTER II. THE MIDDLE"), (BODY, "CHAPTER III. THE LAST"), (BACK, "INDEX"),
    ]
    assert sections[-1].end == len(text)


def test_an_introduction_or_appendix_about_the_author_is_someone_elses_and_kept_out():
    """An editor's introduction and appendix name the author on every page; the author's own preface does not."""
    about = " ".join(["Marcus Aurelius was born in Rome and Marcus studied with Fronto."] * 8)
    own = prose("I wrote these notes for myself, in camp, at night.")
    chapters = ["THE FIRST BOOK", prose("Of my grandfather."), "THE SECOND BOOK", prose("Begin the morning.")]
    edited = split_sections("\n\n".join(["INTRODUCTION", about, *chapters, "APPENDIX", about]), "M", "Marcus Aurelius")
    assert [(s.kind, s.title) for s in edited] == [
        (FRONT, "INTRODUCTION"), (BODY, "THE FIRST BOOK"), (BODY, "THE SECOND BOOK"), (BACK, "APPENDIX")]
    authors = split_sections("\n\n".join(["PREFACE", own, *chapters]), "M", "Marcus Aurelius")
    assert [(s.kind, s.title) for s in authors] == [
        (BODY, "PREFACE"), (BODY, "THE FIRST BOOK"), (BODY, "THE SECOND BOOK")]
    assert split_sections("\n\n".join(["INTRODUCTION", about, *chapters]), "M", None)[0].kind == BODY  # no author known


def test_parts_chapters_in_other_languages_and_two_line_headings():
    text = "\n\n".join([
        "LIVRE PREMIER", "CHAPITRE I", prose("Il était une fois."), "CHAPITRE II\nLa suite", prose("Ensuite."),
        "LIVRE DEUXIÈME", "CHAPITRE I", prose("Encore."), "Erster Teil", "Kapitel 1", prose("Es war einmal."),
        "Kapitel 2", prose("Dann."), "Capítulo III", prose("Y luego."), "Capítulo IV", prose("Fin."),
    ])
    sections = split_sections(text, "T")
    assert [(s.part, s.title) for s in sections] == [
        ("LIVRE PREMIER", "LIVRE PREMIER · CHAPITRE I"), ("LIVRE PREMIER", "LIVRE PREMIER · CHAPITRE II. La suite"),
        ("LIVRE DEUXIÈME", "LIVRE DEUXIÈME · CHAPITRE I"), ("Erster Teil", "Erster Teil · Kapitel 1"),
        ("Erster Teil", "Erster Teil · Kapitel 2"), ("Erster Teil", "Erster Teil · Capítulo III"),
        ("Erster Teil", "Erster Teil · Capítulo IV"),
    ]


def test_numbered_chapters_with_titles_below_and_numbered_notes_after_them():
    chapters = [f"{n}\n\nThe Title of Chapter {n}\n\n{prose('Words of the chapter.')}" for n in range(1, 5)]
    notes = "\n\n".join(["1. See the map.", prose("Note."), "6. SHI CHI, ch. 25.", prose("Note."),
                         "12. A later note.", prose("Note.")])
    sections = split_sections("\n\n".join([*chapters, notes]), "T")
    assert [s.title for s in sections] == [f"{n}. The Title of Chapter {n}" for n in range(1, 5)]


def test_a_book_of_titled_chapters_without_numbers():
    titles = ["THE RIVER", "WITH THE FERRYMAN", "OM"]
    text = "\n\n\n\n" + "\n\n\n\n".join(f"{title}\n\n{prose('Prose of it.')}" for title in titles)
    assert [s.title for s in split_sections(text, "T")] == titles
    assert [s.title for s in split_sections(text.replace("WITH THE FERRYMAN", "With the ferryman he"), "T")] == [
        "THE RIVER", "OM"]  # not capitalised like a title


def test_ordinal_chapters_wrapped_titles_and_cantos_of_three_canticles():
    text = "\n\n".join(["Erstes Kapitel", prose("Es war."), "Zweites Kapitel", prose("Dann."),
                        "Drittes Kapitel", prose("Ende.")])
    assert [s.title for s in split_sections(text, "T")] == ["Erstes Kapitel", "Zweites Kapitel", "Drittes Kapitel"]
    text = "\n\n".join(f"{n}. The Cyclone That Carried\nDorothy Away {'I' * n}\n\n{prose('Words.')}" for n in (1, 2, 3))
    assert [s.title for s in split_sections(text, "T")][0] == "1. The Cyclone That Carried Dorothy Away I"
    # Three canticles with no part headings, each numbering its cantos from I: all of them count,
    # and a stray "I." inside a canto does not.
    cantos = []
    for canticle in range(3):
        for n in ("I", "II", "III", "IV"):
            cantos += [f"CANTO {n}", prose(f"Verse {canticle}.")]
    cantos.insert(5, "I.")
    assert len([s for s in split_sections("\n\n".join(cantos), "T")]) == 12


def test_titles_and_subtitles():
    assert split_title(["Frankenstein", "or The Modern Prometheus"]) == ("Frankenstein", "or The Modern Prometheus")
    assert split_title(["Jane Eyre: An Autobiography"]) == ("Jane Eyre", "An Autobiography")
    assert split_title(["Walden, or Life in the Woods"]) == ("Walden", "or Life in the Woods")
    assert split_title(["The Adventures of Tom Sawyer, Complete"]) == ("The Adventures of Tom Sawyer", None)
    assert split_title(["Hamlet"]) == ("Hamlet", None)


def test_corpus_inspect_prints_what_would_be_stored_as_json(shared_books, tmp_path):
    bad = tmp_path / "empty.txt"
    bad.write_bytes(b"")
    os.mkfifo(tmp_path / "fifo.txt")  # named by the user, still never opened: reading it would wait for ever
    result = subprocess.run(
        [str(Path(sys.executable).with_name("corpus")), "inspect", "--json", str(shared_books / "84_frankenstein.txt"),
         str(bad), str(tmp_path / "fifo.txt")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "fifo.txt is not a regular file: not read" in result.stdout + result.stderr
    assert "empty.txt: the file empty.txt is empty" in result.stdout.split("[", 1)[0]
    [book] = json.loads(result.stdout[result.stdout.index("["):])
    assert (book["title"], book["subtitle"], book["encoding"]) == ("Frankenstein", "or The Modern Prometheus", "utf-8-sig")
    kinds = [s["kind"] for s in book["sections"]]
    assert kinds[:2] == [FRONT, FRONT] and kinds[2:] == [BODY] * 28
    assert all(a["end"] == b["start"] for a, b in zip(book["sections"], book["sections"][1:]))
    assert book["structure_doubts"] == []
    tree = subprocess.run([str(Path(sys.executable).with_name("corpus")), "inspect", str(shared_books / "2600_war-and-peace.txt")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "120"}).stdout
    # For a person: parts with their chapters indented below them, each with its size.
    assert "\n  BOOK ONE: 1805 \n" in tree.replace(" " * 2 + "\n", " \n") or "  BOOK ONE: 1805" in tree
    assert re.search(r"\n      CHAPTER I +\d{1,3},\d{3}\n", tree), tree[:2000]


def test_headings_in_the_languages_of_the_library():
    for headings in (["Capítulo primero. Que trata de la condición", "Capítulo segundo", "Capítulo tercero"],
                     ["CAPITOLO PRIMO.", "CAPITOLO II.", "CAPITOLO III."],
                     ["Canto Primeiro", "Canto Segundo", "Canto Terceiro"],
                     ["EERSTE HOOFDSTUK[1]", "TWEEDE HOOFDSTUK", "DERDE HOOFDSTUK", "VIERDE HOOFDSTUK",
                      "VYFDE HOOFDSTUK"],  # a note's mark, the older Dutch spelling
                     ["Ensimmäinen luku", "Toinen luku", "Kolmas luku"],
                     ["FØRSTE AKT", "ANDEN AKT", "TREDJE AKT"],
                     ["LIBER PRIMVS", "LIBER SECVNDVS", "LIBER TERTIVS"],
                     ["Chapitre dix-septième", "Chapitre dix-huitième", "Chapitre dix-neuvième"],
                     ["-I-", "-II-", "-III-"], ["_THE FIRST CHAPTER_", "_THE SECOND CHAPTER_", "_THE LAST CHAPTER_"],
                     ["C. IULI CAESARIS DE BELLO GALLICO COMMENTARIUS PRIMUS",
                      "C. IULI CAESARIS DE BELLO GALLICO COMMENTARIUS SECUNDUS"],
                     ["FEDERALIST No. 1", "FEDERALIST No. 2", "FEDERALIST No. 3"]):
        text = "\n\n".join(part for heading in headings for part in (heading, prose("Words of the chapter.")))
        assert [s.title for s in split_sections(text, "T")] == headings, headings
    # "Chapter 1.II.": volume 1, chapter 2; each volume numbers its chapters from I again.
    dotted = [f"Chapter {v}.{r}." for v in (1, 2) for r in ("I", "II", "III")]
    text = "\n\n".join(part for heading in dotted for part in (heading, prose("Words.")))
    assert [s.title for s in split_sections(text, "T")] == dotted
    # Not headings: a number's own word before words ("No one came"), a cardinal before a heading word.
    text = "\n\n".join(["CHAPTER I.", prose("Words."), "No one came.", prose("Words."), "Two letters", prose("Words."),
                        "CHAPTER II.", prose("Words.")])
    assert [s.title for s in split_sections(text, "T")] == ["CHAPTER I.", "CHAPTER II."]


def test_a_dictionarys_letters_including_those_that_are_roman_numerals():
    letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    text = "\n\n".join(part for letter in letters for part in (letter, prose(f"{letter}bout, n. A word.")))
    assert [s.title for s in split_sections(text, "T")] == letters


def test_poems_in_numbered_parts_are_pieces_not_chapters():
    poems = []
    for title, parts in (("LE CHAT", 2), ("UN FANTOME", 4), ("LA MUSIQUE", 0), ("LE FLACON", 3)):
        poems.append(f"\n\n\n  {title}\n\n")
        for n in range(1, parts + 1):
            poems.append(f"\n\n{['I', 'II', 'III', 'IV'][n - 1]}\n\n" + "  Un vers de poème qui chante.\n" * 12)
        poems.append("  Un vers de poème qui chante et se tait.\n" * 12)
    assert [s.title for s in split_sections("".join(poems), "T")] == ["LE CHAT", "UN FANTOME", "LA MUSIQUE", "LE FLACON"]


def test_an_editors_essay_before_the_novel_is_front_matter_and_cast_lists_belong_to_their_play():
    essay = [part for n in ("I.", "II.", "III.") for part in (n, prose("Manzoni wrote this; Manzoni thought that."))]
    novel = [part for n in ("PRIMO", "II", "III", "IV") for part in (f"CAPITOLO {n}.", prose("Quel ramo del lago."))]
    sections = split_sections("\n\n".join([*essay, *novel]), "I promessi sposi", "Alessandro Manzoni")
    assert [(s.title, s.kind) for s in sections] == [("I.", FRONT), ("CAPITOLO PRIMO.", BODY), ("CAPITOLO II.", BODY),
                                                    ("CAPITOLO III.", BODY), ("CAPITOLO IV.", BODY)]
    plays = []
    for play, acts in (("THE PROPOSAL", 0), ("THE BEAR", 0), ("THE THREE SISTERS", 2)):
        plays += [f"\n\n\n{play}\n\n", "CHARACTERS\n\nA LANDOWNER\nHIS DAUGHTER\n\n", prose("A room in a house.") + "\n"]
        plays += [f"\n\nACT {'I' * n}\n\n{prose('A garden.')}\n" for n in range(1, acts + 1)]
    assert [s.title for s in split_sections("".join(plays), "T")] == [
        "THE PROPOSAL", "THE BEAR", "THE THREE SISTERS", "ACT I", "ACT II"]


def test_a_scene_heading_whose_persons_wrap_onto_the_next_line():
    scenes = ["Scène première. - Valère, Élise.",
              "Scène II. - Harpagon ; Élise et Cléante, parlant ensemble, et restant\nsur le devant du théâtre.",
              "Scène III. - Harpagon, La Flèche."]
    text = "\n\n".join(part for scene in scenes for part in (scene, prose("Des mots.")))
    assert [s.title.split(" - ")[0] for s in split_sections(text, "T")] == ["Scène première.", "Scène II.", "Scène III."]


def test_titles_from_old_headers_without_accents_or_with_their_edition():
    for header, body, title in [
        ("Title: Contes de la Becasse\n", "\n\nGUY DE MAUPASSANT\n\n\nCONTES DE LA BÉCASSE\n\n", "Contes de la Bécasse"),
        ("Title: Die Leute von Seldwyla, Vol. 1\n", "", "Die Leute von Seldwyla"),
        ("Title: Cæsar's Commentaries, Books I-IV\n", "", "Cæsar's Commentaries"),
        ("Project Gutenberg Etext of Macbeth by Shakespeare\n\n", "", "Macbeth"),
    ]:
        text = f"{header}\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n{body}{prose('Words.')}\n"
        assert split_gutenberg(text).title == title


def test_doubts_about_a_books_structure_are_said_with_their_reason():
    chapters = [part for n in (1, 2, 3, 5, 6) for part in (f"CHAPTER {n}", prose("Words of it."))]
    sections = split_sections("\n\n".join(chapters), "T")
    assert structure_doubts("\n\n".join(chapters), sections) == ["chapter numbers missing: 4"]
    one = "\n\n".join(["CHAPTER I", prose("Words.") * 400, "CHAPTER II", prose("Words.")])
    assert structure_doubts(one, split_sections(one, "T")) == ["one section (CHAPTER I) holds 100% of the book"]
    listed = "\n\n".join(["CONTENTS", "\n".join(f"{n}. Chapter the {n}" for n in range(1, 21)),
                          "1. The Start", prose("Words."), "2. The End", prose("Words.")])
    assert structure_doubts(listed, split_sections(listed, "T")) == [
        "the contents list has about 20 entries, 2 sections were found"]
