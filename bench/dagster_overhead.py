"""What Dagster itself costs a step of books, and whether that grows with the library (issue #33:
"something per step grows with the instance").

Side by side, in one run, on the project's own Dagster instance (Postgres storage, a fresh state
folder), steps of 100 books interleaved arm by arm so that drift hits both alike:

1. Recording one metadata entry per book on its partition, with 300 and 9,000 books registered:
   Dagster's `add_asset_metadata(partition_key=...)` called per book as is, against `for_each_book`,
   which keeps the library's partition keys for the loop.
2. Storing the events of a run of a stage and its per-book check (about four events per book), with
   9,000 books registered: dagster-postgres's event log as shipped (a new connection per statement)
   against the project's pooled one (resources/postgres/dagster_events.py, dagster.yaml).
3. With `--baseline TREE` (a checkout of an earlier commit: `git worktree add /tmp/base COMMIT`): the
   whole pipeline, `corpus ingest` of the same 100 new books (bench-scale's synthetic books and
   stand-in encoder) into a library of 9,000 registered books, by TREE's code and by this tree's,
   alternated; milliseconds per chunk of every stage and check but the encoder.

    .venv/bin/python bench/dagster_overhead.py [--baseline TREE]     # ~1 min, +~12 min with --baseline

Writes bench/results/dagster_overhead.json and .md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "bench"))
RESULTS = PROJECT / "bench" / "results"
BOOKS_PER_STEP = 100
SIZES = (300, 9_000)  # the first holds REPEATS steps of books
REPEATS = 3
# dagster-postgres as shipped: the instance the project used before its pooled event log.
_SHIPPED_STORAGE = ("storage:\n  postgres:\n    postgres_url:\n      env: CORPUS_DAGSTER_PG_URL\n"
                    "telemetry:\n  enabled: false\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier commit to compare the pipeline with")
    parser.add_argument("--ingests", type=int, default=2, help="ingests per tree with --baseline, alternated")
    args = parser.parse_args()
    result = steps()
    if args.baseline:
        result["pipeline"] = pipeline_side_by_side(args.baseline.resolve(), args.ingests)
    write(result)


def steps() -> dict:
    os.environ["CORPUS_STATE_DIR"] = tempfile.mkdtemp(prefix="corpus-dagster-overhead-")
    from dagster import AssetCheckExecutionContext, AssetExecutionContext, DagsterInstance, materialize

    from corpus_assets.assets._per_book import for_each_book
    from corpus_assets.batches import range_tags
    from corpus_assets.checks import evaluate_books
    from corpus_assets.partitions import book_asset, book_check, books_partitions
    from corpus_cli.instance import instance as corpus_instance

    seconds: dict[str, list[float]] = {}

    def timed(arm: str):
        def decorate(fn):
            def step(context: AssetExecutionContext) -> None:
                started = time.perf_counter()
                fn(context)
                seconds.setdefault(arm, []).append(time.perf_counter() - started)

            step.__name__ = arm
            return book_asset(name=arm)(step)

        return decorate

    @timed("dagster_per_call")
    def dagster_per_call(context: AssetExecutionContext) -> None:
        for book_id in context.partition_keys:
            context.add_asset_metadata({"chunks": 1}, partition_key=book_id)

    @timed("for_each_book")
    def through_for_each_book(context: AssetExecutionContext) -> None:
        for_each_book(context, context.partition_keys, lambda book_id: (None, {"chunks": 1}))

    @book_check(asset=through_for_each_book)
    def books_pass(context: AssetCheckExecutionContext):
        yield from evaluate_books(context, lambda book_id: (True, {"chunks": 1}))

    pooled = corpus_instance()  # the project's dagster.yaml
    shipped_home = Path(tempfile.mkdtemp(prefix="dagster-shipped-"))
    (shipped_home / "dagster.yaml").write_text(_SHIPPED_STORAGE)
    shipped = DagsterInstance.from_config(str(shipped_home))  # the same database, unpooled

    result: dict = {"books_per_step": BOOKS_PER_STEP, "repeats": REPEATS, "metadata": [], "events": {}}
    registered = 0
    keys: list[str] = []
    for size in SIZES:
        keys = [f"book-{i:05d}" for i in range(size)]
        pooled.add_dynamic_partitions(books_partitions.name, keys[registered:])
        registered = size
        for repeat in range(REPEATS):
            books = keys[repeat * BOOKS_PER_STEP : (repeat + 1) * BOOKS_PER_STEP]
            for asset in (dagster_per_call, through_for_each_book):
                materialize([asset], instance=pooled, tags=range_tags(books), raise_on_error=True)
        for arm in ("dagster_per_call", "for_each_book"):
            per_book_ms = statistics.median(seconds.pop(arm)) / BOOKS_PER_STEP * 1000
            result["metadata"].append({"books registered": size, "arm": arm, "ms per book": round(per_book_ms, 2)})
            print(result["metadata"][-1], flush=True)

    runs: dict[str, list[float]] = {"shipped": [], "pooled": []}
    for repeat in range(REPEATS):
        for arm, instance in (("shipped", shipped), ("pooled", pooled)):
            first = (2 * repeat + (arm == "pooled") + REPEATS) * BOOKS_PER_STEP  # books not run before
            started = time.perf_counter()
            materialize([through_for_each_book, books_pass], instance=instance,
                        tags=range_tags(keys[first : first + BOOKS_PER_STEP]), raise_on_error=True)
            runs[arm].append(time.perf_counter() - started)
    for arm, walls in runs.items():
        result["events"][arm] = {"run seconds": round(statistics.median(walls), 2),
                                 "ms per book": round(statistics.median(walls) / BOOKS_PER_STEP * 1000, 1)}
        print(arm, result["events"][arm], flush=True)
    shipped.dispose()
    pooled.dispose()
    for key in ("DAGSTER_HOME", "CORPUS_DAGSTER_PG_URL"):  # set for this state's instance
        os.environ.pop(key, None)
    return result


def pipeline_side_by_side(baseline: Path, ingests: int) -> dict:
    from scale import non_encode_ms, own_servers, timed_ingest
    from scale_library import build_standin_model, paragraph_pool, write_book

    pool = paragraph_pool()
    model = build_standin_model(PROJECT / "bench" / ".state" / "standin-minilm-calibrated", pool)
    base_env = dict(os.environ)
    runs: dict[str, list[dict]] = {"baseline": [], "this tree": []}
    for ingest in range(ingests):
        for arm, tree in (("baseline", baseline), ("this tree", PROJECT)):
            work = Path(tempfile.mkdtemp(prefix=f"corpus-overhead-{ingest}-"))
            (work / "library").mkdir()
            for number in range(BOOKS_PER_STEP):
                write_book(work / "library", 100_000 + number, pool, 86_000)
            os.environ.clear()
            os.environ.update(base_env)
            os.environ.update({"CORPUS_STATE_DIR": str(work / "state"), "CORPUS_LIBRARY_DIR": str(work / "library"),
                               "CORPUS_EMBEDDING_MODEL": str(model), "CORPUS_BOOKS_PER_RUN": str(BOOKS_PER_STEP),
                               "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree)})
            own_servers(work / "state")
            # The library's other books, registered by the tree's own code (its dagster.yaml, its instance).
            subprocess.run([sys.executable, "-c", "from corpus_cli.instance import instance; instance()"
                            f".add_dynamic_partitions('books', [f'other-{{i:05d}}' for i in range({SIZES[1]})])"],
                           check=True, capture_output=True, cwd=tree)
            # The registered books have no file: their removal waits for a confirmation (exit 3), as it should.
            runs[arm].append(timed_ingest(f"{arm}, ingest {ingest + 1}: {BOOKS_PER_STEP} new books, {SIZES[1]:,} registered",
                                          ok=(0, 3)))
            for key in ("DAGSTER_HOME", "CORPUS_DAGSTER_PG_URL"):
                os.environ.pop(key, None)
    os.environ.clear()
    os.environ.update(base_env)
    summary = {arm: {"non-encode ms per chunk": [round(non_encode_ms(r), 2) for r in rs],
                     "wall s": [r["wall_s"] for r in rs], "chunks": rs[0]["chunks"],
                     "stages ms per chunk": {stage: round(1000 * statistics.median(r["stages_s"].get(stage, 0) for r in rs)
                                                          / rs[0]["chunks"], 3) for stage in rs[0]["stages_s"]}}
               for arm, rs in runs.items()}
    summary["ratio"] = round(statistics.median(summary["this tree"]["non-encode ms per chunk"])
                             / statistics.median(summary["baseline"]["non-encode ms per chunk"]), 3)
    summary["baseline_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=baseline,
                                                capture_output=True, text=True).stdout.strip()
    print(json.dumps(summary, indent=1), flush=True)
    return summary


def write(result: dict) -> None:
    by = {(r["books registered"], r["arm"]): r["ms per book"] for r in result["metadata"]}
    result["metadata_growth"] = {arm: round(by[(SIZES[1], arm)] / by[(SIZES[0], arm)], 2)
                                 for arm in ("dagster_per_call", "for_each_book")}
    result["events_ratio"] = round(result["events"]["pooled"]["run seconds"] / result["events"]["shipped"]["run seconds"], 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dagster_overhead.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"Dagster's own cost in a step of {BOOKS_PER_STEP} books, median of {REPEATS} (bench/dagster_overhead.py)", "",
             "Recording one metadata entry per book:", "",
             "| books registered | Dagster's call per book | for_each_book |", "|---|---|---|"]
    lines += [f"| {size:,} | {by[(size, 'dagster_per_call')]} ms | {by[(size, 'for_each_book')]} ms |" for size in SIZES]
    lines += ["", f"A run of a stage and its per-book check, {SIZES[1]:,} books registered:", "",
              "| event log | run | per book |", "|---|---|---|"]
    lines += [f"| {arm} | {r['run seconds']} s | {r['ms per book']} ms |" for arm, r in result["events"].items()]
    lines += ["", f"pooled / shipped: {result['events_ratio']}x"]
    if "pipeline" in result:
        pipeline = result["pipeline"]
        lines += ["", f"`corpus ingest` of the same {BOOKS_PER_STEP} new books into a library of {SIZES[1]:,} registered "
                  f"books, every stage and check but the encoder, ms per chunk (baseline: {pipeline['baseline_commit']}):", "",
                  "| tree | ingests, alternated | median |", "|---|---|---|"]
        lines += [f"| {arm} | {', '.join(map(str, pipeline[arm]['non-encode ms per chunk']))} | "
                  f"{statistics.median(pipeline[arm]['non-encode ms per chunk'])} |" for arm in ("baseline", "this tree")]
        lines += ["", f"this tree / baseline: {pipeline['ratio']}x"]
    (RESULTS / "dagster_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
