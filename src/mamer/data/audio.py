"""Read audio of any common container into mono float32 waveforms at the rate an encoder expects.

PyAV (FFmpeg inside its wheel; no ffmpeg program needed) decodes WAV, FLAC, OGG, MP3, M4A/AAC, WebM/Opus and
the audio track of MP4 video. Each frame goes through one stateful `av.AudioResampler` (FFmpeg's swresample)
per file, so a file read block by block (`stream_audio`) has no seams. Channels are averaged to mono after
resampling (swresample's own downmix sums stereo at 0.707 each and can clip). WAV and FLAC files are read
with libsndfile and `scipy.signal.resample_poly` instead, which is faster for them (see `load_audio`).

Every file and upload is hostile until checked. FFmpeg guesses a container from the bytes, and some of its
demuxers open other things: `concat` playlists and `hls` open files named inside them, `sdp`/`rtp`/`rtsp`
open network sockets, `image2` globs paths. So PyAV opens only the demuxers of `ALLOWED_DEMUXERS` (FFmpeg's
`format_whitelist`, checked after probing and before a demuxer reads anything), and reads from memory or from
a file object this module opened itself, so no FFmpeg protocol (file, http, concat:, subfile:, ...) is used.
Anything else is "not an audio file", with no detail that could tell a prober what exists on the machine.
"""

from __future__ import annotations

import errno
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from math import gcd
from pathlib import Path

import av
import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

# File suffixes worth offering to load_audio (FFmpeg reads more; these are the common ones, video included).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".webm", ".mp4", ".mov")
VIA_SOUNDFILE = (".wav", ".flac")  # libsndfile + resample_poly read these faster than PyAV (measured)
BLOCK_SECONDS = 0.5  # decoded audio is resampled and checked this much at a time
MAX_PEAK = 1000.0  # decoded samples lie within -1..1; an upload far beyond that is refused (decode_bytes)
# FFmpeg demuxers that may read untrusted input: the containers people record and share speech in. A demuxer
# whose FFmpeg name lists several ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm") is allowed by any of them.
ALLOWED_DEMUXERS = (
    "wav", "w64", "flac", "mp3", "ogg",  # ogg: Vorbis, Opus (.ogg, .oga, .opus)
    "matroska",  # .mkv, .mka, .webm (browsers' MediaRecorder)
    "mov",  # .mp4, .m4a, .mov, .3gp (phones, Safari's MediaRecorder); external references stay off (FFmpeg default)
    "aac", "aiff", "caf", "amr", "au", "wv",  # ADTS AAC; Apple AIFF/CAF; AMR (phone memos); Sun au; WavPack
)  # fmt: skip
NOT_AUDIO = (
    "not an audio file (MAMER reads WAV, FLAC, MP3, OGG/Opus, WebM/MKV, MP4/M4A/MOV, AAC, AIFF, CAF, AMR)"
)


class AudioLoadError(ValueError):
    """An audio file could not be turned into a usable waveform; the message names the file and why."""


class AudioTooLong(AudioLoadError):
    """Audio longer than the `max_seconds` the caller set: the one refusal a service operator can lift."""


