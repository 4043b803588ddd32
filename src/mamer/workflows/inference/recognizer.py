"""Python inference API: a trained run + its frozen encoders -> emotion predictions from audio, text or both.

from mamer import EmotionRecognizer
r = EmotionRecognizer.load("runs/unified")
r.predict(audio="clip.wav", text="I can't believe it")   # view "audio+text"
r.predict(text="what a lovely day")                       # view "text"
r.predict(audio="clip.wav", transcribe=True)              # the text view from ASR (whisper-base)
r.timeline("meeting.mp3")                                 # a long recording, segment by segment
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mamer.checkpoint import ModelMeta, load_model
from mamer.data.audio import check_wave, load_audio, resample
from mamer.data.frame_norm import Statistics, normalised_blocks
from mamer.device import available_device
from mamer.encoders.base import AudioEncoder, TextEncoder
from mamer.encoders.choice import rebuild_encoder
from mamer.encoders.registry import TEXT_LANGUAGES
from mamer.modality import DIMENSIONS, views_within
from mamer.model.mamer import MAMER
from mamer.workflows.inference.features import Features, pad
from mamer.workflows.inference.prediction import Prediction, check_labels, pooled, reshaped
from mamer.workflows.inference.pretrained import resolve_model, save_pretrained

if TYPE_CHECKING:
    from mamer.workflows.inference.asr import Transcriber
    from mamer.workflows.inference.timeline import Timeline

__all__ = ["EmotionRecognizer", "Features", "Prediction"]

log = logging.getLogger(__name__)

AudioInput = str | Path | np.ndarray | None


# ---------------------------------------------------------------- the recognizer


class EmotionRecognizer:
    """A trained MAMER run with its frozen encoders: waveforms and/or texts in, `Prediction`s out.

    Thread-safe: one lock serialises the encoders and the model (tokenizers are not safe to share).
    """

    def __init__(self, model: MAMER, meta: ModelMeta, run_dir: Path, device: str | torch.device = "cpu"):
        self.model, self.meta, self.run_dir = model.eval(), meta, run_dir
        self.device = torch.device(device)
        config = meta.run_config
        self.task, self.labels = config.data.task, list(meta.label_space.labels)
        self.max_frames = config.model.max_audio_tokens * config.model.audio_downsample
        self.modalities = [
            m for m, p in (("audio", model.audio_in), ("text", model.text_in)) if p is not None
        ]
        self._encoders: dict[str, AudioEncoder | TextEncoder] = {}
        self._lock = threading.RLock()  # featurize takes it alone (a first pass) and inside predict_batch
        self.asr, self.language = "whisper-base", None
        text_encoder = meta.encoders.get("text", {}).get("name")
        self.transcript_languages: tuple[str, ...] | None = TEXT_LANGUAGES.get(text_encoder)  # None: any
        self._transcriber: Transcriber | None = None
        self._asr_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        model: str | Path,
        device: str = "cpu",
        preload: bool = False,
        asr: str = "whisper-base",
        language: str | None = None,
        transcript_languages: str = "auto",
    ) -> EmotionRecognizer:
        """Load a model: a built-in name ("mamer-base"), a run directory or release folder, or a Hugging Face
        Hub id; `preload=True` builds every encoder now (fails fast, as a server should). `asr` names the
        speech recogniser `transcribe=True` uses (loaded on first use only), `language` fixes its language.
        `transcript_languages`: the languages of ASR transcripts the model is given, "en,de", "any", or "auto"
        (those its text encoder reads: English for MiniLM); a transcript in another language leaves the clip on
        the audio view, and the prediction's `text_skipped` says so."""
        device = available_device(device)  # a name torch does not know, or no such GPU: in words, at once
        folder = resolve_model(model)
        model, meta = load_model(folder, device)
        recognizer = cls(model, meta, folder, device)
        recognizer.asr, recognizer.language = asr, language
        if transcript_languages != "auto":
            given = [code.strip() for code in transcript_languages.split(",") if code.strip()]
            recognizer.transcript_languages = None if given == ["any"] else tuple(given)
        if preload:
            for modality in recognizer.modalities:
                recognizer.encoder(modality)
        return recognizer

    from_pretrained = load  # the name the Hugging Face ecosystem uses

    def save_pretrained(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write this model in the Hub layout (config.json, model.safetensors, README.md); see `push_to_hub`.
        A folder already holding any of those files is refused unless `overwrite`."""
        return save_pretrained(self.run_dir, folder, overwrite=overwrite)

    @property
    def name(self) -> str:
        """The name the model goes by (a release's or export's own, else its run's): what /info and /card say."""
        from mamer.workflows.evaluation.lineage import model_name

        return model_name(self.run_dir, self.meta)

    @property
    def views(self) -> list[str]:
        """Views this model can take: every non-empty subset of the modalities it was trained with."""
        return views_within(self.modalities)

    @property
    def sample_rate(self) -> int:
        """Rate audio is resampled to before the audio encoder."""
        return int(self.meta.encoders["audio"]["sample_rate"])

    @property
    def max_seconds(self) -> float:
        """The longest audio the model reads at once (its audio positions); longer audio goes in windows."""
        frame_rate = float(self.meta.encoders.get("audio", {}).get("frame_rate") or 50.0)
        return self.max_frames / frame_rate

    @property
    def can_transcribe(self) -> bool:
        """True when ASR would help: the model reads both audio and text (a dedicated audio model never does)."""
        return "text" in self.modalities and "audio" in self.modalities

    @property
    def transcriber(self) -> Transcriber:
        """The ASR model named by `self.asr`, created on first use (and loaded on its first transcription)."""
        with self._asr_lock:
            if self._transcriber is None or self._transcriber.name != self.asr:
                from mamer.workflows.inference.asr import load_transcriber

                self._transcriber = load_transcriber(self.asr)
            return self._transcriber

    def encoder(self, modality: str) -> AudioEncoder | TextEncoder:
        """The frozen encoder of `modality`, built on first use from the spec in model.json."""
        self.require(modality)
        if modality not in self._encoders:
            self._encoders[modality] = rebuild_encoder(self.meta.encoders[modality], modality)
        return self._encoders[modality]

    def require(self, modality: str) -> None:
        """ValueError naming the run if the model cannot read `modality` (a dedicated unimodal model)."""
        if modality not in self.modalities:
            trained = ", ".join(self.meta.run_config.model.views)
            raise ValueError(
                f"the model in {self.run_dir} was trained without {modality} (views: {trained}); "
                f"it cannot read a {modality} input. Pass only {' or '.join(self.modalities)}."
            )

    def load_wave(self, audio: str | Path | np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """A file path or an array (+ its sample rate) -> mono float32 at the audio encoder's rate."""
        if isinstance(audio, str | Path):
            return load_audio(audio, self.sample_rate)
        if sample_rate is None:
            raise ValueError(
                "an audio array needs its sample_rate, e.g. predict(audio=wave, sample_rate=16000)"
            )
        return resample(check_wave(audio, "audio array"), int(sample_rate), self.sample_rate)

    def predict(
        self,
        audio: AudioInput = None,
        text: str | None = None,
        sample_rate: int | None = None,
        transcribe: bool = False,
        language: str | None = None,
        top_k: int | None = None,
        labels: Sequence[str] | None = None,
        return_embedding: bool = False,
    ) -> Prediction:
        """Predict from audio (a file, or an array + `sample_rate`), a transcript, or both. `transcribe=True`
        fills a missing transcript by ASR (only when the model reads text); audio longer than `max_seconds`
        is read in windows and pooled, never cropped. `labels` restricts (and renormalises) the classes,
        `top_k` lists the likeliest, `return_embedding` adds the [CLS] output."""
        item = {"audio": audio, "text": text, "sample_rate": sample_rate, "transcribe": transcribe}
        options = {"top_k": top_k, "labels": labels, "return_embedding": return_embedding}
        return self.predict_batch([item | ({"language": language} if language else {})], **options)[0]

    def predict_batch(
        self,
        items: Sequence[dict],
        batch_size: int = 16,
        top_k: int | None = None,
        labels: Sequence[str] | None = None,
        return_embedding: bool = False,
        source: Statistics | None = None,
    ) -> list[Prediction]:
        """`items`: dicts with optional "audio", "text", "sample_rate", "transcribe", "language", "speaker" keys
        -> one Prediction each, in order (options as in `predict`). "speaker" (any hashable: a speaker, a
        recording) matters to a model with `audio_normalise: speaker`: the audio of the items that share it is
        standardised by their frames together, an item without one by `source` (the statistics of the clips of
        its source: `batch.source_statistics`) or else the training rows' statistics."""
        labels = check_labels(labels, self.labels)
        waves = [self._input_wave(it) for it in items]
        heard = [self._heard(it, w) for it, w in zip(items, waves, strict=True)]
        skipped = [None if h is None else self.skipped_transcript(h.language) for h in heard]
        texts = [
            self._input_text(it) if h is None else (None if why else h.text or None)
            for it, h, why in zip(items, heard, skipped, strict=True)
        ]
        groups = [it.get("speaker") for it in items]
        chunks = [slice(start, start + batch_size) for start in range(0, len(items), batch_size)]
        with self._lock:
            if self.model.config.audio_normalise == "speaker" and any(g is not None for g in groups):
                # a speaker's statistics span every chunk: all of the call is encoded before the model reads any
                features = self.normalise(
                    [f for c in chunks for f in self.featurize(waves[c], texts[c])], groups, source
                )
                parts = (features[c] for c in chunks)
            else:
                parts = (self.normalise(self.featurize(waves[c], texts[c]), alone=source) for c in chunks)
            results = [r for part in parts for r in self.predict_features(part, return_embedding)]
        for i, transcript in enumerate(heard):
            if transcript is not None:
                results[i] = replace(
                    results[i],
                    transcript=transcript.text,
                    language=transcript.language,
                    asr_model=transcript.model,
                    text_skipped=skipped[i],
                )
        return [reshaped(r, labels, top_k) for r in results]

    def skipped_transcript(self, language: str) -> str | None:
        """Why an ASR transcript in `language` is not given to the model, or None when it is."""
        allowed = self.transcript_languages
        if allowed is None or not language or language in allowed:
            return None
        return (
            f"the transcript is in '{language}' and the text encoder reads {', '.join(allowed)}: "
            "audio view (transcript_languages='any' uses it)"
        )

    def transcribe(self, wave: np.ndarray, language: str | None = None):
        """ASR of a waveform at `sample_rate` -> `asr.Transcript` (text, language, model, timed words)."""
        wave_16k = resample(wave, self.sample_rate, 16000)
        return self.transcriber.transcribe(wave_16k, language=language or self.language)

    def _heard(self, item: dict, wave: np.ndarray | None):
        """The ASR transcript of an item asking for one (audio, no text, a model that reads text), else None."""
        if (
            not item.get("transcribe")
            or wave is None
            or item.get("text") is not None
            or not self.can_transcribe
        ):
            return None
        return self.transcribe(wave, item.get("language"))

    def timeline(self, audio: AudioInput, sample_rate: int | None = None, **options) -> Timeline:
        """A recording of any length, segment by segment (see `mamer.workflows.inference.timeline.timeline`)."""
        from mamer.workflows.inference.timeline import timeline

        return timeline(self, audio, sample_rate=sample_rate, **options)

    def _input_wave(self, item: dict) -> np.ndarray | None:
        audio = item.get("audio")
        if audio is not None:
            self.require("audio")
        return None if audio is None else self.load_wave(audio, item.get("sample_rate"))

    def _input_text(self, item: dict) -> str | None:
        text = item.get("text")
        if text is not None and not str(text).strip():
            raise ValueError("text is empty; pass text=None to predict from audio alone")
        if item.get("audio") is None and text is None:
            raise ValueError("nothing to predict from: give audio, text, or both")
        if text is not None:
            self.require("text")
        return None if text is None else str(text)

    @torch.inference_mode()
    def featurize(self, waves: Sequence[np.ndarray | None], texts: Sequence[str | None]) -> list[Features]:
        """Run the frozen encoders: waveforms at `sample_rate` and/or texts -> per-utterance features."""
        with self._lock:
            audio, text = self._encode("audio", waves), self._encode("text", texts)
        return [Features(a, t) for a, t in zip(audio, text, strict=True)]

    def _encode(self, modality: str, inputs: Sequence) -> list[torch.Tensor | None]:
        present = [i for i, x in enumerate(inputs) if x is not None]
        out: list[torch.Tensor | None] = [None] * len(inputs)
        if present:
            encoded = self.encoder(modality).encode([inputs[i] for i in present])
            for i, features in zip(present, encoded, strict=True):
                if len(features) == 0:
                    raise ValueError(f"the {modality} encoder produced no features for input {i}")
                out[i] = features
        return out

    def normalise(
        self,
        features: Sequence[Features],
        groups: Sequence[Hashable | None] | None = None,
        alone: Statistics | None = None,
    ) -> list[Features]:
        """`features` with their audio as the model reads it (`model.audio_normalise`): with `speaker`,
        standardised by the frames of their group (`groups`, one per feature), a feature of no group (None, or
        no `groups`) by `alone`, by default the training rows' statistics the model keeps; by their own frames
        with `utterance`; as given with `none`. Features already normalised are left as they are."""
        mode, out = self.model.config.audio_normalise, list(features)
        todo = [i for i, f in enumerate(features) if not f.normalised and f.audio is not None]
        if mode == "none" or not todo:
            return out
        groups = [None] * len(features) if groups is None else groups
        alone = self.model.audio_in.reference_statistics() if alone is None else alone
        blocks = normalised_blocks([features[i].audio for i in todo], [groups[i] for i in todo], mode, alone)
        for i, block in zip(todo, blocks, strict=True):
            out[i] = replace(features[i], audio=block, normalised=True)
        return out

    @torch.inference_mode()
    def predict_features(
        self, features: Sequence[Features], return_embedding: bool = False
    ) -> list[Prediction]:
        """The shared model on precomputed features, one padded batch per view. Audio longer than the model's
        positions is split into equal windows of at most `max_frames` frames, pooled by their length. Audio
        not yet `normalise`d is normalised as of no group."""
        windows = [self._windows(f) for f in self.normalise(features)]
        flat = [w for ws in windows for w in ws]
        done: list[Prediction | None] = [None] * len(flat)
        for view in {f.view for f in flat}:
            index = [i for i, f in enumerate(flat) if f.view == view]
            for i, prediction in zip(index, self._run_view([flat[i] for i in index], view), strict=True):
                done[i] = prediction
        results, at = [], 0
        for ws in windows:
            parts, at = done[at : at + len(ws)], at + len(ws)
            result = parts[0] if len(ws) == 1 else pooled(parts, [len(w.audio) for w in ws])
            results.append(result if return_embedding else replace(result, embedding=None))
        return results

    def _windows(self, features: Features) -> list[Features]:
        """Features whose audio exceeds `max_frames` -> equal windows that fit (each with the whole text)."""
        if features.audio is None or len(features.audio) <= self.max_frames:
            return [features]
        count = -(-len(features.audio) // self.max_frames)
        return [replace(features, audio=a) for a in torch.tensor_split(features.audio, count)]

    def _run_view(self, features: list[Features], view: str) -> list[Prediction]:
        inputs = {}
        if "audio" in view:
            inputs["audio"], inputs["audio_mask"] = pad([f.audio for f in features], self.device)
        if "text" in view:
            inputs["text"], inputs["text_mask"] = pad([f.text for f in features], self.device)
        out = self.model(**inputs)
        results = self._decode(out.logits, out.dims, view)
        for result, cls in zip(results, out.cls.float().cpu().tolist(), strict=True):
            result.embedding = cls
        return results

    def _decode(self, logits: torch.Tensor | None, dims: torch.Tensor | None, view: str) -> list[Prediction]:
        n = len(logits if logits is not None else dims)
        results = [Prediction(view) for _ in range(n)]
        if logits is not None:
            classes = self.meta.label_space.class_logits(logits.float())
            for result, p in zip(results, classes.softmax(-1).cpu().tolist(), strict=True):
                result.probabilities = dict(zip(self.labels, p, strict=True))
                result.label = self.labels[int(np.argmax(p))]
        if dims is not None:
            scaled = self.meta.label_space.denormalise(dims.float().cpu()).tolist()
            for result, values in zip(results, scaled, strict=True):
                for name, value in zip(DIMENSIONS, values, strict=True):
                    setattr(result, name, float(value))
        return results
