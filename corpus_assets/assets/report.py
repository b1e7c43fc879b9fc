"""The library as a whole: one report over every book, for people to look at in the Dagster UI.

`library_report` is not partitioned: it reads what the stores hold for every book (Postgres, Qdrant,
the graph), each book's last materialization and failure, and builds a pandas DataFrame, kept as
CSV in the state folder and shown as a table in the asset's metadata. It runs after ingests (its
automation condition: when a book's indexes are updated, once the runs in flight are done) and with
the nightly checks; its check `stores_agree_on_every_book` names the books whose stores disagree.
"""

from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from corpus_assets.assets.graph import book_graph, similar_chunks
from corpus_assets.assets.pgvector import pgvector_chunks
from corpus_assets.assets.qdrant import qdrant_points
from resources import settings
from resources.graph import GraphResource
from resources.postgres import PostgresResource
from resources.postgres.store import BookSummary
from resources.qdrant import QdrantResource

REPORT_FILE = "library_report.csv"
_SHOWN_ROWS = 50  # books listed in the UI's table (the CSV holds every one)
COLUMNS = ["book", "title", "author", "language", "sections", "chunks", "tokens", "qdrant_points", "graph_chunks",
           "stores_agree", "structure_doubts", "last_written", "failure"]


@dataclass(frozen=True)
class BookStats:
    book: BookSummary
    qdrant_points: int
    graph_chunks: int

    @property
    def stores_agree(self) -> bool:
        return self.book.chunks == self.qdrant_points == self.graph_chunks


@dataclass(frozen=True)
class CorpusSummary:
    books: list[BookStats]
    hnsw_index_valid: bool

    def disagreeing(self) -> list[BookStats]:
        """Books whose Qdrant points or graph chunks differ in number from their Postgres chunks."""
        return [b for b in self.books if not b.stores_agree]


def corpus_summary(postgres: PostgresResource, qdrant: QdrantResource, graph: GraphResource) -> CorpusSummary:
    """What each store holds of every book (`corpus status` and the library report)."""
    with postgres.db() as db:
        summaries, index = db.book_summaries(), db.hnsw_index_state()
    with qdrant.open() as collection:
        points = collection.points_per_book([b.id for b in summaries])
    with graph.session() as session:
        nodes = session.chunk_counts()
    books = [BookStats(b, qdrant_points=points.get(b.id, 0), graph_chunks=nodes.get(b.id, 0)) for b in summaries]
    return CorpusSummary(books=books, hnsw_index_valid=index.valid)


def library_frame(postgres: PostgresResource, qdrant: QdrantResource, graph: GraphResource) -> pd.DataFrame:
    """One row per book: what each store holds of it, its structure's doubts, when Postgres last
    stored it and why it last failed (a book that failed before any store held it too)."""
    summary = corpus_summary(postgres, qdrant, graph)
    with postgres.db() as db:
        failures = db.book_failures()
    rows = [{
        "book": s.book.id, "title": s.book.title, "author": s.book.author, "language": s.book.language,
        "sections": s.book.chapters, "chunks": s.book.chunks, "tokens": s.book.tokens, "qdrant_points": s.qdrant_points,
        "graph_chunks": s.graph_chunks, "stores_agree": s.stores_agree, "structure_doubts": "; ".join(s.book.doubts),
        "last_written": _when(s.book.updated_at),
        "failure": f"{failures[s.book.id].stage}: {failures[s.book.id].problem}" if s.book.id in failures else "",
    } for s in summary.books]
    stored = {s.book.id for s in summary.books}
    rows += [{"book": f.book_id, "title": None, "author": None, "language": None, "sections": 0, "chunks": 0, "tokens": 0,
              "qdrant_points": 0, "graph_chunks": 0, "stores_agree": True, "structure_doubts": "",
              "last_written": None, "failure": f"{f.stage}: {f.problem}"}
             for f in failures.values() if f.book_id not in stored]
    return pd.DataFrame(rows, columns=COLUMNS)


def _when(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if moment else None


def write_report(postgres: PostgresResource, qdrant: QdrantResource, graph: GraphResource) -> tuple[dict, AssetCheckResult]:
    """The report written (CSV in the state folder): its metadata, and its check's result. The asset
    and `corpus ingest` (a run-less materialization: a lone ingest has no daemon to run the asset) both
    make it here."""
    frame = library_frame(postgres, qdrant, graph)
    path = settings.current().state_dir / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    shown = frame.head(_SHOWN_ROWS)
    table = MetadataValue.table(
        records=[TableRecord({k: (v if v is None or isinstance(v, (bool, int, float)) else str(v))
                              for k, v in row.items()}) for row in shown.astype(object).where(shown.notna(), None).to_dict("records")],
        schema=TableSchema(columns=[TableColumn(name, "bool" if name == "stores_agree" else
                                                "int" if name in ("sections", "chunks", "tokens", "qdrant_points", "graph_chunks")
                                                else "string") for name in COLUMNS]),
    )
    languages = frame["language"].fillna("unknown").value_counts()
    disagreeing = frame[~frame["stores_agree"]]
    metadata = {
        "books": len(frame), "chunks": int(frame["chunks"].sum()), "tokens": int(frame["tokens"].sum()),
        "languages": MetadataValue.md("\n".join(f"- {name}: {count}" for name, count in languages.items())),
        "books whose stores disagree": len(disagreeing),
        "books with doubtful structure": int((frame["structure_doubts"] != "").sum()),
        "books failed": int((frame["failure"] != "").sum()),
        "book table" + (f" (first {_SHOWN_ROWS} books)" if len(frame) > _SHOWN_ROWS else ""): table,
        "path": MetadataValue.path(str(path)),
    }
    check = AssetCheckResult(
        passed=disagreeing.empty, check_name="stores_agree_on_every_book",
        metadata={"books": len(frame), "disagreeing": len(disagreeing),
                  "disagreeing books": MetadataValue.md("\n".join(
                      f"- {row.book}: postgres {row.chunks}, qdrant {row.qdrant_points}, graph {row.graph_chunks}"
                      for row in disagreeing.head(50).itertuples()) or "none")},
    )
    return metadata, check


@asset(
    deps=[pgvector_chunks, qdrant_points, book_graph, similar_chunks],
    group_name="library",
    kinds={"pandas", "csv"},
    # After ingests: once any book's indexes changed and no run of them is in flight.
    automation_condition=AutomationCondition.eager(),
    check_specs=[AssetCheckSpec("stores_agree_on_every_book", asset="library_report",
                                description="Postgres, Qdrant and the graph hold the same number of chunks for "
                                            "every book (`corpus repair` mends the ones named).")],
)
def library_report(context: AssetExecutionContext, postgres: PostgresResource, qdrant: QdrantResource,
                   graph: GraphResource) -> MaterializeResult:
    """Every book of the library in one table: its title, author, language, sections, chunks and
    tokens, each store's count and whether they agree, its structure's doubts, when Postgres last
    stored it and its last failure. Kept as CSV in the state folder."""
    metadata, check = write_report(postgres, qdrant, graph)
    return MaterializeResult(metadata=metadata, check_results=[check])
