"""What fewer Qdrant Edge segments would buy at 1.4M points (issue #15's search target): a copy of the scale
run's shard merged by Edge's optimizer under a 2-segment, 4 GB-per-segment setting, searched side by side with
the shard as the pipeline built it (12 segments of <= 200 MB), same 300 queries (stored vectors plus noise),
top 10, through `SharedReads` as `corpus serve` searches; latency of the second pass of each, recall@10 against
exact search by id and with ties counted (the stand-in vectors tie).

    .venv/bin/python bench/qdrant_merge.py     # after `make bench-scale`; ~35 min, ~5 GB in /tmp

Writes bench/results/qdrant_merge.json.
"""
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from scale import Truth, corpus_connection, stored_vectors  # bench-scale's exact search and recall

PROJECT = Path(__file__).resolve().parents[1]
SCALE = PROJECT / "bench" / ".state" / "scale" / "state"
MERGED = Path("/tmp/bigseg-state")


def main() -> None:
    from resources.qdrant import QdrantEdgeResource

    os.environ["CORPUS_STATE_DIR"] = str(SCALE)
    t = time.perf_counter()
    with corpus_connection() as conn:
        ids, _, corpus = stored_vectors(conn)
    print("loaded", len(ids), round(time.perf_counter() - t), "s", flush=True)
    rng = np.random.default_rng(7)
    Q = corpus[rng.choice(len(ids), 300, replace=False)] + rng.normal(0, 0.02, (300, corpus.shape[1])).astype(np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    truth = Truth(corpus, ids, {cid: r for r, cid in enumerate(ids)}, Q)
    print("truth", round(time.perf_counter() - t), "s", flush=True)

    merge_seconds = None  # a copy merged by an earlier run is reused
    if not (MERGED / "qdrant-edge" / "chunks").exists():
        t = time.perf_counter()
        shutil.copytree(SCALE / "qdrant-edge" / "chunks", MERGED / "qdrant-edge" / "chunks")
        print("copied", round(time.perf_counter() - t), "s", flush=True)
        import resources.qdrant.edge as edge
        edge.SEGMENTS, edge.MAX_SEGMENT_KB = 2, 4_000_000
        os.environ["CORPUS_STATE_DIR"] = str(MERGED)
        t = time.perf_counter()
        with QdrantEdgeResource().open() as col:  # the settings patched above; merged when it closes
            col.optimize_on_close()
        merge_seconds = round(time.perf_counter() - t)
        print("merged in", merge_seconds, "s", flush=True)

    out = {"merge_seconds": merge_seconds}
    for name, state in (("12 segments (as built)", SCALE), ("merged", MERGED)):
        os.environ["CORPUS_STATE_DIR"] = str(state)
        for ef in (100, 200, 400):
            with QdrantEdgeResource(hnsw_ef=ef).shared_reads() as reads:
                with reads.open():
                    pass
                reads.wait_warm()
                for _ in range(2):  # the second pass is measured
                    lat, rid, rtie = [], [], []
                    for q, v in enumerate(Q):
                        s = time.perf_counter()
                        with reads.open() as col:
                            hits = col.search(v, limit=10)
                        lat.append((time.perf_counter() - s) * 1000)
                        by_id, with_ties = truth.recall(q, [h.chunk_id for h in hits])
                        rid.append(by_id)
                        rtie.append(with_ties)
                lat.sort()
                out[f"{name} ef {ef}"] = r = {"p50_ms": round(lat[150], 2), "p95_ms": round(lat[284], 2),
                                             "recall": round(float(np.mean(rid)), 4), "recall_ties": round(float(np.mean(rtie)), 4)}
                print(name, ef, r, flush=True)
    (PROJECT / "bench" / "results" / "qdrant_merge.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
