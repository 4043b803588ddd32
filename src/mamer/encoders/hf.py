"""Loading Hugging Face models offline-first: local files only unless downloads are allowed and possible.

Without a network the hub client retries for about a minute; staying local makes a missing model fail at once,
with a message saying how to pass a local folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mamer.encoders.base import layers_to_run


def local_only(path: str | Path, allow_download: bool) -> bool:
    """Read only local files unless downloads are allowed and the hub is not switched off."""
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "false", "")
    return offline or not allow_download or Path(path).is_dir()


def cannot_load(path: str | Path, kind: str, local: bool, err: Exception) -> OSError:
    """The error for a model that is neither a local folder nor in the local cache: says how to fix it."""
    return OSError(
        f"cannot load {kind} encoder {str(path)!r}: it is not a local folder with config.json and weights, "
        f"nor in the local Hugging Face cache (downloads {'off' if local else 'failed'}).\n"
        f"Pass a local folder instead, e.g. `--{kind}-encoder /path/to/model` on the command line or "
        f"load_{kind}_encoder(NAME, path=DIR); or allow_download=True where the hub is reachable. ({err})"
    )


def load_hf_config(path: str | Path, kind: str, allow_download: bool = False):
    """`AutoConfig.from_pretrained(path)`: what the encoder's spec needs, without the weights."""
    from transformers import AutoConfig  # heavy import, only when such an encoder is built

    local = local_only(path, allow_download)
    try:
        return AutoConfig.from_pretrained(str(path), local_files_only=local)
    except OSError as err:
        raise cannot_load(path, kind, local, err) from err


def load_hf_model(path: str | Path, kind: str, allow_download: bool = False):
    """`AutoModel.from_pretrained(path)`, frozen and in eval mode; an OSError that says how to fix it."""
    from transformers import AutoModel

    local = local_only(path, allow_download)
    try:
        with quiet_loading():
            model = AutoModel.from_pretrained(str(path), local_files_only=local)
    except OSError as err:
        raise cannot_load(path, kind, local, err) from err
    return model.eval().requires_grad_(False)


@contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' "Loading weights" progress bar off while a frozen encoder loads: it is not progress the
    user asked about, and it lands in every `mamer predict`'s output."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def drop_unused_layers(model, layers: list[int]) -> None:
    """Cut the transformer layers above those that hidden states `layers` need (index i = after layer i).

    The layer stack is `model.encoder.layers` (wav2vec2, HuBERT, WavLM, data2vec-audio) or
    `model.encoder.layer` (BERT, RoBERTa, DeBERTa, MiniLM, MPNet); a model with neither runs whole. With a
    final LayerNorm after the stack (`do_stable_layer_norm`, the large speech models) one more layer is kept,
    so no transformers version can hand the cut stack's last state through that norm. The kept states are
    those of the whole model, bit for bit (tests/test_layers.py).
    """
    encoder = getattr(model, "encoder", None)
    attribute = next((a for a in ("layers", "layer") if hasattr(encoder, a)), None)
    if attribute is None:
        return
    stack = getattr(encoder, attribute)
    keep = layers_to_run(layers) + int(bool(getattr(model.config, "do_stable_layer_norm", False)))
    if keep < len(stack):
        setattr(encoder, attribute, stack[:keep])
