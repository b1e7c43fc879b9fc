"""Check evaluation queries as they are written: each passage phrase is in its book once, and a
paraphrase shares no run of three words with the paragraph it describes.

For the people who write queries (they read the books, never the code or the results):

    .venv/bin/python bench/retrieval/check_queries.py bench/retrieval/eval/FILE.json [...]

Exits 1 when any query fails, naming it and why.
"""

import argparse
import json
import re
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
KINDS = {"paraphrase", "detail"}


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def runs(text: str, n: int = 3) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def paragraph_around(text: str, at: int) -> str:
    start = text.rfind("\n\n", 0, at)
    end = text.find("\n\n", at)
    return text[start + 1 if start >= 0 else 0 : end if end >= 0 else len(text)]


def problems(query: dict, texts: dict[str, str], shared: Path) -> list[str]:
    from corpus_assets.books.decode import decode_book

    found = []
    for field in ("book", "kind", "lang", "query", "passage"):
        if not query.get(field):
            found.append(f"no {field}")
    if found:
        return found
    if query["kind"] not in KINDS:
        found.append(f"kind {query['kind']!r} is not one of {sorted(KINDS)}")
    files = list(shared.glob(f"*/{query['book']}.txt"))
    if len(files) != 1:
        return found + [f"book {query['book']!r} is not one file of {shared}"]
    if query["book"] not in texts:
        texts[query["book"]] = " ".join(decode_book(files[0].read_bytes()).text.replace("\n\n", "\x00").split()).replace("\x00", "\n\n")
    text = texts[query["book"]]
    phrase = " ".join(query["passage"].split())
    count = text.count(phrase)
    if count != 1:
        return found + [f"the passage phrase occurs {count} times in the book (must be exactly once)"]
    if not 4 <= len(phrase.split()) <= 15:
        found.append("the passage phrase should be 4-15 words")
    if query["kind"] == "paraphrase":
        shared_runs = runs(query["query"]) & runs(paragraph_around(text, text.index(phrase)))
        if shared_runs:
            found.append(f"paraphrase shares 3-word runs with its paragraph: {sorted(' '.join(r) for r in shared_runs)}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--shared", type=Path, default=PROJECT.parent / "shared" / "corpus")
    args = parser.parse_args()
    texts: dict[str, str] = {}
    bad = total = 0
    for path in args.files:
        for i, query in enumerate(json.loads(path.read_text())):
            total += 1
            for problem in problems(query, texts, args.shared):
                bad += 1
                print(f"{path.name}[{i}] {query.get('book')}: {problem}\n    {query.get('query')!r}")
    kinds = [q.get("kind") for path in args.files for q in json.loads(path.read_text())]
    print(f"{total} queries, {kinds.count('paraphrase')} paraphrases, {bad} problems")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
