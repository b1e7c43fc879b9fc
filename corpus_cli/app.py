"""The `corpus` command: register and ingest books through Dagster, inspect and search the result.

Runs started here are runs of the code location, launched through the same Dagster instance
(`dagster.yaml`, Postgres storage) that `corpus dev` opens in the UI (see `corpus_cli/runs.py`).
"""

import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from corpus_cli.serve import DEFAULT_PORT
from retrieval import DEFAULT_MODE, Mode, Store
from resources import settings

app = typer.Typer(help="Turn a library of books into search-ready indexes.", no_args_is_help=True,
                  rich_markup_mode="markdown")  # a docstring's paragraphs rewrap to the terminal
console = Console()

DEMO_QUERY = "a girl falls down a rabbit hole into a strange world"


@app.command()
def migrate() -> None:
    """Bring the corpus database's schema to the revision this code needs (Alembic upgrade head),
    rebuild from Postgres a Qdrant collection made before keyword search, and Qdrant Edge segments
    made under older settings."""
    from corpus_cli.instance import code_location_resources
    from resources.postgres import head_revision
    from resources.postgres import migrate as upgrade

    with code_location_resources("postgres", "qdrant") as stores:
        upgrade(stores.postgres.url())
        outdated = stores.qdrant.drop_if_before_keyword_search()
        if behind := stores.qdrant.segments_behind_settings():
            console.print(f"Qdrant Edge: rebuilding {behind} segments to memory-map their keyword index (once; "
                          "Qdrant searches wait meanwhile)", soft_wrap=True)
            started = time.perf_counter()
            left = stores.qdrant.apply_settings()
            console.print(f"Qdrant Edge: {behind - left} segments rebuilt in {time.perf_counter() - started:.0f} s"
                          + (f"; {left} still hold their keyword index in RAM" if left else ""), soft_wrap=True)
        with stores.postgres.db() as db, stores.qdrant.open() as collection:
            # Also after a rebuild that was cut short: Postgres holds books and Qdrant none.
            empty = db.has_chunks() and collection.count() == 0
    console.print(f"corpus schema at revision {head_revision()}")
    if outdated or empty:
        why = "predated keyword search" if outdated else "holds no points while Postgres holds books"
        console.print(f"the Qdrant collection {why}: rebuilding it from Postgres (`corpus repair`)")
        repair([])


@app.command()
def register() -> None:
    """Add a partition for every new book file in the library folder."""
    from corpus_assets.registration import register_books
    from corpus_cli.instance import instance
    from resources.library import BookLibrary

    library = BookLibrary()
    registration = register_books(instance(), library)
    console.print(
        f"{registration.found} book files in {library.root()}; {len(registration.added)} newly registered",
        soft_wrap=True,
    )


