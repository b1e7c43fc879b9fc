"""The pages readers use, served by `corpus serve`: a search box and its results (`/`), the library
(`/books`), a book's structure (`/books/{id}`), a chapter's passages, and a passage in its context
with similar passages of other books (`/passages/{chunk id}`).

Server-rendered HTML (Jinja2, every value escaped: a title or a query holding `<script>` or
`[/bold]` shows as written), usable without JavaScript, no build step. A search page costs the
service's own search plus the page's rendering (a few ms).
"""

import re
import time
from collections.abc import Callable
from pathlib import Path

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from corpus_assets.books.library import is_book_id
from corpus_assets.books.structure import PART_SEPARATOR
from retrieval import DEFAULT_MODE, MODES, STORES, QueryError, Store
from retrieval.engine import Searcher, SearchResult

_TEMPLATES = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")), autoescape=True))
_WORD = re.compile(r"\w+")
# Words a reader types that say nothing about a passage: never highlighted.
_UNMARKED = {"the", "and", "for", "with", "that", "this", "from", "into", "his", "her", "was", "are", "who", "what",
             "when", "where", "which", "about", "les", "des", "une", "der", "die", "das", "und", "los", "las", "del",
             "che", "per", "una", "het", "een", "van"}
_CHART_WIDTH = 200  # pixels of the longest bar
_CHART_LABEL = 14  # characters of a bar's label
_CHUNK_ID = re.compile(r"[0-9a-f]{32}")
PAGE_MAX_K = 100  # passages a page shows at most (each with its context): the JSON API goes to MAX_K


def highlight(text: str, query: str) -> Markup:
    """The text, escaped, with the query's words marked: a word sharing a query word's first five letters
    (or all of it, when shorter): "grinning" marks "grinned". One set lookup per word of the text,
    however long the query."""
    stems = {w.lower()[:5] for w in _WORD.findall(query) if len(w) >= 3 and w.lower() not in _UNMARKED}
    if not stems:
        return escape(text)
    pieces, last = [], 0
    for match in _WORD.finditer(text):
        if match.group().lower()[:5] in stems:
            pieces += [escape(text[last : match.start()]), Markup("<mark>"), escape(match.group()), Markup("</mark>")]
            last = match.end()
    pieces.append(escape(text[last:]))
    return Markup("").join(pieces)


def where(chapter: str) -> str:
    """A passage's place as a reader says it: part › chapter."""
    return " › ".join(chapter.split(PART_SEPARATOR))


