"""Check label files before they are used: every heading they name is found, in order, in the book's text.

For the people who write labels (bench/structure/README.md). It reads the file as the scorer does
(decoded, the Project Gutenberg header and licence cut off) and runs the scorer's own lookup; it does
not run the structure parser, so writing a label never shows what the parser finds.

    .venv/bin/python bench/structure/check_labels.py bench/structure/labels/STEM.json [...]
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from score import PROJECT, locate  # noqa: E402  (the scorer's lookup, run as a script beside it)

FIELDS = {"file", "title", "subtitle", "author", "language", "front", "first_heading_occurrence", "body", "back"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", nargs="+", type=Path)
    parser.add_argument("--shared", type=Path, default=PROJECT.parent / "shared" / "corpus")
    args = parser.parse_args()
    from corpus_assets.books.decode import decode_book
    from corpus_assets.books.gutenberg import split_gutenberg

    bad = 0
    for path in args.labels:
        label = json.loads(path.read_text())
        missing = sorted(FIELDS - set(label))
        if missing:
            print(f"{path.name}: missing fields {missing}")
            bad += 1
            continue
        text = split_gutenberg(decode_book((args.shared / label["file"]).read_bytes()).text).body
        front, body, back, lost = locate(label, text)
        parts = sum(1 for entry in label["body"] if entry.startswith("# "))
        print(f"{path.name}: {len(body)}/{len(label['body'])} body headings found ({parts} parts), "
              f"front {len(front)}/{len(label['front'])}, back {len(back)}/{len(label['back'])}")
        for heading in lost:
            print(f"   NOT FOUND (in order, as a whole line): {heading!r}")
        bad += bool(lost)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
