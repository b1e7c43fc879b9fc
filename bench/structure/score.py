"""Score what `corpus inspect` reports against the labelled structure set (bench/structure/labels/).

Per book and overall: title (and subtitle) exact; chapter boundaries found / missed / spurious;
front and back matter kept out of the body. A labelled heading is found when a body section starts
at it, or at most `TOLERANCE` characters above it (a part heading opens the chapter right below it).
Spurious: a body section that starts at no labelled heading. Target: every title right, and on
every book >= 95 % of boundaries found with <= 5 % spurious (of the labelled boundaries).

    .venv/bin/python bench/structure/score.py [--shared ../shared/corpus] [--book STEM] [--show]

Writes bench/results/structure.json and .md.
"""

import argparse
import bisect
import json
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
LABELS = PROJECT / "bench" / "structure" / "labels"
SPLIT = PROJECT / "bench" / "structure" / "split.json"  # the books set aside at random before any rule changed
RESULTS = PROJECT / "bench" / "results" / "structure"
TOLERANCE = 400
RECALL_TARGET, SPURIOUS_TARGET = 0.95, 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=PROJECT.parent / "shared" / "corpus")
    parser.add_argument("--book", help="score only the label file with this stem")
    parser.add_argument("--show", action="store_true", help="list each missed and spurious boundary")
    parser.add_argument("--split", choices=("tune", "test", "all"), default="all",
                        help="score the books rules are tuned on, the held-aside test books (score them once, at the "
                             "end), or both (the results files are written only for all)")
    args = parser.parse_args()
    split = json.loads(SPLIT.read_text())
    chosen = {"tune": set(split["tune"]), "test": set(split["test"]), "all": set(split["tune"]) | set(split["test"])}[args.split]
    labels = [label for label in (json.loads(p.read_text()) for p in sorted(LABELS.glob("*.json")))
              if label["file"] in chosen and (not args.book or Path(label["file"]).stem == args.book)]
    files = [args.shared / label["file"] for label in labels]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        sys.exit(f"bench-structure needs the labelled books in {args.shared}: {', '.join(missing)} not found")
    from corpus_cli.inspect import describe, inspect_file

    books = []
    for label, path in zip(labels, files, strict=True):
        book = inspect_file(path)  # parsed once: `corpus inspect --json` prints describe(book)
        books.append(score(label, describe(book), book.text, args.show))
    results = {"books": books, "overall": overall(books)}
    for name in ("tune", "test"):
        part = [b for b in books if b["book"] in split[name]]
        if part:
            results[name] = overall(part)
    results["split"] = {"seed": split["seed"], "test": split["test"]}
    if args.book is None and args.split == "all":
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        RESULTS.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


def line_offsets(text: str) -> list[tuple[int, str]]:
    offsets, position = [], 0
    for line in text.split("\n"):
        offsets.append((position, " ".join(line.split())))
        position += len(line) + 1
    return offsets


def locate(label: dict, text: str) -> tuple[list[int], list[tuple[int, bool]], list[int], list[str]]:
    """Offsets of the labelled front headings, body headings (with is-part) and back headings, and
    the labels that could not be found."""
    at: dict[str, list[int]] = {}  # each line's offsets, in order
    for offset, line in line_offsets(text):
        at.setdefault(line, []).append(offset)
    position, lost = 0, []

    def find(heading: str, after: int, occurrence: int = 1) -> int | None:
        offsets = at.get(heading, [])
        i = bisect.bisect_left(offsets, after) + occurrence - 1
        return offsets[i] if i < len(offsets) else None

    front = []
    for heading in label["front"]:
        offset = find(heading, 0)
        if offset is None:
            lost.append(heading)
        else:
            front.append(offset)
    body = []
    for i, entry in enumerate(label["body"]):
        is_part = entry.startswith("# ")
        offset = find(entry.removeprefix("# "), position, label["first_heading_occurrence"] if i == 0 else 1)
        if offset is None:
            lost.append(entry)
            continue
        body.append((offset, is_part))
        position = offset + 1
    back = []
    for heading in label["back"]:
        offset = find(heading, position)
        if offset is None:
            lost.append(heading)
        else:
            back.append(offset)
            position = offset + 1
    return front, body, back, lost


