"""Search queries are encoded by the model exported to ONNX Runtime: the same vectors, from one export."""

import numpy as np

from resources.embedding import EmbeddingModel
from resources.query_encoder import query_encoder
from resources.settings import QUERY_ENCODING_ENV

QUERIES = [
    "door-nail",
    "a sailor asks to be called Ishmael",
    "Où est la bibliothèque ? «Quelle horreur!» — dit-elle",
    "   many   spaces\tand a tab   ",
    "SELECT * FROM chunks; MATCH (n) DETACH DELETE n // '\"",
    " ".join(["a very long query about whales and ships"] * 80),  # past the model's 256 tokens: truncated alike
]


def test_queries_are_encoded_in_onnx_runtime_to_the_models_own_vectors(state_dir, monkeypatch):
    monkeypatch.delenv(QUERY_ENCODING_ENV, raising=False)
    model = EmbeddingModel()
    assert model.query_encoding() == "onnx"
    exports = list((state_dir / "models").glob("*.onnx"))
    assert len(exports) == 1 and exports[0].stat().st_size > 10_000_000  # the model's weights are in it
    written = exports[0].stat().st_mtime_ns

    for query in QUERIES:
        fast, own = model.encode_query(query), model.encode([query])[0]
        assert fast.shape == own.shape == (384,) and fast.dtype == np.float32
        assert abs(np.linalg.norm(fast) - 1) < 1e-5
        assert float(np.dot(fast, own)) > 0.9999, query

    # Another process (a new cache here) opens the same export, not a second one.
    query_encoder.cache_clear()
    assert model.query_encoding() == "onnx"
    assert [p.stat().st_mtime_ns for p in (state_dir / "models").glob("*.onnx")] == [written]

    # CORPUS_QUERY_ENCODING=torch: the model itself, the same vectors.
    monkeypatch.setenv(QUERY_ENCODING_ENV, "torch")
    assert model.query_encoding() == "torch"
    assert np.array_equal(model.encode_query(QUERIES[1]), model.encode([QUERIES[1]])[0])