@app.command()
def ingest(
    books: Annotated[list[str] | None, typer.Argument(help="Book ids to run again; default: the library's plan "
                                                           "(new and changed files in, deleted files out).")] = None,
    books_per_run: Annotated[int | None, typer.Option(help="Most books per Dagster run (default: CORPUS_BOOKS_PER_RUN, "
                                                           "20).")] = None,
    confirm_removal: Annotated[bool, typer.Option("--confirm-removal", help="Remove the books whose files are gone "
                                                  "even when they are many, or the library folder holds none.")] = False,
    retry_held: Annotated[bool, typer.Option("--retry-held", help="Try again the books held back after failing "
                                             "(bad input, or too many attempts) although their files are unchanged.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Dagster's log of each run, with a failed "
                                                                   "step's traceback.")] = False,
) -> None:
    """Bring the stores in line with the library folder, as the library sensor does: new and changed
    books are ingested (several per Dagster run; a bad book fails alone), deleted files' books are
    removed, unchanged books are skipped. A big plan into a small library (a first load) loads in bulk:
    rows first, the HNSW index built once, then SIMILAR edges (CORPUS_BULK_LOAD). Ends with a summary.

    Exit code 1 if some book failed; 2 for a bad argument or setting, a store that cannot be reached, or
    another bulk load running; 3 if books whose files are gone were kept (the library cannot be read
    whole, or the removal is too large: --confirm-removal)."""
    from corpus_assets.assets.files import file_observations
    from corpus_assets.batches import reap_dead_runs
    from corpus_assets.library_plan import bulk_load, plan_library, record_failed_run
    from corpus_assets.partitions import books_partitions
    from corpus_cli.instance import code_location_resources, instance
    from corpus_cli.runs import CodeLocationRuns, ensure_vector_index, ingest_in_runs
    from resources.library import BookLibrary

    _check_book_ids(books or [])
    migrate()
    dagster = instance()
    for run in reap_dead_runs(dagster):
        console.print(f"[yellow]run {run.run_id} had died (its process is gone): marked failed[/yellow]")
    library = BookLibrary()
    started = time.perf_counter()
    with (code_location_resources("postgres") as stores, stores.postgres.db() as db,
          CodeLocationRuns(dagster) as runs):
        if db.bulk_load_running():  # another `corpus ingest` holds the library's index down: the sensor waits too
            raise _another_bulk_load()
        plan = plan_library(dagster, library, db, confirm_removal=confirm_removal, books_per_run=books_per_run)
        if books:
            unknown = [book for book in books if book not in plan.scan.current and book not in plan.order]
            if unknown:
                console.print(f"[red]corpus: no such book: {_safe(', '.join(unknown))}[/red] (`corpus status` lists them)",
                              soft_wrap=True)
                raise typer.Exit(2)
        elif plan.removal.books and plan.removal.allowed:
            _remove(runs, plan.removal.books, "its file is gone")
        if plan.new_partitions:
            dagster.add_dynamic_partitions(books_partitions.name, plan.new_partitions)
        console.print(f"{len(plan.listing.files)} book files in {_safe(str(plan.listing.root))}; "
                      f"{len(plan.new_partitions)} newly registered", soft_wrap=True)
        explicit = list(books or []) + (sorted(plan.held_back) if retry_held else [])
        to_run = explicit or plan.ingest
        # The books' file versions, as the sensor records them (the UI shows them unsynced until ingested).
        for observation in file_observations({book: plan.scan.current[book] for book in to_run if book in plan.scan.current}):
            dagster.report_runless_asset_event(observation)
        db.forget_book_failures(explicit)  # asked for by name: tried again; a new failure is recorded if it fails
        if to_run:
            runs.start()
        with Progress(
            TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("books"),
            TimeElapsedColumn(), console=console, transient=True,
        ) as progress:
            task = progress.add_task("ingest", total=None)
            callbacks = {"record_failures": lambda run: record_failed_run(db, dagster, run, plan.order,
                                                                            plan.scan.current),
                           "on_log": _print_log if verbose else None,
                           "on_start": lambda total: progress.update(task, total=total),
                           "on_books_done": lambda count: progress.advance(task, count)}
            try:
                if bulk_load(len(to_run), len(db.book_ids())):
                    outcome = _ingest_in_bulk(runs, db, to_run, plan, callbacks)
                else:
                    built = ensure_vector_index(runs, db) if to_run else None  # a bulk load cut short left none
                    if built is not None:
                        console.print(f"HNSW index built again (run {built.run_id[:8]}): "
                                      f"{'done' if built.success else built.error}", soft_wrap=True)
                    outcome = ingest_in_runs(runs, to_run, plan.group, **callbacks)
                    outcome = replace(outcome, runs=[built, *outcome.runs]) if built else outcome
            except KeyboardInterrupt:
                console.print("[yellow]corpus: interrupted; a run already started was cancelled or finished. The "
                              "next `corpus ingest` does what is left.[/yellow]", soft_wrap=True)
                raise typer.Exit(130) from None
        db.forget_book_failures(outcome.ingested)
    if outcome.ingested or plan.removal.books and plan.removal.allowed and not books:
        _report(dagster)
    held_back = {} if books else {book: f for book, f in plan.held_back.items() if book not in explicit}
    _print_ingest_summary(outcome, plan, held_back, bool(books), time.perf_counter() - started)
    if verbose:
        _print_step_errors(dagster, [run.run_id for run in outcome.runs if not run.success])
    if outcome.failed:
        raise typer.Exit(1)
    if plan.removal.books and not plan.removal.allowed and not books:
        raise typer.Exit(3)


