from pathlib import Path

import pytest

from mamer.config import RunConfig, load_config
from mamer.data.synthetic import generate_corpus
from mamer.train import train

TINY = ["model.width=32", "model.depth=1", "model.heads=2", "train.batch_size=8", "train.progress=false"]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A real synthesised corpus: 4 speakers x 8 utterances, speakers split 2 / 1 / 1."""
    return generate_corpus(tmp_path_factory.mktemp("corpus"), n_speakers=4, utterances_per_speaker=8, seed=0,
                           split_speakers=(2, 1, 1), progress=False)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_config(tiny_corpus):
    """Factory: a small logmel + hashed config on the tiny corpus, run in `folder / name`."""

    def make(folder: Path, name: str = "quickstart", *extra: str) -> RunConfig:
        return load_config(name, [f"data.manifest={tiny_corpus}", f"data.features={folder / 'features'}",
                                  f"run_dir={folder / name}", "data.audio_encoder=logmel",
                                  "data.text_encoder=hashed", *TINY, *extra])  # fmt: skip

    return make


@pytest.fixture(scope="session")
def train_tiny(tiny_config):
    """Factory: train a 1-epoch tiny model and return its run directory."""
    return lambda folder, name="quickstart", *extra: train(
        tiny_config(folder, name, "train.epochs=1", *extra)
    )