def resample(wave: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling of `wave` `(N,)` or `(N, C)` from `sr` to `target_sr` Hz; returns float32."""
    if sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {sr} -> {target_sr}")
    wave = np.asarray(wave, dtype=np.float32)
    if sr == target_sr:
        return wave
    from scipy.signal import resample_poly  # 1-2 s to import: only when a rate differs

    g = gcd(int(sr), int(target_sr))
    return resample_poly(wave, target_sr // g, sr // g, axis=0).astype(np.float32)


def load_audio(path: str | Path, target_sr: int, max_seconds: float | None = None) -> np.ndarray:
    """Load `path` (any container PyAV reads) as a mono float32 waveform `(N,)` at `target_sr` Hz.

    Channels are averaged. `max_seconds` refuses longer audio: from the header before decoding when it states
    a duration, else once decoding passes the limit. Raises AudioLoadError (naming the file) for a missing,
    empty, unreadable, corrupt, over-long or non-finite file.
    """
    path = Path(path)
    _check_file(path)
    _refuse_long(path, str(path), max_seconds)
    if path.suffix.lower() in VIA_SOUNDFILE:
        read = _read_soundfile(path)
        if read is not None:
            wave, sr = read
            check_wave(wave, str(path))
            _check_length(wave.shape[0] / sr, str(path), max_seconds)
            return np.ascontiguousarray(resample(wave, sr, target_sr))
    return _decode(path, str(path), target_sr, max_seconds)


def decode_bytes(
    data: bytes, target_sr: int, what: str = "upload", max_seconds: float | None = None
) -> np.ndarray:
    """Decode an in-memory file (an upload) to mono float32 `(N,)` at `target_sr` Hz; errors name `what`."""
    if len(data) == 0:
        raise AudioLoadError(f"{what}: empty file (0 bytes)")
    _refuse_long(data, what, max_seconds)
    wave = _decode(data, what, target_sr, max_seconds)
    peak = float(np.abs(wave).max())
    if peak > MAX_PEAK:  # the encoders' spectra overflow to infinity well before float32 does
        raise AudioLoadError(
            f"{what}: samples reach {peak:.3g}, far outside -1..1 (a float file scaled wrong?)"
        )
    return wave


def audio_duration(path_or_bytes: str | Path | bytes) -> float | None:
    """Duration in seconds stated by the container header (nothing is decoded), or None when it states none."""
    if isinstance(path_or_bytes, bytes):
        return _header_duration(path_or_bytes, "upload")
    _check_file(Path(path_or_bytes))
    return _header_duration(Path(path_or_bytes), str(path_or_bytes))


def stream_audio(path: str | Path, target_sr: int, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks `(block_seconds * target_sr,)` of `path` (the last may be shorter).

    Memory stays at about one block whatever the file's length; the blocks concatenate to the whole file at
    `target_sr` with no seams (one resampler runs across them).
    """
    path = Path(path)
    _check_file(path)
    block = max(1, round(block_seconds * target_sr))
    pending: list[np.ndarray] = []
    held = total = 0
    for chunk in _decoded_chunks(path, str(path), target_sr):
        pending.append(chunk)
        held += chunk.shape[0]
        total += chunk.shape[0]
        while held >= block:
            joined = np.concatenate(pending)
            yield joined[:block]
            pending, held = [joined[block:]], held - block
    if held:
        yield np.concatenate(pending)
    if total == 0:
        raise AudioLoadError(f"{path}: zero-length audio (no samples)")


# ---------------------------------------------------------------- checks


def _check_file(path: Path) -> None:
    """Raise AudioLoadError unless `path` is a readable, non-empty regular file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioLoadError(f"{path}: no such audio file") from None
    except OSError as err:
        reason = "symlink loop" if err.errno == errno.ELOOP else err.strerror
        raise AudioLoadError(f"{path}: cannot open the audio file ({reason})") from err
    if path.is_dir():
        raise AudioLoadError(f"{path}: is a folder, not an audio file")
    if size == 0:
        raise AudioLoadError(f"{path}: empty file (0 bytes)")


def check_wave(wave: np.ndarray, what: str) -> np.ndarray:
    """A waveform `(N,)` or `(N, C)` -> mono float32 `(N,)`; AudioLoadError (naming `what`) if it has another
    shape, no samples, or NaN/inf samples."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if wave.ndim != 1:
        raise AudioLoadError(f"{what}: audio array has shape {wave.shape}; expected (N,) or (N, channels)")
    if wave.shape[0] == 0:
        raise AudioLoadError(f"{what}: zero-length audio (no samples)")
    if not np.isfinite(wave).all():
        raise AudioLoadError(f"{what}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(wave)


def _check_length(seconds: float, what: str, max_seconds: float | None) -> None:
    """Raise AudioLoadError when `seconds` exceeds `max_seconds`."""
    if max_seconds is not None and seconds > max_seconds:
        raise AudioTooLong(f"{what}: audio is longer than the limit of {max_seconds:g} s")


def _refuse_long(source: Path | bytes, what: str, max_seconds: float | None) -> None:
    """Refuse from the header alone audio whose stated duration exceeds `max_seconds`."""
    if max_seconds is None:
        return
    seconds = _header_duration(source, what)
    if seconds is not None and seconds > max_seconds:
        raise AudioTooLong(
            f"{what}: audio is longer than the limit of {max_seconds:g} s ({seconds:.1f} s stated by its header)"
        )


def _header_duration(source: Path | bytes, what: str) -> float | None:
    """Seconds stated by the header of `source` (a path or bytes), or None; AudioLoadError naming `what`."""
    with _open(source, what) as container:
        stream = _audio_stream(container, what)
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / av.time_base
    return None


# ---------------------------------------------------------------- decoding


def _read_soundfile(path: Path) -> tuple[np.ndarray, int] | None:
    """Mono float32 `(N,)` and its sample rate through libsndfile, or None when libsndfile cannot read it."""
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        log.debug("%s: libsndfile could not read it (%s); trying PyAV", path, err)
        return None
    return wave.mean(axis=1), sr


@contextmanager
def _open(source: Path | bytes, what: str) -> Iterator[av.container.InputContainer]:
    """An input container of an allowed demuxer (`ALLOWED_DEMUXERS`) over in-memory bytes or a file object
    opened here (no FFmpeg protocol); AudioLoadError naming `what` for anything else."""
    with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as raw:
        try:
            container = av.open(raw, mode="r", options={"format_whitelist": ",".join(ALLOWED_DEMUXERS)})
        except (av.FFmpegError, OSError, ValueError) as err:
            # FFmpeg's reason stays in the debug log: whatever it says is the prober's answer, not the user's
            log.debug("%s: FFmpeg refused it (%s)", what, _reason(err))
            raise AudioLoadError(f"{what}: {NOT_AUDIO}") from None
        with container:
            yield container


def _audio_stream(container: av.container.InputContainer, what: str) -> av.audio.stream.AudioStream:
    """The first audio stream of `container`, or AudioLoadError naming `what`."""
    if not container.streams.audio:
        raise AudioLoadError(f"{what}: the file has no audio track")
    return container.streams.audio[0]


def _decode(source: Path | bytes, what: str, target_sr: int, max_seconds: float | None) -> np.ndarray:
    """Decode all of `source` to mono float32 `(N,)` at `target_sr`, stopping past `max_seconds`."""
    limit = None if max_seconds is None else max_seconds * target_sr
    chunks, total = [], 0
    for chunk in _decoded_chunks(source, what, target_sr):
        chunks.append(chunk)
        total += chunk.shape[0]
        if limit is not None and total > limit:
            raise AudioTooLong(f"{what}: audio is longer than the limit of {max_seconds:g} s")
    wave = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    check_wave(wave, what)
    return wave


def _decoded_chunks(source: Path | bytes, what: str, target_sr: int) -> Iterator[np.ndarray]:
    """Mono float32 chunks at `target_sr` through one stateful resampler, `BLOCK_SECONDS` at a time (decoded
    frames gather in a FIFO first: a WAV frame holds 1,024 samples, and resampling and checking each alone cost
    ten times the decoding); checks each chunk."""
    with _open(source, what) as container:
        stream = _audio_stream(container, what)
        fifo, resampler, setup, block = None, None, None, 0
        try:
            for frame in container.decode(stream):
                # A stream may change its layout or rate midway (some AAC/MP3): start a new resampler.
                if setup != (frame.format.name, frame.layout.name, frame.sample_rate):
                    if fifo is not None:
                        yield from _flushed(fifo, resampler, what)
                    setup = (frame.format.name, frame.layout.name, frame.sample_rate)
                    fifo = av.AudioFifo()
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=target_sr)
                    block = max(1, round(BLOCK_SECONDS * frame.sample_rate))
                frame.pts = None  # the FIFO checks timestamps run on without gaps; what counts is the samples
                fifo.write(frame)
                while fifo.samples >= block:
                    yield from _mono_chunks(resampler.resample(fifo.read(block)), what)
            if fifo is not None:
                yield from _flushed(fifo, resampler, what)
        except (av.FFmpegError, OSError) as err:
            raise AudioLoadError(f"{what}: corrupt or truncated audio ({_reason(err)})") from err


def _flushed(fifo: av.AudioFifo, resampler: av.AudioResampler, what: str) -> Iterator[np.ndarray]:
    """What `fifo` and `resampler` still hold, as mono chunks."""
    rest = fifo.read()  # None when empty
    if rest is not None:
        yield from _mono_chunks(resampler.resample(rest), what)
    yield from _mono_chunks(resampler.resample(None), what)


def _mono_chunks(frames: list[av.AudioFrame], what: str) -> Iterator[np.ndarray]:
    """Each planar float frame averaged over channels to `(n,)` float32; AudioLoadError on NaN/inf."""
    for frame in frames:
        chunk = frame.to_ndarray().mean(axis=0, dtype=np.float32)
        if not np.isfinite(chunk).all():
            raise AudioLoadError(f"{what}: audio contains NaN or infinite samples")
        yield chunk


def _reason(err: Exception) -> str:
    """A short reason from an FFmpeg/OS error, without the file name FFmpeg repeats."""
    text = getattr(err, "strerror", None) or str(err)
    return f"{type(err).__name__}: {text}"


def check_readable(path: str | Path) -> None:
    """Raise AudioLoadError (naming the file and why) unless `path`'s header reads as audio with samples.

    Cheap: WAV and FLAC through libsndfile's header reader (about 0.1 ms a file), other containers through
    PyAV's (a few ms); nothing is decoded, so a file whose header is fine but whose data is damaged passes.
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() in VIA_SOUNDFILE:
        try:
            info = sf.info(str(path))
        except Exception as err:  # libsndfile cannot read it: PyAV may (as load_audio does)
            log.debug("%s: libsndfile could not read its header (%s); trying PyAV", path, err)
        else:
            if info.frames == 0:
                raise AudioLoadError(f"{path}: zero-length audio (no samples)")
            return
    if audio_duration(path) == 0:
        raise AudioLoadError(f"{path}: zero-length audio (no samples)")
