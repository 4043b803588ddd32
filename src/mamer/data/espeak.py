"""Offline speech synthesis with libespeak-ng (bundled by ``espeakng-loader``), driven through its C API.

espeak-ng keeps all its state in globals, so one process holds one initialised library and every
:class:`EspeakSynthesizer` shares it. That state drifts from one utterance to the next (pitch flutter
phase, wave-cycle counters) and breathy or Klatt voices draw random noise, so the same call made twice
gives slightly different samples. For exact determinism the noise generators are reseeded before every
utterance and each utterance is synthesised in a forked child of the process, which always starts from
the same freshly initialised state (POSIX only; elsewhere synthesis runs in-process and is reproducible
only for the same sequence of calls in a fresh process)."""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from pathlib import Path

import numpy as np

# Values from espeak-ng's speak_lib.h (API revision 12).
AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_INITIALIZE_DONT_EXIT = 0x8000
ESPEAK_CHARS_UTF8 = 1
POS_CHARACTER = 1
EE_OK = 0
ESPEAK_RATE, ESPEAK_VOLUME, ESPEAK_PITCH, ESPEAK_RANGE, ESPEAK_WORDGAP = 1, 2, 3, 4, 7
RATE_MIN, RATE_MAX = 80, 450

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events); return 0 = continue.
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakError(RuntimeError):
    """libespeak-ng could not be loaded, initialised, or failed to synthesise."""


class _Library:
    """The process-wide libespeak-ng handle: loaded and initialised once."""

    def __init__(self, library_path: str | None, data_path: str | None) -> None:
        if library_path is None or data_path is None:
            try:
                import espeakng_loader
            except ImportError as e:
                raise EspeakError(
                    "espeakng-loader is not installed; run `pip install espeakng-loader`."
                ) from e
            library_path = library_path or espeakng_loader.get_library_path()
            data_path = data_path or espeakng_loader.get_data_path()
        try:
            lib = ctypes.CDLL(str(library_path))
        except OSError as e:
            raise EspeakError(f"cannot load libespeak-ng from {library_path}: {e}") from e
        if not Path(data_path).is_dir():
            raise EspeakError(f"espeak-ng data folder not found: {data_path}")
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        buflength_ms = 500
        rate = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, buflength_ms, str(data_path).encode(), ESPEAK_INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data path {data_path}")
        # Breathy variants (f2, f3, f5, ...) draw noise from espeak's own generator (time-seeded) and
        # Klatt voices from libc rand(); both are reseeded before every utterance.
        self.set_rand_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self.set_rand_seed is not None:
            self.set_rand_seed.argtypes = [ctypes.c_long]
        try:
            self.libc_srand = ctypes.CDLL(None).srand
        except (OSError, AttributeError, TypeError):  # no process-wide C namespace (Windows)
            self.libc_srand = None
        self.lib = lib
        self.sample_rate = int(rate)
        self.data_path = str(data_path)
        self.lock = threading.Lock()
        self.chunks: list[bytes] = []
        # Keep a reference: ctypes callbacks are freed with their Python object.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav: ctypes.POINTER(ctypes.c_short), n: int, _events: int) -> int:
        if wav and n > 0:
            self.chunks.append(ctypes.string_at(wav, n * 2))
        return 0


_LIBRARY: _Library | None = None


def _library(library_path: str | None = None, data_path: str | None = None) -> _Library:
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = _Library(library_path, data_path)
    return _LIBRARY