def _another_bulk_load() -> typer.Exit:
    console.print("[red]corpus: another `corpus ingest` is loading books in bulk[/red]; run this one when it has ended")
    return typer.Exit(2)


def _ingest_in_bulk(runs, db, to_run: list[str], plan, callbacks: dict):
    """`ingest_in_bulk` holding the bulk-load lock (its index memory setting was checked by `migrate`)."""
    from corpus_cli.runs import ingest_in_bulk

    with db.bulk_load_held() as held:
        if not held:
            raise _another_bulk_load()
        console.print(f"bulk load of {len(to_run)} books: rows first, the HNSW index built once, then SIMILAR edges "
                      "(searches read the table exactly until the index is built)")
        return ingest_in_bulk(runs, db, to_run, plan.group, plan.group_links, **callbacks)


def _report(dagster) -> None:
    """The library report after the library changed, materialized here without a run (a lone ingest has
    no daemon; under `corpus dev` the `library_upkeep` sensor runs the asset itself)."""
    from dagster import AssetCheckEvaluation, AssetMaterialization

    from corpus_assets.assets.report import library_report, write_report
    from corpus_cli.instance import code_location_resources

    with code_location_resources("postgres", "qdrant", "graph") as stores:
        report, check = write_report(stores.postgres, stores.qdrant, stores.graph)
    dagster.report_runless_asset_event(AssetMaterialization(library_report.key, metadata=report))
    dagster.report_runless_asset_event(AssetCheckEvaluation(asset_key=library_report.key, check_name=check.check_name,
                                                            passed=check.passed, metadata=check.metadata))
    console.print(f"library report: {report['books']} books, {report['books whose stores disagree']} whose stores "
                  f"disagree, {report['books with doubtful structure']} with doubtful structure "
                  f"({_safe(report['path'].path)})", soft_wrap=True)


def _print_ingest_summary(outcome, plan, held_back: dict, explicit: bool, seconds: float) -> None:
    failed_runs = sum(1 for run in outcome.runs if not run.success)
    unchanged = "" if explicit else f", {len(plan.unchanged)} unchanged"
    removed = "" if explicit or not plan.removal.allowed else f", {len(plan.removal.books)} removed"
    busy = f", {len(plan.in_flight)} left to the runs already on them" if plan.in_flight and not explicit else ""
    console.print(
        f"ingested {len(outcome.ingested)} books{unchanged}{removed}, {len(outcome.failed)} failed{busy} "
        f"in {seconds:.1f} s ({len(outcome.runs)} runs, {failed_runs} failed)", soft_wrap=True,
    )
    rows = [(book, f.stage, f.problem, "") for book, f in outcome.failed.items()]
    rows += [(book, f.stage, f.problem, "held back: failed before, file unchanged (--retry-held tries again)")
             for book, f in held_back.items()]
    if rows:
        table = Table(title="books not ingested", title_justify="left")
        for column in ("book", "stage", "reason", "note"):
            table.add_column(column, overflow="fold")
        for book, stage, problem, note in rows:
            table.add_row(*(_cell(value) for value in (book, stage, " ".join(problem.split())[:300], note)))
        console.print(table)
        console.print("each failed run's full log: `corpus ingest --verbose`, or the run in the Dagster UI (`make dev`)")
    _print_library_problems(plan.problems, plan.listing.notes)
    if plan.listing.unavailable:
        console.print(f"[red]{_safe(plan.listing.unavailable)}[/red]", soft_wrap=True)
    if plan.removal.books and not plan.removal.allowed and not explicit:
        console.print(f"[yellow]not removed: {len(plan.removal.books)} books whose files were not found "
                      f"({_safe(_named(plan.removal.books))}): {_safe(plan.removal.reason)}[/yellow]", soft_wrap=True)


