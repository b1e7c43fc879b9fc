"""Query encoding for search: the embedding model exported to ONNX Runtime, else the model itself.

A query is a dozen tokens. On one CPU thread, torch spends most of such a forward pass on per-operator
overhead: all-MiniLM-L6-v2 took ~15 ms per query in torch and ~5 ms in ONNX Runtime, for the same
vector (cosine 0.9999998; `make bench-retrieval` measures both side by side). Chunks are still
embedded by the model itself (`EmbeddingModel.encode`); only queries take this path.

The export (a few seconds, once per model) is kept in the state folder. An encoder that cannot be
exported, or whose ONNX vectors differ from the model's, stays on the model, with one log line.
"""

import functools
import hashlib
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from resources import settings

log = logging.getLogger(__name__)

# Texts the exported model must encode as the model does (cosine at least MIN_AGREEMENT): a word, a
# sentence, and one longer than the model reads (truncated the same way).
_PROBES = ("door-nail", "A sailor asks to be called Ishmael, and tells why he went to sea.",
           " ".join(["the whale swam under the ship"] * 60))
MIN_AGREEMENT = 0.9999

QueryEncoder = Callable[[str], np.ndarray]


@functools.cache
def query_encoder(model, location: str, threads: int, wanted: str) -> tuple[str, QueryEncoder]:
    """("onnx" or "torch", a function from a query to its unit vector) for the SentenceTransformer
    `model` loaded from `location`: ONNX Runtime on `threads` threads per query when `wanted` is
    "onnx" (CORPUS_QUERY_ENCODING), the model is on CPU and its export agrees with it."""
    torch_encoder = functools.partial(_encode_in_torch, model)
    if wanted != "onnx" or model.device.type != "cpu":
        return "torch", torch_encoder
    try:
        session = _session(_exported(model, location), threads)
    except Exception as error:  # noqa: BLE001 - an architecture the exporter cannot take: the model serves
        log.warning("queries are encoded by the model itself: its ONNX export failed (%s)", error)
        return "torch", torch_encoder
    onnx_encoder = functools.partial(_encode_in_onnx, model, session)
    agreement = min(float(np.dot(torch_encoder(text), onnx_encoder(text))) for text in _PROBES)
    if agreement < MIN_AGREEMENT:
        log.warning("queries are encoded by the model itself: its ONNX export disagrees (cosine %.6f)", agreement)
        return "torch", torch_encoder
    return "onnx", onnx_encoder


def _encode_in_torch(model, query: str) -> np.ndarray:
    return model.encode([query], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)[0]


def _encode_in_onnx(model, session, query: str) -> np.ndarray:
    features = model.preprocess([query])  # the model's own tokenization and truncation
    inputs = {i.name: features[i.name].numpy() for i in session.get_inputs()}
    return session.run(None, inputs)[0][0]


def _session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _exported(model, location: str) -> Path:
    """The model's ONNX file in the state folder, exported now if it is not there yet."""
    import torch

    folder = settings.current().state_dir / "models"
    path = folder / f"{_digest(location)}.onnx"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    features = model.preprocess(["an example query"])
    names = list(features)

    class Normalized(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            embedding = self.model(dict(zip(names, tensors, strict=True)))["sentence_embedding"]
            return torch.nn.functional.normalize(embedding, dim=1)

    partial = path.with_suffix(f".{os.getpid()}.partial")  # processes exporting at once each write their own
    # The tracer warns of each data-dependent branch it fixes; the export is checked against the model.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Normalized().eval(), tuple(features[name] for name in names), str(partial), input_names=names,
            output_names=["embedding"], dynamic_axes={name: {0: "batch", 1: "tokens"} for name in names},
            opset_version=17, dynamo=False,
        )
    partial.replace(path)
    return path


def _digest(location: str) -> str:
    """Names the export by what it is made of: the model's files (or hub id) and the torch exporting it."""
    import torch

    folder = Path(location)
    files = sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()) \
        if folder.is_dir() else location
    return hashlib.sha256(repr((files, torch.__version__)).encode()).hexdigest()[:16]
