from corpus_assets.books.chapters import FRONT_MATTER_TITLE, split_sections
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
    assert "BOOK ONE: 1805 / CHAPTER I" in titles
    assert "BOOK FIFTEEN: 1812 - 13 / CHAPTER XX" in titles
    assert any(t.startswith("FIRST EPILOGUE") for t in titles)
    assert len(sections) > 360


def test_acts_and_scenes_hamlet(shared_books):
    text, sections = sections_of(shared_books, "1524_hamlet.txt")
    assert_covers(text, sections)
    titles = [s.title for s in sections]
    assert "ACT I / SCENE I. Elsinore. A platform before the Castle." in titles
    assert "ACT V / SCENE II. A hall in the Castle." in titles


def test_letters_then_chapters_frankenstein(shared_books):
    _, sections = sections_of(shared_books, "84_frankenstein.txt")
    titles = [s.title for s in sections]
    assert titles[1:5] == ["Letter 1", "Letter 2", "Letter 3", "Letter 4"]
    assert titles[-1] == "Chapter 24"


def prose(words: str) -> str:
    return " ".join([words] * 20)  # a real section's worth of text, not a contents line


def test_other_heading_styles():
    text = "\n\n".join(
        [prose("Preface words here."), "STAVE I", prose("Marley was dead."), "Stave II.",
         prose("The first of the three spirits."), "Canto 1", prose("Midway upon the journey."),
         "BOOK ONE", "CHAPTER 1.", prose("It began."), "XIV.", prose("Numbered part.")]
    )
    titles = [s.title for s in split_sections(text, "Fallback")]
    assert titles == [FRONT_MATTER_TITLE, "STAVE I", "Stave II.", "Canto 1", "BOOK ONE / CHAPTER 1.", "BOOK ONE / XIV."]


def test_numbered_sentences_and_prose_are_not_headings():
    text = "\n\n".join([prose("I went out."), "V. The best revenge is not to become like them.", "I", prose("Short.")])
    titles = [s.title for s in split_sections(text, "T")]
    assert titles == [FRONT_MATTER_TITLE, "I"]


def test_no_headings_gives_one_section_named_after_the_book():
    text = prose("Just prose.") + "\n\nI wish I could get well faster.\n\n" + prose("No chapters at all.")
    assert [(s.title, s.start, s.end) for s in split_sections(text, "My Book")] == [("My Book", 0, len(text))]
