"""HTTP service: `POST /predict` (multipart `audio` file and/or `text` field), `GET /health`, `GET /info`; the
page at `/` and `GET /card` (`page.py`), live mode over `WS /live` (`live.py`).

The model and its encoders load once, in `create_app`; the ASR model on the first upload that needs it.
Uploads of any container PyAV reads (WAV, FLAC, MP3, OGG, WebM/Opus from browsers, M4A) are decoded in a worker
thread, refused from their header when longer than `max_seconds` (or once decoding passes it, when the header
states no duration). Audio without text is transcribed (form field `transcribe=false` or `asr=none` turns it
off); audio longer than the model's limit gets a timeline. Short requests go to the model in batches (`Batcher`:
those waiting while it is busy go through together); decoding, transcription and timelines run in worker
threads bounded by a CapacityLimiter. Request bodies are counted as they stream in (`BodyLimit`), so a chunked
upload without Content-Length is cut off at the limit too. Every error answers `{"detail": "<words>"}`.
"""

from __future__ import annotations

import math
import os
import unicodedata
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile

import mamer
from mamer.data.audio import AudioLoadError, decode_bytes
from mamer.workflows.inference.recognizer import EmotionRecognizer
from mamer.workflows.service.batcher import Batcher
from mamer.workflows.service.errors import install_error_handlers
from mamer.workflows.service.limits import BodyLimit, PendingLimit
from mamer.workflows.service.live import MAX_CONNECTIONS, mount_live
from mamer.workflows.service.page import mount_page

SAMPLE_RATE = 16000  # uploads are decoded to this rate (what VAD and ASR read)
OFF = ("none", "false", "0", "off", "no")

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the text field, on top of the audio limit
MAX_PENDING = 64  # POST /predict requests answered or waiting at once; more get 503
MIN_SECONDS = 0.1  # shorter uploads (a recording stopped at once) are refused rather than guessed at
EMPTY_TEXT = "the `text` field is empty: type some text, or send an `audio` file"


def create_app(
    run_dir: str | Path,
    max_upload_mb: float = 20.0,
    max_seconds: float = 600.0,
    workers: int = 2,
    device: str = "cpu",
    asr: str | None = "whisper-base",
    language: str | None = None,
    max_live: int | None = None,
    allow_origins: Sequence[str] = (),
    max_pending: int | None = None,
) -> FastAPI:
    """A FastAPI app serving the run in `run_dir`; request bodies over `max_upload_mb` get 413 (counted as they
    arrive), audio over `max_seconds` 422; at most `workers` uploads are decoded (or transcribed, or read as a
    timeline) at once, the rest wait; short requests share the model in batches. `asr` (None: never)
    transcribes audio sent without text, in `language` (None: detected). `WS /live` takes at most `max_live`
    (None: `live.MAX_CONNECTIONS`) streams at once, from the service's own page or pages of `allow_origins`;
    `POST /predict` answers at most `max_pending` (None: `MAX_PENDING`) requests at once, waiting ones
    included; the next gets 503."""
    recognizer = EmotionRecognizer.load(
        run_dir, device=device, preload=True, asr=asr or "whisper-base", language=language
    )
    limit_bytes = int(max_upload_mb * 1024 * 1024)
    limiter = anyio.CapacityLimiter(workers)
    batcher = Batcher(recognizer)
    asr_on = asr is not None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()

    app = FastAPI(title="MAMER emotion recognition", version=mamer.__version__, lifespan=lifespan)
    app.state.recognizer = recognizer
    app.add_middleware(BodyLimit, limit_bytes=limit_bytes + FORM_OVERHEAD, detail=_too_large(max_upload_mb))
    # outermost, so that a request past the limit is answered before any of its body is read
    app.add_middleware(PendingLimit, path="/predict", max_pending=max_pending or MAX_PENDING)
    install_error_handlers(app)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    def info() -> dict[str, Any]:
        return service_info(recognizer, max_upload_mb, max_seconds)

    @app.post("/predict")
    async def predict(
        request: Request,
        audio: Annotated[
            UploadFile | None, File(description="speech: wav, flac, ogg, mp3, webm/opus, m4a, mp4")
        ] = None,
        text: Annotated[str | None, Form(description="transcript of the speech, or text alone")] = None,
        transcribe: Annotated[bool, Form(description="transcribe audio sent without text")] = True,
        asr: Annotated[str | None, Form(description="`none` turns transcription off")] = None,
    ) -> dict[str, Any]:
        wave = None
        if audio is not None:
            wave = await _read_audio(audio, limit_bytes, max_upload_mb, max_seconds, limiter)
        if text is None and "text" in await request.form():  # FastAPI reads an empty field as absent
            text = ""
        text = _given_text(text, wave is not None)
        if wave is None and text is None:
            raise HTTPException(422, "send an `audio` file, a `text` field, or both")
        for modality, given in (("audio", wave), ("text", text)):
            if given is not None and modality not in recognizer.modalities:
                raise HTTPException(
                    422, f"this model was trained without {modality}; send only {_only(recognizer)}"
                )
        heard = asr is None or asr.strip().lower() not in OFF
        listen = bool(transcribe and heard and asr_on)
        try:
            answer = await _answer(recognizer, batcher, limiter, wave, text, listen)
        except ValueError as err:  # the recognizer's words for an input it cannot read
            raise HTTPException(422, f"cannot predict from this input: {err}") from err
        if not _finite(answer):
            raise HTTPException(422, "the model gave no valid numbers for this input (NaN or infinity)")
        return answer

    mount_page(app, recognizer, asr_on)  # GET /, /static/..., /card
    mount_live(app, recognizer, limiter, asr_on, max_live or MAX_CONNECTIONS, allow_origins)  # WS /live
    return app


