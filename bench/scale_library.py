"""A synthetic library at the mission's shape, made of real prose, and a fast stand-in encoder.

Books: Project Gutenberg-style files (header, start/end markers, numbered chapters) whose chapters
are paragraphs of the real books in ../shared/corpus, drawn per book by a seeded generator, so every
book differs, every chunk text is distinct in practice, and the chunker meets real sentences.

Encoder: embedding 1.35M chunks with all-MiniLM-L6-v2 would take ~27 h on 2 cores. The stand-in is
a real sentence-transformers model built offline from the shipped MiniLM: a `StaticEmbedding` of its
tokenizer and token-embedding matrix (384-d, mean of token vectors, shifted to match MiniLM's
neighbourhood density, normalized). Its vectors depend on the text and have neighbourhood
structure, at thousands of chunks per second. It is configured
through the normal model setting (`CORPUS_EMBEDDING_MODEL` = its folder) and is NOT the model users
run: search quality figures from it say nothing about MiniLM's.
"""

import random
import re
import shutil
from pathlib import Path

SHARED = Path(__file__).parents[2] / "shared" / "corpus"
MARKER = re.compile(r"^\*\*\* *(START|END) OF (THE|THIS) PROJECT GUTENBERG EBOOK.*$", re.MULTILINE | re.IGNORECASE)
ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV", "XV", "XVI"]
WORDS = ["river", "lantern", "orchard", "harbour", "winter", "letter", "garden", "captain", "widow", "mill",
         "tower", "island", "forest", "journey", "secret", "summer", "bridge", "stranger", "house", "road"]


def paragraph_pool(shared: Path = SHARED) -> list[str]:
    """Every paragraph of 200 to 1,500 characters between the Gutenberg markers of the shared books."""
    pool = []
    for path in sorted([*shared.glob("dev/*.txt"), *shared.glob("more/*.txt")]):
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        markers = list(MARKER.finditer(text))
        if len(markers) >= 2:
            text = text[markers[0].end():markers[-1].start()]
        for block in re.split(r"\n\s*\n", text):
            paragraph = " ".join(block.split())
            if 200 <= len(paragraph) <= 1500:
                pool.append(paragraph)
    if not pool:
        raise SystemExit(f"no paragraphs found: the shared corpus is expected at {shared}")
    return pool


def write_book(folder: Path, number: int, pool: list[str], chars: int) -> Path:
    """Book `number`: ~`chars` characters in 8–14 chapters of paragraphs drawn for it alone."""
    rng = random.Random(number)
    title = f"The {rng.choice(WORDS).title()} and the {rng.choice(WORDS).title()}, volume {number}"
    chapters = rng.randint(8, 14)
    per_chapter = chars // chapters
    body = []
    for chapter in range(chapters):
        body.append(f"CHAPTER {ROMAN[chapter]}.")
        length = 0
        while length < per_chapter:
            paragraph = pool[rng.randrange(len(pool))]
            body.append(paragraph)
            length += len(paragraph)
    upper = title.upper()
    text = (f"The Project Gutenberg eBook of {title}\n\nTitle: {title}\n\nAuthor: Synthetic Author {number % 997}\n\n"
            f"Language: English\n\n*** START OF THE PROJECT GUTENBERG EBOOK {upper} ***\n\n"
            + "\n\n".join(body) + f"\n\n*** END OF THE PROJECT GUTENBERG EBOOK {upper} ***\n")
    path = folder / f"scale_{number:05d}.txt"
    path.write_text(text, encoding="utf-8")
    return path


def build_standin_model(folder: Path, pool: list[str]) -> Path:
    """The stand-in encoder (see the module docstring), saved to `folder` once.

    Mean token vectors are all alike (median nearest-neighbour cosine ~0.93 on real paragraphs, where
    MiniLM gives ~0.59), which would make ANN search and HNSW inserts look worse than with the real
    model. So every token vector is shifted by a share of the mean paragraph vector (mean pooling is
    linear: each text's vector shifts by the same amount), the share chosen so that the stand-in's
    median nearest-neighbour cosine over a sample of `pool` matches MiniLM's on the same sample.
    """
    if (folder / "sentence_bert_config.json").exists():
        return folder
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding
    from tokenizers import Tokenizer

    from resources.embedding import model_location
    from resources.settings import DEFAULT_MODEL

    minilm_path = Path(model_location(DEFAULT_MODEL))
    minilm = SentenceTransformer(str(minilm_path), device="cpu")
    weights = minilm[0].auto_model.embeddings.word_embeddings.weight.detach().cpu().numpy()
    tokenizer = Tokenizer.from_file(str(minilm_path / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    sample = random.Random(0).sample(pool, min(1000, len(pool)))
    target = median_nearest_cosine(minilm.encode(sample, batch_size=16, convert_to_numpy=True))
    means = SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device="cpu").encode(
        sample, convert_to_numpy=True)
    centre = means.mean(axis=0)
    share = min(np.arange(0.0, 1.01, 0.05), key=lambda a: abs(median_nearest_cosine(means - a * centre) - target))
    static = StaticEmbedding(tokenizer, embedding_weights=weights - share * centre)
    model = SentenceTransformer(modules=[static, Normalize()], device="cpu")
    model.save(str(folder))
    (folder / "calibration.json").write_text(
        f'{{"minilm_median_nn_cosine": {target:.3f}, "shift_share": {share:.2f}, '
        f'"standin_median_nn_cosine": {median_nearest_cosine(means - share * centre):.3f}}}\n')
    # The chunker reads the tokenizer and the longest sequence from the model folder, as for MiniLM.
    shutil.copy(minilm_path / "tokenizer.json", folder / "tokenizer.json")
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 256, "do_lower_case": false}\n')
    return folder


def median_nearest_cosine(vectors) -> float:
    """Median cosine similarity of a text's vector to its nearest other one, over the first 500."""
    import numpy as np

    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit[:500] @ unit.T
    scores[np.arange(min(500, len(unit))), np.arange(min(500, len(unit)))] = -1
    return float(np.median(scores.max(axis=1)))
