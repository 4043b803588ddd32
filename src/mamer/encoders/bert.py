"""A frozen BERT in plain torch: reads a Hugging Face BERT folder (config.json, model.safetensors,
tokenizer.json) with `safetensors` and `tokenizers`, without importing transformers.

transformers costs 1-4 s of a cold start (`python -X importtime`, docs/performance.md) and a text-only
prediction needs nothing else from it. This module runs the same computation as `transformers.BertModel`
(post-LayerNorm layers, exact GELU, absolute positions): tests/test_bert.py holds its hidden states to
transformers' to float noise, on all-MiniLM-L6-v2 and on a random BERT. A folder it cannot run exactly (another
architecture, relative positions, another activation, pickled weights, no tokenizer.json) is left to
transformers: `BertConfig.read` answers None for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mamer.encoders.no_init import Embedding, LayerNorm, Linear

CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.json"


@dataclass(frozen=True)
class BertConfig:
    """The sizes of a BERT encoder, as its config.json names them."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def read(cls, folder: str | Path) -> BertConfig | None:
        """The config of a plain BERT folder this module runs exactly; None for anything else."""
        folder = Path(folder)
        if not all((folder / f).is_file() for f in (CONFIG, WEIGHTS, TOKENIZER)):
            return None
        try:
            raw = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
            plain = (
                raw.get("model_type") == "bert"
                and raw.get("hidden_act", "gelu") == "gelu"
                and raw.get("position_embedding_type", "absolute") == "absolute"
                and not raw.get("is_decoder", False)
            )
            return cls(**{name: raw[name] for name in cls.__dataclass_fields__}) if plain else None
        except (OSError, ValueError, KeyError, TypeError):
            return None


class BertEmbeddings(nn.Module):
    """Word + position + token type embeddings, then LayerNorm: `(B, L)` ids -> `(B, L, D)`."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x + self.position_embeddings(positions))


class BertSelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = Linear(c.hidden_size, c.hidden_size)
        self.key = Linear(c.hidden_size, c.hidden_size)
        self.value = Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """`x` `(B, L, D)`, `keep` `(B, 1, 1, L)` True for real tokens -> `(B, L, D)`."""
        b, length, d = x.shape
        q, k, v = (
            p(x).view(b, length, self.heads, -1).transpose(1, 2) for p in (self.query, self.key, self.value)
        )
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        return out.transpose(1, 2).reshape(b, length, d)


class BertDenseNorm(nn.Module):
    """`LayerNorm(dense(x) + residual)`: the output half of attention and of the feed-forward block."""

    def __init__(self, c: BertConfig, width: int):
        super().__init__()
        self.dense = Linear(width, c.hidden_size)
        self.LayerNorm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertDenseNorm(c, c.hidden_size)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, keep), x)


class BertIntermediate(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertDenseNorm(c, c.intermediate_size)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, keep)
        return self.output(self.intermediate(x), x)


class BertEncoderStack(nn.Module):
    def __init__(self, c: BertConfig, depth: int):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c) for _ in range(depth))


class Bert(nn.Module):
    """BERT's embeddings and its first `depth` layers (parameter names as in `transformers.BertModel`)."""

    def __init__(self, config: BertConfig, depth: int | None = None):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoderStack(config, config.num_hidden_layers if depth is None else depth)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """`(B, L)` ids and mask (1 = token) -> hidden states, each `(B, L, D)`: index 0 the embeddings,
        i the output of layer i (as transformers' `hidden_states`)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        keep = attention_mask.bool()[:, None, None, :]
        states = [self.embeddings(input_ids, token_type_ids)]
        for layer in self.encoder.layer:
            states.append(layer(states[-1], keep))
        return states


def load_bert(folder: str | Path, config: BertConfig, depth: int | None = None) -> Bert:
    """The frozen BERT of `folder`'s model.safetensors, with its first `depth` layers (default: all).

    Keys may carry a `bert.` prefix (a task model's encoder); heads, the pooler and buffers are ignored; a
    missing weight is a ValueError naming it."""
    from safetensors.torch import load_file

    model = Bert(config, depth)  # no_init layers: every tensor is assigned from the file below
    stored = load_file(Path(folder) / WEIGHTS)
    stored = {k.removeprefix("bert."): v for k, v in stored.items()}
    wanted = model.state_dict().keys()
    missing = [k for k in wanted if k not in stored]
    if missing:
        raise ValueError(f"{folder}/{WEIGHTS}: not a BERT encoder's weights, missing {missing[:3]}")
    model.load_state_dict({k: stored[k].float() for k in wanted}, assign=True)
    return model.eval().requires_grad_(False)


class WordPieces:
    """BERT's tokenizer from tokenizer.json (the `tokenizers` library, as transformers' fast tokenizer)."""

    def __init__(self, folder: str | Path, max_tokens: int):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(Path(folder) / TOKENIZER))
        self.tokenizer.no_padding()  # the file's own settings (e.g. pad to 128) are not ours
        self.tokenizer.enable_truncation(max_tokens)

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Texts -> `(B, L)` input_ids, attention_mask, token_type_ids and special_tokens_mask, right-padded."""
        encoded = self.tokenizer.encode_batch(texts)
        length = max(len(e.ids) for e in encoded)
        batch = {
            name: torch.zeros(len(texts), length, dtype=torch.long)
            for name in ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask")
        }
        for row, e in enumerate(encoded):
            n = len(e.ids)
            batch["input_ids"][row, :n] = torch.tensor(e.ids)
            batch["attention_mask"][row, :n] = 1
            batch["token_type_ids"][row, :n] = torch.tensor(e.type_ids)
            batch["special_tokens_mask"][row, :n] = torch.tensor(e.special_tokens_mask)
        return batch