def score(label: dict, book: dict, text: str, show: bool) -> dict:
    front, body, back, lost = locate(label, text)
    sections = book["sections"]
    body_starts = [s["start"] for s in sections if s["kind"] == "body"]
    found = [e for e, _ in body if any(e - TOLERANCE <= s <= e + 2 for s in body_starts)]
    missed = [e for e, _ in body if e not in set(found)]
    spurious = [s for s in body_starts if s > 0 and not any(e - TOLERANCE <= s <= e + 2 for e, _ in body)]

    def kind_at(offset: int) -> str:
        return next(s["kind"] for s in sections if s["start"] <= offset < max(s["end"], s["start"] + 1))

    matter = front + back
    kept_out = [m for m in matter if kind_at(m) != "body"]
    expected = len(body)
    result = {
        "book": label["file"],
        "title_ok": book["title"] == label["title"],
        "title": book["title"],
        "subtitle_ok": book["subtitle"] == label["subtitle"],
        "author_ok": book["author"] == label["author"],
        "language_ok": (book["language"] or "") == label["language"],
        "boundaries": expected,
        "found": len(found),
        "missed": len(missed),
        "spurious": len(spurious),
        "recall": round(len(found) / expected, 3) if expected else 1.0,
        "spurious_rate": round(len(spurious) / max(expected, 1), 3),
        "matter": len(matter),
        "matter_kept_out": len(kept_out),
        "labels_not_in_text": lost,
    }
    result["meets_target"] = (result["title_ok"] and result["recall"] >= RECALL_TARGET
                              and result["spurious_rate"] <= SPURIOUS_TARGET)
    if show:
        heading_at = dict(line_offsets(text))
        print(f"== {label['file']}: title {book['title']!r} vs {label['title']!r}")
        for e in missed:
            print(f"   missed   {e:>8} {heading_at.get(e, '')!r}")
        for s in spurious:
            print(f"   spurious {s:>8} {next(x['title'] for x in sections if x['start'] == s)!r}")
        for m in matter:
            if m not in kept_out:
                print(f"   matter in body {m:>8} {heading_at.get(m, '')!r}")
    return result


def overall(books: list[dict]) -> dict:
    boundaries = sum(b["boundaries"] for b in books)
    return {
        "books": len(books),
        "titles_right": sum(b["title_ok"] for b in books),
        "subtitles_right": sum(b["subtitle_ok"] for b in books),
        "boundaries": boundaries,
        "recall": round(sum(b["found"] for b in books) / max(boundaries, 1), 3),
        "spurious_rate": round(sum(b["spurious"] for b in books) / max(boundaries, 1), 3),
        "matter_kept_out": f"{sum(b['matter_kept_out'] for b in books)}/{sum(b['matter'] for b in books)}",
        "books_meeting_target": sum(b["meets_target"] for b in books),
    }


def markdown(results: dict) -> str:
    rows = [
        "| book | title | boundaries | found | missed | spurious | front/back kept out | target |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for b in results["books"]:
        rows.append(
            f"| {b['book'].split('/')[-1]}{' (test)' if b['book'] in results['split']['test'] else ''} | {'ok' if b['title_ok'] else 'WRONG: ' + b['title']} | {b['boundaries']} "
            f"| {b['found']} | {b['missed']} | {b['spurious']} | {b['matter_kept_out']}/{b['matter']} "
            f"| {'yes' if b['meets_target'] else 'no'} |"
        )
    def line(name: str, o: dict) -> str:
        return (f"{name}: {o['titles_right']}/{o['books']} titles, {o['subtitles_right']}/{o['books']} subtitles; "
                f"boundaries found {o['recall']:.1%}, spurious {o['spurious_rate']:.1%} of {o['boundaries']}; "
                f"front/back matter kept out {o['matter_kept_out']}; books meeting the target "
                f"{o['books_meeting_target']}/{o['books']}.\n")

    return ("# Book structure on the labelled set (`make bench-structure`)\n\n" + "\n".join(rows) + "\n\n"
            + line("Overall", results["overall"])
            + "".join("\n" + line(f"{name.capitalize()} split", results[name]) for name in ("tune", "test") if name in results))


if __name__ == "__main__":
    main()