def _print_library_problems(problems: list, notes: list[str] = ()) -> None:
    """The library entries that are not books (a link out of the folder, a FIFO, an unreadable file), each with its reason."""
    if problems:
        table = Table(title=f"{len(problems)} library entries skipped", title_justify="left")
        table.add_column("entry", overflow="fold")
        table.add_column("why", overflow="fold")
        for problem in problems[:50]:
            table.add_row(_cell(problem.name), _cell(problem.problem))
        if len(problems) > 50:
            table.add_row(f"… {len(problems) - 50} more", "")
        console.print(table)
    for note in notes:
        console.print(f"[dim]note: {_safe(note)}[/dim]", soft_wrap=True)


def _named(books: list[str], most: int = 10) -> str:
    return ", ".join(books[:most]) + (f" and {len(books) - most} more" if len(books) > most else "")


def _safe(text: str | None) -> str:
    """Text from a library or a user (a title, a file name, a query) inside a rich markup string: shown as written."""
    from rich.markup import escape

    from corpus_assets.books.safe_text import printable

    return escape(printable(text or ""))


def _cell(text: str | None, keep_lines: bool = False):
    """Text from a library or a user as a table cell or a line of its own: never read as markup, on one
    line unless `keep_lines` (a log, a traceback)."""
    from rich.text import Text

    from corpus_assets.books.safe_text import printable

    return Text(printable(text or "", keep_lines))


def _check_book_ids(books: list[str]) -> None:
    """Exit 2 naming the first argument that is not a book id (ids are never patterns or paths)."""
    from corpus_assets.books.library import check_book_id

    for book in books:
        try:
            check_book_id(book)
        except ValueError as error:
            console.print(f"[red]corpus: {_safe(str(error))}[/red]", soft_wrap=True)
            raise typer.Exit(2) from None


def _print_log(line: str) -> None:
    """A run's log record, as it arrives (above the progress bar)."""
    console.print(_cell(line, keep_lines=True), highlight=False, soft_wrap=True)


def _print_step_errors(dagster, run_ids: list[str]) -> None:
    from dagster import DagsterEventType

    for run_id in run_ids:
        for record in dagster.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
            error = record.dagster_event.step_failure_data.error
            console.print(f"[bold]run {run_id}, step {record.step_key}[/bold]", soft_wrap=True)
            console.print(_cell(error.to_string() if error else record.message, keep_lines=True), highlight=False,
                          soft_wrap=True)


def _remove(runs, book_ids: list[str], why: str) -> None:
    from corpus_cli.runs import remove_in_run

    result = remove_in_run(runs, book_ids)
    if not result.success:
        console.print(f"[red]removal run {result.run_id} failed for {_named(book_ids)}:[/red] {_safe(result.error)}",
                      soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"removed {len(book_ids)} books ({why}): {_named(book_ids)}", soft_wrap=True)


@app.command()
def remove(books: Annotated[list[str], typer.Argument(help="Book ids to remove.")]) -> None:
    """Remove books from Postgres, Qdrant, the graph and the artifacts, then their partitions."""
    from corpus_assets.partitions import books_partitions
    from corpus_cli.instance import code_location_resources, instance
    from corpus_cli.runs import CodeLocationRuns
    from resources.library import BookLibrary

    _check_book_ids(books)
    dagster = instance()
    with code_location_resources("postgres") as stores, stores.postgres.db() as db:
        known = set(db.book_ids()) | set(dagster.get_dynamic_partitions(books_partitions.name))
    unknown = [book_id for book_id in books if book_id not in known]
    if unknown:
        console.print(f"[red]corpus: no such book: {', '.join(unknown)}[/red] (`corpus status` lists them)", soft_wrap=True)
        raise typer.Exit(2)
    with CodeLocationRuns(dagster) as runs:
        _remove(runs, list(books), "as asked")
    listing = BookLibrary().listing()
    for book_id in books:
        if book_id in listing.files:
            console.print(f"[yellow]{book_id}: its file {_safe(listing.name_of(book_id))} is still in the library: the "
                          "next ingest (or the sensor) adds it again[/yellow]", soft_wrap=True)