class EspeakSynthesizer:
    """Text-to-speech with libespeak-ng; deterministic for the same arguments.

    ``library_path``/``data_path`` default to those bundled by ``espeakng-loader`` and only matter
    for the first synthesiser created in the process (espeak-ng is global state). ``isolate=True``
    (default where ``os.fork`` exists) synthesises each utterance in a forked child so that the
    output does not depend on what was synthesised before.
    """

    def __init__(
        self, library_path: str | None = None, data_path: str | None = None, isolate: bool | None = None
    ) -> None:
        self._lib = _library(library_path, data_path)
        self.isolate = hasattr(os, "fork") if isolate is None else isolate

    @property
    def sample_rate(self) -> int:
        """Output sample rate in Hz (22050 for the bundled voices)."""
        return self._lib.sample_rate

    def synthesize(
        self,
        text: str,
        voice: str = "en-us",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        volume: int = 100,
        word_gap: int = 0,
    ) -> np.ndarray:
        """Speak ``text``; returns mono float32 samples in [-1, 1] at ``sample_rate``, shape (T,).

        voice: espeak-ng voice name, optionally with a variant from ``espeak-ng-data/voices/!v``
        (``"en-gb-x-rp+f2"``). rate: words per minute (80-450); pitch, pitch_range: 0-100 (50 = normal);
        volume: 0-200 (100 = normal); word_gap: extra pause between words in units of 10 ms.
        """
        params = {
            ESPEAK_RATE: int(np.clip(rate, RATE_MIN, RATE_MAX)),
            ESPEAK_VOLUME: int(np.clip(volume, 0, 200)),
            ESPEAK_PITCH: int(np.clip(pitch, 0, 100)),
            ESPEAK_RANGE: int(np.clip(pitch_range, 0, 100)),
            ESPEAK_WORDGAP: max(int(word_gap), 0),
        }
        variant = voice.partition("+")[2]
        if variant and variant not in variants(self._lib.data_path):
            raise EspeakError(
                f"unknown espeak-ng voice variant {variant!r}; see mamer.data.espeak.variants()"
            )
        with self._lib.lock:
            pcm = self._run_forked(text, voice, params) if self.isolate else self._run(text, voice, params)
        return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0

    def _run(self, text: str, voice: str, params: dict[int, int]) -> bytes:
        """Synthesise in this process; returns 16-bit PCM bytes."""
        lib = self._lib
        if lib.lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
            raise EspeakError(f"unknown espeak-ng voice {voice!r} (try 'en-us', 'en', 'en-gb-x-rp+f2')")
        for param, value in params.items():
            if lib.lib.espeak_SetParameter(param, value, 0) != EE_OK:
                raise EspeakError(f"espeak_SetParameter({param}, {value}) failed")
        if lib.set_rand_seed is not None:
            lib.set_rand_seed(1)
        if lib.libc_srand is not None:
            lib.libc_srand(1)
        data = text.encode("utf-8") + b"\0"
        lib.chunks = []
        err = lib.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
        if err != EE_OK or lib.lib.espeak_Synchronize() != EE_OK:
            raise EspeakError(f"espeak_Synth failed (error {err}) for text {text[:40]!r}")
        pcm = b"".join(lib.chunks)
        lib.chunks = []
        return pcm

    def _run_forked(self, text: str, voice: str, params: dict[int, int]) -> bytes:
        """Synthesise in a forked child (fresh espeak state); the child sends status byte + PCM."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never returns
            os.close(read_fd)
            try:
                payload = b"\0" + self._run(text, voice, params)
            except BaseException as e:  # noqa: BLE001 - report anything to the parent
                payload = b"\1" + str(e).encode()
            view = memoryview(payload)
            while view:
                view = view[os.write(write_fd, view) :]
            os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            payload = f.read()
        _, status = os.waitpid(pid, 0)
        if not payload or status != 0:
            raise EspeakError(f"espeak-ng child process failed (status {status}) for text {text[:40]!r}")
        if payload[:1] != b"\0":
            raise EspeakError(payload[1:].decode(errors="replace"))
        return payload[1:]


@functools.cache
def variants(data_path: str | None = None) -> tuple[str, ...]:
    """Names of the voice variants (``f1``, ``m3``, ``klatt``, ...) in espeak-ng-data/voices/!v."""
    if data_path is None:
        import espeakng_loader

        data_path = espeakng_loader.get_data_path()
    return tuple(sorted(p.name for p in (Path(data_path) / "voices" / "!v").iterdir() if p.is_file()))
