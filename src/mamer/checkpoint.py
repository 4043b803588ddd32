"""Run-directory checkpoints: safetensors weights + a JSON description; never pickles of code."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mamer.atomic import BrokenFileError, atomic_write
from mamer.config import RunConfig, config_from_dict, config_to_dict
from mamer.data.dataset import Targets
from mamer.encoders.base import stacked_layers
from mamer.modality import DIMENSIONS, has_categories, has_dimensions, modalities_in
from mamer.model.mamer import MAMER, count_parameters

MODEL_FILE, META_FILE, LAST_DIR = "model.safetensors", "model.json", "last"
HUB_META_FILE = "config.json"  # the same description, in a released model's folder (the Hugging Face layout)
STATE_FILE = "trainer_state.pt"  # optimizer, counters and random streams of `last/`, for --resume


class CheckpointError(BrokenFileError):
    """A checkpoint file (weights, description or trainer state) is truncated or corrupt; names the file."""


_RETRAIN = "re-create it (train again, export again, or reinstall mamer for a built-in model)"
_RESUME = "the run cannot resume from it: train again without --resume (this starts the run over)"


@dataclass
class ModelMeta:
    """Everything needed to rebuild a trained model and read its outputs, stored as `model.json`."""

    config: dict
    audio_dim: int
    text_dim: int
    targets: dict
    features: str  # feature cache folder the model was trained on
    encoders: dict  # specs of the frozen encoders that made the features
    params: int  # parameters of the inference model (training-only heads excluded)
    epoch: int = 0
    dev_score: float | None = None
    # who the model is, carried through save, fine-tune and export: name, license, base_model (the model it was
    # fine-tuned from), datasets, language; empty for a run trained from scratch (see pretrained.lineage_of)
    lineage: dict = field(default_factory=dict)

    @property
    def run_config(self) -> RunConfig:
        return config_from_dict(self.config)

    @property
    def label_space(self) -> Targets:
        return Targets(**self.targets)


def build_model(
    config: RunConfig, audio_dim: int, text_dim: int, targets: Targets, encoders: dict | None = None
) -> MAMER:
    """The inference model for features of `encoders` (their specs by modality; None = one hidden state or a
    mean each) and `targets`' label space."""
    task = config.data.task
    num_classes = len(targets.outputs) if has_categories(task) else 0
    num_dims = len(DIMENSIONS) if has_dimensions(task) else 0
    modalities = modalities_in(config.model.views)
    audio_dim = audio_dim if "audio" in modalities else 0
    text_dim = text_dim if "text" in modalities else 0
    encoders = encoders or {}
    stacked = (stacked_layers(encoders.get("audio", {})), stacked_layers(encoders.get("text", {})))
    return MAMER(config.model, audio_dim, text_dim, num_classes, num_dims, stacked)


def make_meta(
    config: RunConfig,
    model: MAMER,
    audio_dim: int,
    text_dim: int,
    targets: Targets,
    features: Path,
    encoders: dict,
) -> ModelMeta:
    return ModelMeta(
        config_to_dict(config),
        audio_dim,
        text_dim,
        asdict(targets),
        str(features),
        encoders,
        count_parameters(model),
    )


