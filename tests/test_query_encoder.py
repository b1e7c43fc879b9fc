"""Search queries are encoded by the model exported to ONNX Runtime: the same vectors, from one export."""

import numpy as np

from resources.embedding import EmbeddingModel
from resources.query_encoder import query_encoder

QUERIES = [
    "door-nail",
    "a sailor asks to be called Ishmael",
    "Où est la bibliothèque ? «Quelle horreur!» — dit-elle",
    "   many   spaces\tand a tab   ",
    "SELECT * FROM chunks; MATCH (n) DETACH DELETE n // '\"",
    " ".join(["a very long query about whales and ships"] * 80),  # past the model's 256 tokens: truncated alike
]


def test_queries_are_encoded_in_onnx_runtime_to_the_models_own_vectors(state_dir):
    model = EmbeddingModel()
    kind, encode = model.query_encoder("onnx", threads=1)
    assert kind == "onnx"
    exports = list((state_dir / "models").glob("*"))
    assert len(exports) == 1 and exports[0].suffix == ".onnx" and exports[0].stat().st_size > 10_000_000
    written = exports[0].stat().st_mtime_ns

    for query in QUERIES:
        fast, own = encode(query), model.encode([query])[0]
        assert fast.shape == own.shape == (384,) and fast.dtype == np.float32
        assert abs(np.linalg.norm(fast) - 1) < 1e-5
        assert float(np.dot(fast, own)) > 0.9999, query

    # Another process (a new cache here) opens the same export, and two threads per query agree too.
    query_encoder.cache_clear()
    kind, encode = model.query_encoder("onnx", threads=2)
    assert kind == "onnx" and float(np.dot(encode(QUERIES[1]), model.encode([QUERIES[1]])[0])) > 0.9999
    assert [p.stat().st_mtime_ns for p in (state_dir / "models").glob("*")] == [written]

    # An export that does not agree with the model (here: a broken file) is not used, and is deleted.
    query_encoder.cache_clear()
    exports[0].write_bytes(b"not a model")
    kind, encode = model.query_encoder("onnx", threads=1)
    assert kind == "torch" and np.array_equal(encode(QUERIES[1]), model.encode([QUERIES[1]])[0])
    assert not exports[0].exists()  # so the next process exports again
    query_encoder.cache_clear()
    assert model.query_encoder("onnx", threads=1)[0] == "onnx" and exports[0].stat().st_size > 10_000_000

    # CORPUS_QUERY_ENCODING=torch: the model itself.
    assert model.query_encoder("torch", threads=1)[0] == "torch"