def _bars(counts: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
    most = max((count for _, count in counts), default=1) or 1
    return [(label if len(label) <= _CHART_LABEL else label[: _CHART_LABEL - 1] + "…", count,
             max(1, round(_CHART_WIDTH * count / most))) for label, count in counts]


def _size_bands(chunks: list[int]) -> list[tuple[str, int]]:
    bands = [(0, 100), (100, 500), (500, 1000), (1000, 2000), (2000, 5000), (5000, None)]
    return [(f"{low:,}–{high - 1:,}" if high else f"{low:,} or more",
             sum(low <= n and (high is None or n < high) for n in chunks)) for low, high in bands]


def pages(searcher: Searcher, on_search: Callable[[dict, SearchResult], None]) -> APIRouter:
    """The pages' routes; `on_search` records each search (the service's telemetry). Not in the OpenAPI
    schema, which describes the JSON API: the pages are HTML for people."""
    router = APIRouter(include_in_schema=False)

    def render(request: Request, template: str, status_code: int = 200, **values) -> HTMLResponse:
        return _TEMPLATES.TemplateResponse(request, template, values, status_code=status_code)

    @router.get("/", response_class=HTMLResponse, summary="The search page")
    def search_page(request: Request, q: str = "", book: str = "", author: str = "", language: str = "",
                    store: str = Store.pgvector.value, mode: str = DEFAULT_MODE.value, k: str = "10") -> HTMLResponse:
        # Every parameter a string, checked here: a reader's mistake is a page saying so, not JSON.
        started = time.perf_counter()
        library = searcher.library()
        depth = int(k) if k.strip().isdigit() else 0
        values = {"q": q, "book": book, "author": author, "language": language, "store": store, "mode": mode,
                  "k": k, "books": library.books, "authors": library.authors, "languages": library.languages,
                  "stores": [s.value for s in STORES], "modes": [m.value for m in MODES], "max_k": PAGE_MAX_K,
                  "advanced": store != Store.pgvector or mode != DEFAULT_MODE or k != "10", "hits": [], "error": None}
        if not q.strip():
            return render(request, "search.html", **values)
        try:
            if not 1 <= depth <= PAGE_MAX_K:
                raise QueryError(f"results must be a number from 1 to {PAGE_MAX_K}")
            within = library.ids(author or None, language or None)
            if within == []:
                raise QueryError("no book of the library matches that author and language")
            result = searcher.search(q, depth, book or None, store, mode, expand=True, within=within)
        except QueryError as error:
            return render(request, "search.html", status_code=422, **values | {"error": str(error)})
        on_search({"q": q, "k": depth, "book": book or None, "author": author or None, "language": language or None,
                   "store": store, "mode": mode, "expand": True}, result)
        authors = {b.id: b.author for b in library.books}
        hits = []
        for rank, hit in enumerate(result.hits, 1):
            context = {n.relation: n.hit for n in result.context.get(hit.chunk_id, []) if n.relation != "similar"}
            hits.append({
                "rank": rank, "chunk_id": hit.chunk_id, "book_id": hit.book_id, "title": hit.title,
                "author": authors.get(hit.book_id), "place": where(hit.chapter), "marked": highlight(hit.text, q),
                "before": context["previous"].text if "previous" in context else None,
                "after": context["next"].text if "next" in context else None,
                "similar": [{"chunk_id": n.hit.chunk_id, "title": n.hit.title, "chapter": where(n.hit.chapter),
                             "text": n.hit.text, "score": n.hit.score}
                            for n in result.context.get(hit.chunk_id, []) if n.relation == "similar"],
            })
        return render(request, "search.html", **values | {"hits": hits, "total_ms": (time.perf_counter() - started) * 1000})

    @router.get("/books", response_class=HTMLResponse, summary="The library: its books, languages, failures")
    def library_page(request: Request) -> HTMLResponse:
        library = searcher.library(fresh=True)
        by_language: dict[str, int] = {}
        for b in library.books:
            by_language[b.language or "unknown"] = by_language.get(b.language or "unknown", 0) + 1
        return render(request, "books.html", books=library.books, chunks=sum(b.chunks for b in library.books),
                      languages=_bars(sorted(by_language.items(), key=lambda item: (-item[1], item[0]))),
                      sizes=_bars(_size_bands([b.chunks for b in library.books])), failures=library.failures)

    @router.get("/books/{book_id}", response_class=HTMLResponse, summary="A book's parts and chapters")
    def book_page(request: Request, book_id: str) -> HTMLResponse:
        found = searcher.book(book_id) if is_book_id(book_id) else None
        if found is None:
            return render(request, "search.html", status_code=404, **_missing(searcher, f"no book {book_id!r}"))
        book, chunks = found
        tree, part = [], None
        for s in book.sections:
            size = s.end - s.start
            if s.kind != "body" or not s.part:
                tree.append({"kind": s.kind, "title": s.title, "index": s.index, "size": size})
                part = None
                continue
            if part is None or part["title"] != s.part:
                part = {"title": s.part, "size": 0, "chapters": []}
                tree.append(part)
            if s.title == s.part:  # the part's own text before its first chapter
                part["size"] = size
            else:
                part["chapters"].append({"index": s.index, "title": s.title.removeprefix(s.part + PART_SEPARATOR),
                                         "size": size})
        return render(request, "book.html", book=book, chunks=chunks, tree=tree, doubts=book.structure_doubts)

    @router.get("/books/{book_id}/chapters/{index}", response_class=HTMLResponse, summary="A chapter's passages")
    def chapter_page(request: Request, book_id: str, index: str) -> HTMLResponse:
        found = searcher.book(book_id) if is_book_id(book_id) and index.isdigit() else None
        section = next((s for s in found[0].sections if str(s.index) == index), None) if found else None
        if section is None:
            return render(request, "search.html", status_code=404, **_missing(searcher, f"no chapter {index} in {book_id!r}"))
        return render(request, "chapter.html", book=found[0], chapter=where(section.title),
                      passages=searcher.chapter_passages(book_id, section.index))

    @router.get("/passages/{chunk_id}", response_class=HTMLResponse, summary="A passage in its context")
    def passage_page(request: Request, chunk_id: str) -> HTMLResponse:
        passage = searcher.passage(chunk_id) if _CHUNK_ID.fullmatch(chunk_id) else None
        if passage is None:
            return render(request, "search.html", status_code=404, **_missing(searcher, "no such passage"))
        hit, context = passage
        near = {n.relation: n.hit for n in context if n.relation != "similar"}
        similar = [{"chunk_id": n.hit.chunk_id, "title": n.hit.title, "chapter": where(n.hit.chapter),
                    "text": n.hit.text, "score": n.hit.score} for n in context if n.relation == "similar"]
        return render(request, "passage.html", passage={**hit.__dict__, "chapter": where(hit.chapter)},
                      before=near.get("previous"), after=near.get("next"), similar=similar)

    return router


def _missing(searcher: Searcher, why: str) -> dict:
    library = searcher.library()
    return {"q": "", "book": "", "author": "", "language": "", "store": Store.pgvector.value,
            "mode": DEFAULT_MODE.value, "k": 10, "books": library.books, "authors": library.authors,
            "languages": library.languages, "stores": [s.value for s in STORES], "modes": [m.value for m in MODES],
            "advanced": False, "hits": [], "error": why.capitalize()}
