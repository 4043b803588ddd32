import pytest
import torch

from mamer.checkpoint import build_model, load_model, make_meta, save_model
from mamer.config import load_config
from mamer.data.dataset import Targets


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    config = load_config(
        "quickstart", ["model.width=32", "model.depth=1", "model.audio_downsample=2", "data.task=both"]
    )
    targets = Targets(["angry", "happy", "neutral", "sad"], [3.0, 3.1, 2.9], [1.0, 0.8, 0.7])
    torch.manual_seed(0)
    model = build_model(config, 20, 12, targets).eval()
    save_model(
        tmp_path, model, make_meta(config, model, 20, 12, targets, tmp_path / "features", {"audio": {}})
    )
    loaded, meta = load_model(tmp_path)
    audio, text = torch.randn(2, 9, 20), torch.randn(2, 5, 12)
    a, b = model(audio=audio, text=text), loaded(audio=audio, text=text)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.dims, b.dims)
    assert meta.label_space == targets and meta.run_config == config
    assert meta.params == sum(p.numel() for p in model.parameters())
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.tmp"))


def test_dedicated_model_has_no_projection_for_the_unused_modality():
    config = load_config("quickstart_audio_only", ["model.width=32", "model.audio_downsample=2"])
    model = build_model(config, 20, 12, Targets(["a", "b"]))
    assert model.text_in is None and model.audio_in is not None


def test_loading_a_folder_without_a_model_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trained model"):
        load_model(tmp_path)
