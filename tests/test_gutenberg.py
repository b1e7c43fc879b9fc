import csv

from corpus_assets.books.decode import decode_book
from corpus_assets.books.gutenberg import split_gutenberg

BOILERPLATE = ("START OF THE PROJECT", "START OF THIS PROJECT", "END OF THE PROJECT", "END OF THIS PROJECT",
               "Project Gutenberg License", "gutenberg.org/license")


def test_strips_boilerplate_and_reads_metadata_of_every_shared_book(shared_books):
    manifest = shared_books.parent / "MANIFEST.tsv"
    for row in csv.DictReader(manifest.open(encoding="utf-8"), delimiter="\t"):
        parts = split_gutenberg(decode_book((shared_books / row["file"]).read_bytes()).text)
        assert parts.has_markers, row["file"]
        assert parts.title.startswith(row["title"]), (row["file"], parts.title)
        assert parts.author == row["author"], row["file"]
        assert parts.language == row["language"], row["file"]
        for phrase in BOILERPLATE:
            assert phrase.lower() not in parts.body.lower(), (row["file"], phrase)
        assert len(parts.body) > 0.8 * len(decode_book((shared_books / row["file"]).read_bytes()).text) - 25_000


def test_body_keeps_the_first_and_last_words_of_the_book(shared_books):
    text = decode_book((shared_books / "11_alices-adventures-in-wonderland.txt").read_bytes()).text
    body = split_gutenberg(text).body
    assert body.strip().startswith("ALICE’S ADVENTURES IN WONDERLAND")
    assert body.strip().endswith("THE END")


def test_marker_variants():
    text = (
        "The Project Gutenberg EBook of Old Tales, by Ann Writer\n\nsome licence\n\n"
        "***START OF THE PROJECT GUTENBERG EBOOK OLD TALES***\n"
        "Produced by a volunteer\nand friends\n\n"
        "Once upon a time.\n\n"
        "***END OF THE PROJECT GUTENBERG EBOOK OLD TALES***\nlicence text\n"
    )
    parts = split_gutenberg(text)
    assert parts.body.strip() == "Once upon a time."
    assert (parts.title, parts.author) == ("Old Tales", "Ann Writer")
    assert text[parts.body_offset :].startswith(parts.body)


def test_old_small_print_header_and_end_line():
    text = (
        "Project Gutenberg's Early Text, by Someone\n\n"
        "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\n"
        "The story itself.\n\n"
        "End of Project Gutenberg's Early Text, by Someone\n"
    )
    parts = split_gutenberg(text)
    assert parts.body.strip() == "The story itself."
    assert parts.title == "Early Text"


def test_plain_text_without_markers_passes_through_whole():
    text = "Just a story.\n\nWith two paragraphs.\n"
    parts = split_gutenberg(text)
    assert parts.body == text
    assert not parts.has_markers
    assert parts.title is None
