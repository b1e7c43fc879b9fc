"""Query encoding for search: the embedding model exported to ONNX Runtime, else the model itself.

A query is a few dozen tokens at most. On one CPU thread, torch spends much of such a forward pass
on per-operator overhead: all-MiniLM-L6-v2 took ~15 ms for a 10-token query in torch and ~5 ms in
ONNX Runtime (28 tokens: ~17.6 vs ~9 ms), for the same vector (cosine 0.9999998; `make
bench-retrieval` measures both side by side). Chunks are still
embedded by the model itself (`EmbeddingModel.encode`): in batches of long texts ONNX Runtime was no
faster. Only queries take this path.

The export (a few seconds, ~90 MB for MiniLM) is kept in the state folder's `models/`, named by what
it is made of. An encoder that cannot be exported, or whose ONNX vectors differ from the model's,
stays on the model, with one log line; a damaged or disagreeing export is deleted, so the next
process exports again.
"""

import functools
import hashlib
import logging
import os
import tempfile
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
EXPORT_FORMAT = 2  # bump when the export below changes: older files are then made again

QueryEncoder = Callable[[str], np.ndarray]


@functools.cache
def query_encoder(model, location: str, threads: int, wanted: str) -> tuple[str, QueryEncoder]:
    """("onnx" or "torch", a function from a query to its unit vector) for the SentenceTransformer
    `model` loaded from `location`: ONNX Runtime on `threads` threads per query when `wanted` is
    "onnx" (CORPUS_QUERY_ENCODING), the model is on CPU and its export agrees with it."""
    torch_encoder = functools.partial(_encode_in_torch, model)
    if wanted != "onnx" or model.device.type != "cpu":
        return "torch", torch_encoder
    path = None
    try:
        path = _exported(model, location)
        onnx_encoder = functools.partial(_encode_in_onnx, model, _session(path, threads))
        agreement = min(float(np.dot(torch_encoder(text), onnx_encoder(text))) for text in _PROBES)
    except Exception as error:  # noqa: BLE001 - an architecture the exporter or runtime cannot take: the model serves
        log.warning("queries are encoded by the model itself: its ONNX export failed (%s)", error)
        if path is not None:  # a damaged file: the next process exports again
            path.unlink(missing_ok=True)
        return "torch", torch_encoder
    if agreement < MIN_AGREEMENT:
        log.warning("queries are encoded by the model itself: its ONNX export disagrees (cosine %.6f); "
                    "the export is deleted", agreement)
        path.unlink(missing_ok=True)
        return "torch", torch_encoder
    return "onnx", onnx_encoder


def _encode_in_torch(model, query: str) -> np.ndarray:
    return model.encode([query], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)[0]


def _encode_in_onnx(model, session, query: str) -> np.ndarray:
    features = model.preprocess([query])  # the model's own tokenization and truncation
    return session.run(None, {i.name: features[i.name].numpy() for i in session.get_inputs()})[0][0]


def _session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle worker threads would spin for the next query, taking the core a concurrent query needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
    names = [name for name, value in features.items() if isinstance(value, torch.Tensor)]  # not e.g. "modality"

    class Normalized(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            embedding = self.model({**features, **dict(zip(names, tensors, strict=True))})["sentence_embedding"]
            return torch.nn.functional.normalize(embedding, dim=1)

    handle, partial = tempfile.mkstemp(dir=folder, suffix=".partial")  # exporters at once each write their own
    os.close(handle)
    try:
        # torch.export's exporter (the supported one; the TorchScript tracer is deprecated), any batch size
        # and length; the export is checked against the model before it is used.
        dynamic = torch.export.Dim.DYNAMIC
        torch.onnx.export(
            Normalized().eval(), tuple(features[name] for name in names), partial, input_names=names,
            output_names=["normalized"], dynamic_shapes=(tuple({0: dynamic, 1: dynamic} for _ in names),),
            opset_version=18, dynamo=True, external_data=False, verbose=False,
        )
        Path(partial).replace(path)
    finally:
        Path(partial).unlink(missing_ok=True)
    for older in folder.glob("*.onnx"):  # exports of a model or library since replaced
        if older != path:
            older.unlink(missing_ok=True)
    return path


def _digest(location: str) -> str:
    """Names the export by what it is made of: the model's files (or hub id), the libraries exporting
    it and this module's way of doing so."""
    import sentence_transformers
    import torch

    folder = Path(location)
    files = sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()) \
        if folder.is_dir() else location
    made_by = (torch.__version__, sentence_transformers.__version__, EXPORT_FORMAT)
    return hashlib.sha256(repr((files, made_by)).encode()).hexdigest()[:16]
