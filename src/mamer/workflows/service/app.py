"""HTTP service: `POST /predict` (multipart `audio` file and/or `text` field), `GET /health`, `GET /info`.

The model and its encoders load once, in `create_app`. Requests run in worker threads bounded by a
CapacityLimiter; the recognizer's lock keeps concurrent requests from sharing the encoders mid-call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse

import mamer
from mamer.data.audio import AudioLoadError
from mamer.workflows.inference.recognizer import EmotionRecognizer, Prediction, decode_audio

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the text field, on top of the audio limit


def create_app(
    run_dir: str | Path,
    max_upload_mb: float = 20.0,
    max_seconds: float = 60.0,
    workers: int = 2,
    device: str = "cpu",
) -> FastAPI:
    """A FastAPI app serving the run in `run_dir`; uploads over `max_upload_mb` get 413, audio over
    `max_seconds` 422; at most `workers` requests are in the model at once, the rest wait."""
    recognizer = EmotionRecognizer.load(run_dir, device=device, preload=True)
    limit_bytes = int(max_upload_mb * 1024 * 1024)
    limiter = anyio.CapacityLimiter(workers)
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
        audio: Annotated[UploadFile | None, File(description="speech: wav, flac, ogg or mp3")] = None,
        text: Annotated[str | None, Form(description="transcript of the speech, or text alone")] = None,
    ) -> dict[str, Any]:
        wave, sample_rate = None, None
        if audio is not None:
            wave, sample_rate = await _read_audio(audio, limit_bytes, max_upload_mb, max_seconds)
        if text is not None and not text.strip():
            text = None
        if wave is None and text is None:
            raise HTTPException(422, "send an `audio` file, a `text` field, or both")
        for modality, given in (("audio", wave), ("text", text)):
            if given is not None and modality not in recognizer.modalities:
                raise HTTPException(
                    422, f"this model was trained without {modality}; send only {_only(recognizer)}"
                )
        result: Prediction = await anyio.to_thread.run_sync(
            lambda: recognizer.predict(audio=wave, text=text, sample_rate=sample_rate), limiter=limiter
        )
        return result.to_dict()

    return app


async def _read_audio(upload: UploadFile, limit_bytes: int, max_upload_mb: float, max_seconds: float):
    data = await upload.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise HTTPException(413, _too_large(max_upload_mb))
    name = upload.filename or "audio"
    try:
        wave, sample_rate = decode_audio(data, name)
    except AudioLoadError as err:
        raise HTTPException(422, str(err)) from err
    seconds = len(wave) / sample_rate
    if seconds > max_seconds:
        raise HTTPException(
            422, f"{name}: {seconds:.1f} s of audio; this service takes at most {max_seconds:g} s"
        )
    return wave, sample_rate


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
