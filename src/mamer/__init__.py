"""MAMER: modality-agnostic multimodal emotion recognition."""

__version__ = "0.2.0"
__all__ = ["EmotionRecognizer", "Prediction", "__version__"]


def __getattr__(name: str):
    # Lazy: `import mamer` stays cheap (no torch) until the inference API is asked for.
    if name in ("EmotionRecognizer", "Prediction"):
        from mamer.workflows.inference import recognizer as predict

        return getattr(predict, name)
    raise AttributeError(f"module 'mamer' has no attribute {name!r}")