@app.command()
def status(
    max_books: Annotated[int, typer.Option(help="Books listed one per row (totals cover all).")] = 50,
) -> None:
    """Books, chunks and each store's count per book; index health, the last ingest and failing checks."""
    from datetime import datetime

    from dagster import RunsFilter

    from corpus_cli.instance import code_location_resources, instance
    from corpus_assets.assets.report import corpus_summary
    from corpus_cli.runs import INGEST_JOB, LINK_JOB
    from corpus_cli.status import failing_checks, library_state
    from resources.library import BookLibrary

    with code_location_resources("postgres", "qdrant", "graph") as stores:
        stats = corpus_summary(stores.postgres, stores.qdrant, stores.graph)
        with stores.postgres.db() as db:
            failures = db.book_failures()
    table = Table(title=f"corpus: {len(stats.books):,} books")
    columns = {
        "chapters": lambda b: b.book.chapters, "tokens": lambda b: b.book.tokens, "pgvector": lambda b: b.book.chunks,
        "qdrant": lambda b: b.qdrant_points, "graph": lambda b: b.graph_chunks,
    }
    table.add_column("book", overflow="fold")
    table.add_column("title", max_width=30)
    for column in columns:
        table.add_column(column, justify="right")
    for b in stats.books[:max_books]:
        table.add_row(b.book.id, _cell(b.book.title), *(f"{value(b):,}" for value in columns.values()))
    if len(stats.books) > max_books:
        table.add_row(f"… {len(stats.books) - max_books:,} more", "", *("" for _ in columns))
    table.add_section()
    table.add_row("total", "", *(f"{sum(value(b) for b in stats.books):,}" for value in columns.values()))
    console.print(table)
    disagreeing = stats.disagreeing()
    index = "valid" if stats.hnsw_index_valid else (
        "[red]missing or invalid[/red] (a bulk load running or cut short: its books have no SIMILAR edges until "
        "`corpus ingest` builds the index and links them)")
    console.print(
        f"stores agree: {'yes' if not disagreeing else '[red]no[/red] for ' + ', '.join(b.book.id for b in disagreeing)}; "
        f"HNSW index: {index}", soft_wrap=True,
    )
    dagster = instance()
    # The latest run that ingested books: of `ingest_books`, or a bulk load's last step.
    runs = [record for job in (INGEST_JOB, LINK_JOB)
            for record in dagster.get_run_records(RunsFilter(job_name=job), limit=1)]
    if runs:
        run = max(runs, key=lambda record: record.create_timestamp)
        ended = datetime.fromtimestamp(run.end_time or run.create_timestamp.timestamp()).strftime("%Y-%m-%d %H:%M:%S")
        console.print(f"last ingest run: {run.dagster_run.run_id[:8]} {run.dagster_run.status.value} at {ended}")
    if failures:
        failed = Table(title=f"{len(failures)} books failed in their last run", title_justify="left")
        for column in ("book", "stage", "reason", "retried"):
            failed.add_column(column, overflow="fold")
        config = settings.current()
        for f in failures.values():
            failed.add_row(f.book_id, f.stage, _cell(" ".join(f.problem.split())[:300]),
                           "when its file changes" if f.bad_input else
                           f"held back after {f.attempts} attempts: when its file changes (or --retry-held)"
                           if f.attempts >= config.max_attempts else "by the next ingest or sensor tick")
        console.print(failed)
    failing = failing_checks(dagster, {b.book.id for b in stats.books})
    for check in failing:
        named = ", ".join(check.books[:10]) + (f" and {len(check.books) - 10} more" if len(check.books) > 10 else "")
        console.print(f"[red]failing check[/red] {check.asset}/{check.name} on {len(check.books)} books: {named}",
                      soft_wrap=True)
    if any(check.name.endswith("_matches_postgres") for check in failing):
        console.print("a store differs from Postgres: `corpus repair` rewrites the drifted books from Postgres")
    if not failing:
        console.print("asset checks: none failing (latest evaluation of each, per book)")
    doubtful = [b.book for b in stats.books if b.book.doubts]
    if doubtful:
        console.print(f"[yellow]{len(doubtful)} books whose chapters may be wrong[/yellow] (`corpus inspect FILE` "
                      "shows their sections):", soft_wrap=True)
        for book in doubtful[:max_books]:
            console.print(f"  {book.id}: {_safe('; '.join(book.doubts))}", soft_wrap=True, highlight=False)
    listing, removal = library_state(BookLibrary(), dagster, [b.book.id for b in stats.books])
    console.print(f"library: {len(listing.files):,} book files in {_safe(str(listing.root))}", soft_wrap=True)
    if listing.unavailable:
        console.print(f"[red]{_safe(listing.unavailable)}[/red]", soft_wrap=True)
    _print_library_problems(listing.problems, listing.notes)
    if removal.books:
        console.print(f"[yellow]{len(removal.books)} books whose files are gone ({_safe(_named(removal.books))}): "
                      + ("the next ingest or sensor tick removes them" if removal.allowed else
                         f"kept: {_safe(removal.reason)}") + "[/yellow]", soft_wrap=True)


