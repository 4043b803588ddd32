"""HTTP service: `POST /predict` (multipart `audio` file and/or `text` field), `GET /health`, `GET /info`.

The model and its encoders load once, in `create_app`; the ASR model on the first upload that needs it.
Uploads of any container PyAV reads (WAV, FLAC, MP3, OGG, WebM/Opus from browsers, M4A) are decoded in a worker
thread, refused from their header when longer than `max_seconds`. Audio without text is transcribed (form field
`transcribe=false` or `asr=none` turns it off); audio longer than the model's limit gets a timeline. Requests run
in worker threads bounded by a CapacityLimiter; the recognizer's lock keeps concurrent requests from sharing
the encoders mid-call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse

import mamer
from mamer.data.audio import AudioLoadError, decode_bytes
from mamer.workflows.inference.recognizer import EmotionRecognizer

SAMPLE_RATE = 16000  # uploads are decoded to this rate (what VAD and ASR read)
OFF = ("none", "false", "0", "off", "no")

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the text field, on top of the audio limit


def create_app(
    run_dir: str | Path,
    max_upload_mb: float = 20.0,
    max_seconds: float = 600.0,
    workers: int = 2,
    device: str = "cpu",
    asr: str | None = "whisper-base",
    language: str | None = None,
) -> FastAPI:
    """A FastAPI app serving the run in `run_dir`; uploads over `max_upload_mb` get 413, audio over
    `max_seconds` 422; at most `workers` requests are in the model at once, the rest wait. `asr` (None: never)
    transcribes audio sent without text, in `language` (None: detected)."""
    recognizer = EmotionRecognizer.load(
        run_dir, device=device, preload=True, asr=asr or "whisper-base", language=language
    )
    limit_bytes = int(max_upload_mb * 1024 * 1024)
    limiter = anyio.CapacityLimiter(workers)
    asr_on = asr is not None
    app = FastAPI(title="MAMER emotion recognition", version=mamer.__version__)

    @app.middleware("http")
    async def reject_large_bodies(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit_bytes + FORM_OVERHEAD:
            return JSONResponse({"detail": _too_large(max_upload_mb)}, status_code=413)
        return await call_next(request)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    def info() -> dict[str, Any]:
        return service_info(recognizer, max_upload_mb, max_seconds)

    @app.post("/predict")
    async def predict(
        audio: Annotated[
            UploadFile | None, File(description="speech: wav, flac, ogg, mp3, webm/opus, m4a, mp4")
        ] = None,
        text: Annotated[str | None, Form(description="transcript of the speech, or text alone")] = None,
        transcribe: Annotated[bool, Form(description="transcribe audio sent without text")] = True,
        asr: Annotated[str | None, Form(description="`none` turns transcription off")] = None,
    ) -> dict[str, Any]:
        wave, sample_rate = None, SAMPLE_RATE
        if audio is not None:
            wave = await _read_audio(audio, limit_bytes, max_upload_mb, max_seconds, limiter)
        if text is not None and not text.strip():
            text = None
        if wave is None and text is None:
            raise HTTPException(422, "send an `audio` file, a `text` field, or both")
        for modality, given in (("audio", wave), ("text", text)):
            if given is not None and modality not in recognizer.modalities:
                raise HTTPException(
                    422, f"this model was trained without {modality}; send only {_only(recognizer)}"
                )
        heard = asr is None or asr.strip().lower() not in OFF
        options = {"transcribe": bool(transcribe and heard and asr_on), "sample_rate": sample_rate}
        return await anyio.to_thread.run_sync(
            lambda: _answer(recognizer, wave, text, **options), limiter=limiter
        )

    return app


def _answer(
    recognizer: EmotionRecognizer, wave, text: str | None, transcribe: bool, sample_rate: int
) -> dict:
    """One request's answer: a prediction, or for audio beyond the model's limit a timeline and its summary."""
    if wave is not None and len(wave) / sample_rate > recognizer.max_seconds:
        segment = "none" if text is not None else "auto"
        result = recognizer.timeline(
            wave, sample_rate=sample_rate, text=text, segment=segment, transcribe=transcribe
        )
        return {"summary": result.summary(), "segments": result.rows()}
    kept = recognizer.predict(audio=wave, text=text, sample_rate=sample_rate, transcribe=transcribe)
    return kept.to_dict()


async def _read_audio(
    upload: UploadFile, limit_bytes: int, max_upload_mb: float, max_seconds: float, limiter
):
    """The upload decoded (in a worker thread) to mono float32 at 16 kHz; 413 / 422 with the reason."""
    data = await upload.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise HTTPException(413, _too_large(max_upload_mb))
    name = upload.filename or "audio"
    try:
        return await anyio.to_thread.run_sync(
            lambda: decode_bytes(data, SAMPLE_RATE, name, max_seconds), limiter=limiter
        )
    except AudioLoadError as err:
        raise HTTPException(422, str(err)) from err


def _too_large(max_upload_mb: float) -> str:
    return f"upload too large: this service takes at most {max_upload_mb:g} MB"


def _only(recognizer: EmotionRecognizer) -> str:
    return " or ".join(f"`{m}`" for m in recognizer.modalities)


def service_info(recognizer: EmotionRecognizer, max_upload_mb: float, max_seconds: float) -> dict[str, Any]:
    """What `GET /info` answers: the model's label space, encoders, views and the service limits."""
    return {
        "mamer_version": mamer.__version__,
        "name": recognizer.meta.run_config.name,
        "task": recognizer.task,
        "labels": recognizer.labels,
        "views": recognizer.views,
        "trained_views": recognizer.meta.run_config.model.views,
        "encoders": recognizer.meta.encoders,
        "params": recognizer.meta.params,
        "max_upload_mb": max_upload_mb,
        "max_seconds": max_seconds,
    }


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Load the run and serve it with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(run_dir, **options), host=host, port=port)
