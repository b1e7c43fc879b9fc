"""What bad files cost a batch: one `corpus ingest` of 20 books in one batch, clean, with 1 bad file
and with 3 (failing in two stages), each on fresh stores. Counts the Dagster runs it took and the wall
time against the clean batch. The good books are real Project Gutenberg files from ../shared/corpus,
cut to their first ~12k characters of text so the bench is about runs, not embedding.
Writes bench/results/bad_batch.json and .md.

    .venv/bin/python bench/bad_batch.py
"""

import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared" / "corpus"
RESULTS = ROOT / "bench" / "results" / "bad_batch"
CORPUS = str(Path(sys.executable).with_name("corpus"))
BOOKS = 20
# file → bytes: fails in raw_books, book_text, book_text. Named to fall among the good books in the
# partitions' order, so the good books around them form several ranges (runs), as in a real library.
BAD = {
    "1400_empty.txt": b"",
    "2000_binary.txt": bytes(range(256)) * 40,
    "5000_markers-only.txt": b"*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\n",
}


def good_books(count: int) -> dict[str, bytes]:
    files = sorted([*SHARED.glob("dev/*.txt"), *SHARED.glob("more/*.txt")])[:count]
    books = {}
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        start = text.find("*** START OF")
        end = text.find("\n", text.find("***", start + 3)) + 1 if start >= 0 else 0
        books[path.name] = (text[:end] + text[end:end + 12_000] + "\n").encode()
    return books


def scenario(name: str, bad: list[str]) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"corpus-bad-batch-{name}-"))
    library = work / "library"
    library.mkdir()
    good = good_books(BOOKS - len(bad))
    for file, data in good.items():
        (library / file).write_bytes(data)
    for file in bad:
        (library / file).write_bytes(BAD[file])
    env = {**os.environ, "CORPUS_STATE_DIR": str(work / "state"), "CORPUS_LIBRARY_DIR": str(library),
           "CORPUS_BOOKS_PER_RUN": str(BOOKS), "COLUMNS": "200"}
    subprocess.run([CORPUS, "migrate"], env=env, check=True, capture_output=True)  # servers up, schema in place
    started = time.perf_counter()
    result = subprocess.run([CORPUS, "ingest"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    summary = re.search(r"ingested (\d+) books.*?(\d+) failed in .*?\((\d+) runs, (\d+) failed\)", result.stdout)
    if summary is None:
        raise SystemExit(f"{name}: no summary in the output:\n{result.stdout}\n{result.stderr}")
    stop = "import sys; from pathlib import Path; from resources.graph import falkordb_server; " \
           "falkordb_server.stop_server(Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", stop, str(work / "state" / "falkordb")], check=False)
    postmaster = work / "state" / "postgres" / "postmaster.pid"
    if postmaster.exists():  # the scenario's embedded Postgres: a fast shutdown
        os.kill(int(postmaster.read_text().split()[0]), signal.SIGINT)
    return {"bad_files": len(bad), "good_books": len(good), "exit_code": result.returncode,
            "ingested": int(summary[1]), "failed": int(summary[2]), "runs": int(summary[3]),
            "failed_runs": int(summary[4]), "wall_seconds": round(wall, 1)}


def main() -> None:
    if not SHARED.is_dir():
        raise SystemExit(f"needs the shared corpus at {SHARED}")
    runs = {
        "clean": scenario("clean", []),
        "one_bad": scenario("one", ["2000_binary.txt"]),
        "three_bad": scenario("three", list(BAD)),
    }
    clean = runs["clean"]["wall_seconds"]
    for outcome in runs.values():
        outcome["wall_vs_clean"] = round(outcome["wall_seconds"] / clean, 2)
    results = {"books_per_batch": BOOKS, "cores": os.cpu_count(), "python": platform.python_version(), **runs}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    rows = "\n".join(
        f"| {name} | {r['bad_files']} | {r['ingested']} | {r['failed']} | {r['runs']} ({r['failed_runs']} failed) | "
        f"{r['wall_seconds']} | {r['wall_vs_clean']}× | {r['exit_code']} |" for name, r in runs.items())
    RESULTS.with_suffix(".md").write_text(
        f"One `corpus ingest` of a {BOOKS}-book batch on fresh stores (`bench/bad_batch.py`, {os.cpu_count()} cores)\n\n"
        "| batch | bad files | ingested | failed | Dagster runs | wall s | vs clean | exit |\n"
        "|---|---|---|---|---|---|---|---|\n" + rows + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
