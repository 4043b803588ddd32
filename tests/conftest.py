from pathlib import Path

import pytest

from mamer.data.synthetic import generate_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A real synthesised corpus: 4 speakers x 8 utterances, speakers split 2 / 1 / 1."""
    return generate_corpus(
        tmp_path_factory.mktemp("corpus"),
        n_speakers=4,
        utterances_per_speaker=8,
        seed=0,
        split_speakers=(2, 1, 1),
        progress=False,
    )