@app.command()
def search(
    query: str,
    limit: Annotated[int, typer.Option("--limit", "-k", help="How many passages (1-1000).")] = 5,
    book: Annotated[str | None, typer.Option(help="Search only this book id.")] = None,
    store: Annotated[Store, typer.Option(help="pgvector (Postgres) or qdrant.")] = Store.pgvector,
    mode: Annotated[Mode, typer.Option(help="dense (vector similarity), keyword (BM25) or hybrid (both, "
                                            "fused by reciprocal rank).")] = DEFAULT_MODE,
    expand: Annotated[bool, typer.Option(help="Add each passage's context from the graph: the chunks "
                                               "before and after it (NEXT) and similar chunks of other books.")] = False,
) -> None:
    """Passages for QUERY from pgvector/Postgres or Qdrant, by meaning, by keywords, or both. Asked of
    `corpus serve` when it runs for the same stores (milliseconds), else answered here (model load)."""
    from corpus_cli.serve import ask_service
    from retrieval import QueryError, checked_query

    try:
        query = checked_query(query, limit, book, store, mode)  # refused in a second, before any model loads
        params = {"q": query, "k": limit, "book": book, "store": store.value, "mode": mode.value, "expand": expand}
        answer = ask_service(params) or _search_here(params)
    except QueryError as error:
        console.print(f"[red]corpus search: {_safe(str(error))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    loaded = f"; the model loaded first in {answer['model_load_ms'] / 1000:.1f} s" if "model_load_ms" in answer else ""
    console.print(f'[bold]{store}, {mode}: "{_safe(query)}"[/bold] [dim]({answer["timings_ms"]["total"]:.0f} ms{loaded})[/dim]',
                  soft_wrap=True)
    if not answer["hits"]:
        console.print("no passage found" + (": keyword search skips a language's stop words (\"to be or not to be\" "
                                            "is all stop words); --mode hybrid also searches by meaning"
                                            if mode == "keyword" else ""), soft_wrap=True)
    for hit in answer["hits"]:
        console.print(f"{hit['rank']}. [bold]{_safe(hit['title'])}[/bold] · {_safe(hit['chapter'])} · chunk {hit['ordinal']} · "
                      f"score {hit['score']:.3f}", soft_wrap=True)
        console.print(_cell(" ".join(hit["text"].split())[:400]), highlight=False)
        for other in hit["context"]:
            where = (f"{_safe(other['title'])} · {_safe(other['chapter'])} · score {other['score']:.3f}"
                     if other["relation"] == "similar" else f"chunk {other['ordinal']}")
            console.print(f"   [dim]{other['relation']}[/dim] ({where}): " + _safe(" ".join(other["text"].split())[:200]),
                          highlight=False, soft_wrap=True)


def _search_here(params: dict) -> dict:
    """The search answered in this process (a QueryError goes to the caller, which prints it)."""
    from corpus_cli.instance import code_location_resources
    from retrieval.engine import Searcher
    from retrieval.service import as_json

    with code_location_resources("postgres", "qdrant", "graph", "embedding_model") as stores:
        # One query in this process: the model encodes it (an ONNX Runtime session and its checks would
        # cost more than they save). Its load is reported apart from the search's own time.
        searcher = Searcher(stores.postgres, stores.qdrant, stores.graph, stores.embedding_model, query_encoding="torch")
        searcher.validate(params["q"], params["k"], params["book"], params["store"], params["mode"])  # an unknown book
        started = time.perf_counter()
        stores.embedding_model.load()
        load_ms = (time.perf_counter() - started) * 1000
        result = searcher.search(params["q"], params["k"], params["book"], params["store"], params["mode"],
                                 params["expand"])
    return as_json(params, result) | ({"model_load_ms": load_ms} if load_ms >= 1 else {})


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; the default keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (`corpus search` looks at CORPUS_SERVE_URL, default "
                                           "http://127.0.0.1:8000).")] = DEFAULT_PORT,
) -> None:
    """Serve search over HTTP (JSON; OpenAPI at /docs), the model loaded once: /search, /health, /stats."""
    from corpus_cli.serve import serve as run_service

    run_service(host, port)