def save_weights(module: nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(path, lambda p: save_file(state, str(p)))


def save_model(folder: Path, model: MAMER, meta: ModelMeta) -> None:
    """Inference weights and their description: what `load_model` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder / MODEL_FILE)
    atomic_write(folder / META_FILE, lambda p: p.write_text(json.dumps(asdict(meta), indent=2)))


class ModelFolderError(ValueError):
    """A model folder whose files, each readable, do not make a model; the message names the file and why."""


def meta_path(folder: str | Path) -> Path:
    """The description file of the model in `folder`: model.json (a run) or config.json (a released model)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ModelFolderError(f"{folder} is a file; a model is a folder ({MODEL_FILE} + {HUB_META_FILE})")
    for name in (META_FILE, HUB_META_FILE):
        if (folder / name).is_file() and (folder / MODEL_FILE).is_file():
            return folder / name
    raise FileNotFoundError(
        f"{folder} holds no trained model ({MODEL_FILE} + {META_FILE} or {HUB_META_FILE}); is it a run directory?"
    )


def read_meta(folder: str | Path) -> ModelMeta:
    """The description of the model in a run directory (model.json) or a released model's folder (config.json)."""
    path = meta_path(folder)
    try:
        meta = ModelMeta(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as err:  # JSONDecodeError, UnicodeDecodeError, missing fields
        raise CheckpointError(path, "the model description", _RETRAIN, err) from err
    for key, kind in (
        ("config", dict),
        ("targets", dict),
        ("encoders", dict),
        ("lineage", dict),
        ("audio_dim", int),
        ("text_dim", int),
    ):
        value = getattr(meta, key)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            wanted = "an object" if kind is dict else "an integer >= 0"
            raise ModelFolderError(f"{path}: `{key}` must be {wanted}, not {json.dumps(value)}; {_RETRAIN}")
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[MAMER, ModelMeta]:
    """Rebuild a trained model from a run directory or a released model's folder; ModelFolderError naming the
    file when its description builds no model or its weights do not fit it (another model's weights)."""
    folder = Path(path)
    meta, described = read_meta(folder), meta_path(folder)
    try:
        config = meta.run_config
        config.validate()
        model = build_model(config, meta.audio_dim, meta.text_dim, meta.label_space, meta.encoders)
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise ModelFolderError(
            f"{described}: describes no model that can be built ({err}); {_RETRAIN}"
        ) from err
    weights = read_weights(folder / MODEL_FILE, "the model's weights", _RETRAIN)
    misfits = weight_misfits(model.state_dict(), weights)
    if misfits:
        raise ModelFolderError(
            f"{folder / MODEL_FILE}: these weights do not fit the model {described.name} describes (another "
            f"model's weights, or an edited description?): {'; '.join(misfits[:3])}"
            f"{f' and {len(misfits) - 3} more' if len(misfits) > 3 else ''}"
        )
    model.load_state_dict(weights)
    return model.to(device).eval(), meta


def weight_misfits(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> list[str]:
    """Each tensor missing from `given`, unexpected in it, or of another shape than `expected`, in words."""
    misfits = [f"{k} is missing" for k in expected if k not in given]
    misfits += [f"{k} is not part of this model" for k in given if k not in expected]
    misfits += [
        f"{k} has shape {tuple(given[k].shape)}, the description gives {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and given[k].shape != v.shape
    ]
    return misfits


def read_weights(path: Path, what: str, remedy: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; CheckpointError naming it when it is truncated or corrupt."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise
    except Exception as err:  # safetensors raises SafetensorError (a bare Exception subclass), OSError, ...
        raise CheckpointError(path, what, remedy, err) from err


def save_training_state(folder: Path, model: nn.Module, heads: nn.Module, state: dict) -> None:
    """The last epoch, for --resume: weights as safetensors, optimizer/scheduler/counters as a tensor-only file."""
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder / "model.safetensors")
    save_weights(heads, folder / "heads.safetensors")
    atomic_write(folder / STATE_FILE, lambda p: torch.save(state, p))


def load_training_state(folder: Path, model: nn.Module, heads: nn.Module) -> dict:
    """Weights and trainer state of `folder` (`last/`) into `model` and `heads`; returns the state.
    CheckpointError names a truncated or corrupt file."""
    if not (folder / STATE_FILE).exists():
        raise FileNotFoundError(f"nothing to resume: {folder} has no {STATE_FILE}")
    model.load_state_dict(read_weights(folder / "model.safetensors", "the last epoch's weights", _RESUME))
    heads.load_state_dict(read_weights(folder / "heads.safetensors", "the last epoch's heads", _RESUME))
    try:
        return torch.load(folder / STATE_FILE, weights_only=True)
    except Exception as err:  # EOFError (empty), RuntimeError (truncated zip), UnpicklingError (garbage)
        raise CheckpointError(folder / STATE_FILE, "the trainer state", _RESUME, err) from err