async def _answer(
    recognizer: EmotionRecognizer, batcher: Batcher, limiter, wave, text: str | None, transcribe: bool
) -> dict:
    """One request's answer: a prediction through the batcher; in a worker thread, audio to transcribe first,
    and audio beyond the model's limit (a timeline and its summary)."""
    if wave is not None and len(wave) / SAMPLE_RATE > recognizer.max_seconds:
        return await anyio.to_thread.run_sync(
            lambda: _timeline(recognizer, wave, text, transcribe), limiter=limiter
        )
    item = {"audio": wave, "text": text, "sample_rate": SAMPLE_RATE, "transcribe": transcribe}
    if transcribe and wave is not None and text is None and recognizer.can_transcribe:
        # ASR takes seconds and holds no lock; the batch thread keeps answering others meanwhile
        heard = await anyio.to_thread.run_sync(lambda: recognizer.predict(**item), limiter=limiter)
        return heard.to_dict()
    return (await batcher.predict(item)).to_dict()


def _timeline(recognizer: EmotionRecognizer, wave, text: str | None, transcribe: bool) -> dict:
    """Audio beyond the model's limit, segment by segment: the timeline's summary and its rows."""
    segment = "none" if text is not None else "auto"
    result = recognizer.timeline(
        wave, sample_rate=SAMPLE_RATE, text=text, segment=segment, transcribe=transcribe
    )
    return {"summary": result.summary(), "segments": result.rows()}


def _given_text(text: str | None, with_audio: bool) -> str | None:
    """The `text` field, or None when absent; one with nothing visible (empty, spaces, zero-width or control
    characters) is dropped beside audio and refused in words when it is all there is."""
    if text is None or any(unicodedata.category(c)[0] not in "CZ" for c in text):
        return text
    if with_audio:
        return None
    raise HTTPException(422, EMPTY_TEXT)


def _finite(value: Any) -> bool:
    """False when a number anywhere in an answer (nested dicts and lists) is NaN or infinite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return True


async def _read_audio(
    upload: UploadFile, limit_bytes: int, max_upload_mb: float, max_seconds: float, limiter
):
    """The upload decoded (in a worker thread) to mono float32 at 16 kHz; 413 / 422 with the reason."""
    data = await upload.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise HTTPException(413, _too_large(max_upload_mb))
    name = upload.filename or "the `audio` upload"
    try:
        wave = await anyio.to_thread.run_sync(
            lambda: decode_bytes(data, SAMPLE_RATE, name, max_seconds), limiter=limiter
        )
    except AudioLoadError as err:
        raise HTTPException(422, str(err)) from err
    if len(wave) < MIN_SECONDS * SAMPLE_RATE:
        seconds = len(wave) / SAMPLE_RATE
        raise HTTPException(
            422, f"{name}: audio is only {seconds:.3f} s long; send at least {MIN_SECONDS:g} s"
        )
    return wave


def _too_large(max_upload_mb: float) -> str:
    return f"upload too large: this service takes at most {max_upload_mb:g} MB"


def _only(recognizer: EmotionRecognizer) -> str:
    return " or ".join(f"`{m}`" for m in recognizer.modalities)


def service_info(recognizer: EmotionRecognizer, max_upload_mb: float, max_seconds: float) -> dict[str, Any]:
    """What `GET /info` answers: the model's label space, encoders, views and the service limits."""
    return {
        "mamer_version": mamer.__version__,
        "name": recognizer.name,
        "task": recognizer.task,
        "labels": recognizer.labels,
        "views": recognizer.views,
        "trained_views": recognizer.meta.run_config.model.views,
        "encoders": recognizer.meta.encoders,
        "params": recognizer.meta.params,
        "max_upload_mb": max_upload_mb,
        "max_seconds": max_seconds,
    }


def service_threads() -> int:
    """Torch threads for serving: OMP_NUM_THREADS when set, else half the cores this process may use (at least
    one). The batch thread runs the model while other threads decode uploads and parse requests; with as many
    torch threads as cores they stall each other (docs/service.md has the figures on 2 shared cores)."""
    stated = os.environ.get("OMP_NUM_THREADS", "")
    if stated.isdigit() and int(stated) > 0:
        return int(stated)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // 2)


def serve(
    run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, threads: int | None = None, **options: Any
) -> None:
    """Load the run and serve it with uvicorn until interrupted; `threads`: torch threads (default
    `service_threads()`)."""
    import torch
    import uvicorn

    torch.set_num_threads(threads or service_threads())
    uvicorn.run(create_app(run_dir, **options), host=host, port=port)