@app.command()
def repair(
    books: Annotated[list[str] | None, typer.Argument(help="Book ids; default: every book whose Qdrant points or "
                                                            "graph nodes differ from Postgres.")] = None,
) -> None:
    """Rewrite books in Qdrant and the graph from Postgres (the source of truth); delete books only they hold."""
    from corpus_cli.instance import instance
    from corpus_cli.runs import CodeLocationRuns, repair_in_run

    _check_book_ids(books or [])
    with CodeLocationRuns(instance()) as runs:
        result = repair_in_run(runs, books or [], on_log=_print_log)
    if not result.success:
        console.print(f"[red]repair run {result.run_id} failed:[/red] {_safe(result.error)}", soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"repair run {result.run_id}: {result.summary}", soft_wrap=True)


@app.command()
def inspect(
    files: Annotated[list[Path], typer.Argument(help="Book files to parse (nothing is ingested).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list, an object per file.")] = False,
) -> None:
    """Show what the pipeline would store for book files: title, author, language, encoding, and the
    sections (front matter, chapters under their parts, back matter) with their offsets."""
    import json

    from corpus_assets.books.errors import BookError
    from corpus_cli.inspect import describe, inspect_file

    described, failed = [], 0
    for path in files:
        try:
            book = describe(inspect_file(path))
        except (BookError, OSError) as error:
            console.print(f"[red]{_safe(str(path))}: {_safe(str(error))}[/red]", soft_wrap=True, highlight=False)
            failed += 1
            continue
        described.append(book)
        if not as_json:
            _print_inspection(book)
    if as_json:
        print(json.dumps(described, ensure_ascii=False, indent=1))
    if failed:
        raise typer.Exit(1)


