import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from mamer.config import load_experiment
from mamer.data.manifest import read_manifest, splits, write_manifest
from mamer.data.synthetic import generate_corpus
from mamer.workflows.training.loop import train

# A tiny wav2vec2-style speech encoder (2 layers, 32-d, 80 samples per frame: 200 frames/s) for random weights.
TINY_SPEECH = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16, 32),
    conv_kernel=(10, 8),
    conv_stride=(10, 8),  # 80 samples per frame: 200 frames/s
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)


def speechlike(seconds: float, seed: int = 0, sr: int = 16000) -> np.ndarray:
    """Harmonic tone with a moving pitch and syllable-rate envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wave = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    return (0.1 * wave + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


TINY = ["model.width=32", "model.depth=1", "model.heads=2", "train.batch_size=8", "train.progress=false"]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A real synthesised corpus: 4 speakers x 8 utterances, speakers split 2 / 1 / 1."""
    return generate_corpus(tmp_path_factory.mktemp("corpus"), n_speakers=4, utterances_per_speaker=8, seed=0,
                           split_speakers=(2, 1, 1), progress=False)  # fmt: skip


@pytest.fixture
def partial_manifest(tiny_corpus, tmp_path) -> Path:
    """The tiny corpus partially paired: rows cycle paired / audio-only / text-only within each split, so every
    split keeps rows of each kind."""
    utts, _ = read_manifest(tiny_corpus, strict=True)
    rows = []
    for group in splits(utts).values():
        for i, u in enumerate(group):
            kind = i % 3
            rows.append(dataclasses.replace(u, text=None) if kind == 1 else
                        dataclasses.replace(u, audio=None) if kind == 2 else u)  # fmt: skip
    path = tmp_path / "partial.jsonl"
    write_manifest(rows, path)
    return path


@pytest.fixture(scope="session")
def tiny_config(tiny_corpus):
    """Factory: a small logmel + hashed config on the tiny corpus, run in `folder / name`."""

    def make(folder: Path, name: str = "quickstart", *extra: str, experiment: bool = False):
        """The run config; with `experiment`, (run config, experiment section)."""
        loaded = load_experiment(name, [f"data.manifest={tiny_corpus}", f"data.features={folder / 'features'}",
                                        f"run_dir={folder / name}", "data.audio_encoder=logmel",
                                        "data.text_encoder=hashed", *TINY, *extra])  # fmt: skip
        return loaded if experiment else loaded[0]

    return make


@pytest.fixture(scope="session")
def train_tiny(tiny_config):
    """Factory: train a 1-epoch tiny model and return its run directory."""
    return lambda folder, name="quickstart", *extra: train(
        tiny_config(folder, name, "train.epochs=1", *extra)
    )


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A 3-layer, 24-d BERT with random weights and a 20-word vocabulary, saved with its tokenizer."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("bert")
    words = "the a i am so happy sad angry calm today it is , . !".split()
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=len(words) + 5,
        hidden_size=24,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=48,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    return folder
