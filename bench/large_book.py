"""Memory and time of one very large book through the whole pipeline, as `corpus ingest` runs it.

    .venv/bin/python bench/large_book.py [--megabytes 50]

The large book is Alice's Adventures in Wonderland (sample books) repeated to the size asked: real
prose and chapters, ~90k chunks at 50 MB, every one written to all three stores. Its chunk texts
repeat, so only the distinct ones are embedded: the run measures handling the text, chunks and
vectors of a book that size, not an hour of encoding. First the single book alone (the baseline:
model, servers, Dagster), then the large book is added and ingested; the difference in peak RSS
over the difference in size is the memory a run needs per MB of book. Last, the embedded FalkorDB
is killed (SIGKILL) and restarted: the time until it answers with the whole graph.
Writes bench/results/large_book.json and bench/results/large_book.md.
"""

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from pipeline import PROJECT, RESULTS, STATE, ingest, machine, start_servers

SOURCE_BOOK = PROJECT / "data" / "sample_books" / "11_alices-adventures-in-wonderland.txt"


def main(megabytes: Annotated[int, typer.Option(help="Size of the large book, in MB.")] = 50) -> None:
    from corpus_assets.books.decode import decode_book
    from corpus_assets.books.gutenberg import split_gutenberg

    shutil.rmtree(STATE, ignore_errors=True)
    library = STATE / "library"
    library.mkdir(parents=True)
    shutil.copy(SOURCE_BOOK, library)
    os.environ.update({"CORPUS_STATE_DIR": str(STATE), "CORPUS_LIBRARY_DIR": str(library), "HF_HUB_OFFLINE": "1"})
    os.environ.pop("DATABASE_URL", None)
    start_servers()

    results: dict = {"machine": machine()}
    results["baseline"] = {"megabytes": round(SOURCE_BOOK.stat().st_size / 2**20, 2), **ingest("baseline: one small book")}
    body = split_gutenberg(decode_book(SOURCE_BOOK.read_bytes()).text).body.strip() + "\n\n"
    large = library / "alice-many-times.txt"
    with large.open("w", encoding="utf-8") as file:
        while file.tell() < megabytes * 2**20:
            file.write(body)
    results["large"] = {"megabytes": round(large.stat().st_size / 2**20, 2), **ingest(f"large book, {megabytes} MB")}
    results["large"]["chunks"] = chunk_count("alice-many-times")
    grown = results["large"]["peak_rss_gib"] - results["baseline"]["peak_rss_gib"]
    results["graph_restart"] = graph_restart_after_kill("alice-many-times")
    results["rss_mb_per_book_mb"] = round(grown * 1024 / (results["large"]["megabytes"] - results["baseline"]["megabytes"]), 1)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "large_book.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "large_book.md").write_text(markdown(results))
    print((RESULTS / "large_book.md").read_text())


def graph_restart_after_kill(book_id: str) -> dict:
    from resources import settings
    from resources.graph import FalkorDBResource, falkordb_server

    folder = STATE / "falkordb"
    os.kill(int((folder / "falkordb.pid").read_text()), signal.SIGKILL)
    started = time.perf_counter()
    falkordb_server.ensure_server(folder, settings.current().falkordb_start_timeout)
    seconds = time.perf_counter() - started
    with FalkorDBResource().session() as session:
        chunks = session.chunk_count(book_id)
    return {"seconds": round(seconds, 2), "chunks_in_graph": chunks}


def chunk_count(book_id: str) -> int:
    from dagster import build_resources

    from resources.postgres import EmbeddedPostgresResource

    with build_resources({"postgres": EmbeddedPostgresResource()}) as built, built.postgres.db() as db:
        return db.chunk_count(book_id)


def markdown(r: dict) -> str:
    base, large, m = r["baseline"], r["large"], r["machine"]
    stages = large["stages_s"]
    return "\n".join([
        f"Machine: {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads, {m['memory_gib']} GiB.",
        "",
        "| run | book | chunks | wall s | peak RSS GiB |",
        "|---|---|---|---|---|",
        f"| baseline | {base['megabytes']} MB | – | {base['wall_s']} | {base['peak_rss_gib']} |",
        f"| large book | {large['megabytes']} MB | {large['chunks']:,} (distinct texts embedded: "
        f"{large['chunks_embedded']:,}) | {large['wall_s']} | {large['peak_rss_gib']} |",
        "",
        f"Memory per MB of book: **{r['rss_mb_per_book_mb']} MB** (peak RSS growth over size growth).",
        "",
        f"Embedded FalkorDB killed (SIGKILL) after the ingest: answering again after {r['graph_restart']['seconds']} s, "
        f"holding {r['graph_restart']['chunks_in_graph']:,} of the book's {large['chunks']:,} chunks.",
        "",
        "Large book, per stage (the run's one process keeps part of what earlier stages allocated, so a",
        "stage's RSS is an upper bound of its own):",
        "",
        "| | " + " | ".join(stages) + " |",
        "|---|" + "---|" * len(stages),
        "| seconds | " + " | ".join(str(v) for v in stages.values()) + " |",
        "| RSS GiB (peak while it ran) | " + " | ".join(str(large["stages_peak_rss_gib"].get(s, "")) for s in stages) + " |",
        "",
    ])


if __name__ == "__main__":
    typer.run(main)