def _print_inspection(book: dict) -> None:
    """The book as a person reads a contents page: front matter, parts with their chapters indented
    below them, back matter, each with its size; and the parser's doubts, if any."""
    from corpus_assets.books.structure import PART_SEPARATOR

    console.print(f"[bold]{_safe(book['file'])}[/bold]", soft_wrap=True, highlight=False)
    for field in ("title", "subtitle", "author", "language", "encoding", "characters"):
        shown = f"{book[field]:,}" if isinstance(book[field], int) else _safe(str(book[field])) if book[field] else "—"
        console.print(f"  {field}: {shown}", highlight=False)
    for doubt in book["structure_doubts"]:
        console.print(f"  [yellow]doubt: {_safe(doubt)}[/yellow]", highlight=False, soft_wrap=True)
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column("section")
    table.add_column("characters", justify="right")
    part = None
    for section in book["sections"]:
        size = f"{section['end'] - section['start']:,}"
        if section["kind"] != "body":
            part = None
            table.add_row(_cell(f"  [{section['kind']}] {section['title']}"), size)
            continue
        if section["part"] and section["part"] != part:
            part = section["part"]
            if section["title"] == part:  # a part with text of its own before its first chapter
                table.add_row(_cell(f"  {part}"), size)
                continue
            table.add_row(_cell(f"  {part}"), "")
        own = section["title"].removeprefix(f"{part}{PART_SEPARATOR}") if part else section["title"]
        table.add_row(_cell(f"{'      ' if part else '  '}{own}"), size)
    console.print(table)


@app.command()
def demo() -> None:
    """Ingest the library (the sample books by default), show what was stored and search it."""
    ingest(None, settings.current().books_per_run, verbose=False)
    status(max_books=50)
    for store in Store:
        console.print()
        search(DEMO_QUERY, limit=1, book=None, store=store)
    console.print("\nOpen the Dagster UI on this state with: make dev")


@app.command()
def env(
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Print passwords as they are, not as ***.")] = False,
) -> None:
    """Print the exports that point the plain `dagster` CLI at this project's instance."""
    import shlex

    from corpus_cli.instance import dagster_home
    from resources.errors import redacted

    home = dagster_home()
    url = os.environ[settings.DAGSTER_PG_URL_ENV]
    shown = url if show_secrets else redacted(url)
    print(f"export DAGSTER_HOME={shlex.quote(str(home))}")
    print(f"export {settings.DAGSTER_PG_URL_ENV}={shlex.quote(shown)}")
    if shown != url:
        print("# the password is hidden: `corpus env --show-secrets` prints it", file=sys.stderr)


@app.command()
def dev(port: Annotated[int, typer.Option(help="Port of the Dagster UI.")] = 3000) -> None:
    """Open the Dagster UI (webserver + daemon) on the project's state, bound to localhost."""
    from corpus_cli.instance import dagster_home

    migrate()
    # Started from the home folder: from the project root Dagster would warn that the dagster.yaml
    # it sees there is not the one in use (it is: the home links to it).
    os.chdir(dagster_home())
    # The `dagster` script of this environment, found without the venv being activated.
    dagster = str(Path(sys.executable).with_name("dagster"))
    workspace = str(settings.PROJECT_ROOT / "workspace.yaml")
    os.execv(dagster, [dagster, "dev", "-w", workspace, "-h", "127.0.0.1", "-p", str(port)])


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """The `corpus` script: a store that cannot be used is one line naming it and what to do, not a traceback."""
    import sqlalchemy.exc
    from dagster_postgres.utils import DagsterPostgresException

    from resources.errors import SchemaOutOfDate, SearchTimeout, StoreUnavailable
    from resources.settings import SettingError

    # The model's weight-loading progress bar is noise beside the ingest's own (also in the runs' processes).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # SIGTERM (a service manager, `timeout`, `kill`) stops a command as Ctrl-C does: its run is cancelled
    # and its code server stopped, instead of both left behind.
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        app()
    except (StoreUnavailable, SchemaOutOfDate, SearchTimeout, SettingError) as error:
        console.print(f"[red]corpus: {_safe(str(error))}[/red]", soft_wrap=True)
        raise SystemExit(2) from None
    except (DagsterPostgresException, sqlalchemy.exc.OperationalError) as error:
        # Dagster's own storage stopped answering while the command used it (waiting on its runs): its
        # Postgres was stopped or crashed. Runs already started go on or fail on their own.
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        console.print(f"[red]corpus: Dagster's storage (Postgres) stopped answering: {_safe(first)}; when it is back "
                      "(the embedded server starts with the next command), run the command again[/red]", soft_wrap=True)
        raise SystemExit(2) from None
