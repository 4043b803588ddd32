"""HTTP service: `POST /predict` (multipart `audio` file and/or `text` field), `GET /health`, `GET /info`; the page at
`/` and `GET /card` (`page.py`), live mode over `WS /live` (`live.py`).

The model and its encoders load once, in `create_app`; the ASR model on the first upload that needs it. Uploads in
an allowed container (WAV, FLAC, MP3, OGG, WebM/Opus from browsers, M4A) are decoded in a process of their own
(`Decoders`), refused from their header when longer than `max_seconds` (or once decoding passes it, when the header
states no duration). Audio without text is transcribed (form field `transcribe=false` or `asr=none` turns it off);
audio longer than the model's limit gets a timeline. Short requests go to the model in batches (`Batcher`: those
waiting while it is busy go through together); decoding, transcription and timelines run in at most `workers` worker
threads, shortest job first, timelines never holding them all (`UploadWorkers`); live windows run in `live_workers`
others, so live streams never hold the uploads' places. Request bodies are counted as they stream in and must arrive
in time (`BodyLimit`); only requests whose body is in count against `max_pending` (`PendingLimit`); the Host and the
page's Origin are checked first (`AccessCheck`). A client that leaves stops its work: what waits is dropped, a
timeline stops before its next group of segments. Every error answers `{"detail": "<words>"}`. docs/service.md has
the threat model.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile

import mamer
from mamer.data.audio import AudioLoadError, AudioTooLong
from mamer.workflows.inference.recognizer import EmotionRecognizer
from mamer.workflows.inference.timeline import TimelineStopped
from mamer.workflows.service.access import AccessCheck, allowed_hosts
from mamer.workflows.service.batcher import Batcher
from mamer.workflows.service.decoding import Decoders
from mamer.workflows.service.errors import finite, install_error_handlers
from mamer.workflows.service.limits import BodyLimit, PendingLimit, ServiceLimits
from mamer.workflows.service.live import mount_live
from mamer.workflows.service.page import mount_page
from mamer.workflows.service.workers import PCM_BYTES_PER_SECOND, UploadWorkers

T = TypeVar("T")

SAMPLE_RATE = 16000  # uploads are decoded to this rate (what VAD and ASR read)
OFF = ("none", "false", "0", "off", "no")

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the text field, on top of the audio limit
GRACE_SECONDS = 5.0  # after a stop signal, how long answers under way may finish before they are cancelled
GONE = 499  # the status logged for a request whose client left before its answer (nginx's convention)
MIN_SECONDS = 0.1  # shorter uploads (a recording stopped at once) are refused rather than guessed at
EMPTY_TEXT = "the `text` field is empty: type some text, or send an `audio` file"
SWITCH_INTERVAL = 0.001  # seconds a thread holds the GIL before another may take it (Python: 0.005)
LONGER = "who runs the service can raise it (mamer serve --max-seconds); mamer predict reads any length"


def create_app(
    run_dir: str | Path,
    max_upload_mb: float = ServiceLimits.max_upload_mb,
    max_seconds: float = ServiceLimits.max_seconds,
    workers: int = ServiceLimits.workers,
    device: str = "cpu",
    asr: str | None = "whisper-base",
    language: str | None = None,
    max_live: int | None = None,
    allow_origins: Sequence[str] = (),
    max_pending: int | None = None,
    allow_hosts: Sequence[str] = (),
    body_timeout: float | None = None,
    live_idle: float | None = None,
    live_workers: int | None = None,
    transcript_languages: str = "auto",
) -> FastAPI:
    """A FastAPI app serving the run in `run_dir`; request bodies over `max_upload_mb` get 413 (counted as they
    arrive) and must arrive within `body_timeout` seconds, audio over `max_seconds` 422; at most `workers`
    uploads are decoded (or transcribed, or read as a timeline) at once, the rest wait; short requests share
    the model in batches. `asr` (None: never) transcribes audio sent without text, in `language` (None:
    detected); a transcript goes to the model when its language is one of `transcript_languages` (as for
    `EmotionRecognizer.load`; auto: those the text encoder reads), else the answer says why it was left out.
    `WS /live` takes at most `max_live` streams at once, from the service's own page or pages of
    `allow_origins`, answers their windows in `live_workers` threads and closes one `live_idle` seconds behind
    real time; `POST /predict` answers at most `max_pending` requests whose body is in at once, the next gets
    503. Requests must name an IP address, a loopback name or one of `allow_hosts` as their Host. A limit left
    None takes its `ServiceLimits` default; one out of range is a ValueError naming it, before the model
    loads."""
    given = {"max_upload_mb": max_upload_mb, "max_seconds": max_seconds, "workers": workers,
             "live_workers": live_workers, "max_pending": max_pending, "max_live": max_live,
             "body_timeout": body_timeout, "live_idle": live_idle}  # fmt: skip
    limits = ServiceLimits(**{name: value for name, value in given.items() if value is not None})
    recognizer = EmotionRecognizer.load(
        run_dir, device=device, preload=True, asr=asr or "whisper-base", language=language,
        transcript_languages=transcript_languages,
    )  # fmt: skip
    limit_bytes = int(max_upload_mb * 1024 * 1024)
    workers = UploadWorkers(limits.workers)  # shortest job first; timelines never hold them all
    decoders = Decoders(limits.workers)  # each worker decodes in a process of its own
    batcher = Batcher(recognizer)
    asr_on = asr is not None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()
        decoders.close()

    app = FastAPI(  # /docs and /redoc come from page.py, with their scripts served from here
        title="MAMER emotion recognition", version=mamer.__version__, lifespan=lifespan, docs_url=None,
        redoc_url=None,
    )  # fmt: skip
    app.state.recognizer = recognizer
    detail = _too_large(max_upload_mb)
    app.add_middleware(
        BodyLimit, limit_bytes=limit_bytes + FORM_OVERHEAD, detail=detail, timeout=limits.body_timeout
    )
    app.add_middleware(PendingLimit, path="/predict", max_pending=limits.max_pending)
    # outermost: a request from a foreign host or page is answered before it is counted or read
    app.add_middleware(AccessCheck, hosts=allow_hosts, origins=allow_origins)
    install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, str]:  # on the event loop: no worker thread to wait for
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
        if text is None and "text" in await request.form():  # FastAPI reads an empty field as absent
            text = ""
        listen = bool(transcribe and asr_on and (asr is None or asr.strip().lower() not in OFF))
        return await until_disconnected(request, lambda stop: respond(audio, text, listen, stop))

    async def respond(
        audio: UploadFile | None, text: str | None, listen: bool, stop: threading.Event
    ) -> dict:
        """The answer to one request whose form is read: decode, check, predict."""
        wave = None
        if audio is not None:
            wave = await _read_audio(audio, limit_bytes, max_upload_mb, max_seconds, workers, decoders)
        text = _given_text(text, wave is not None)
        if wave is None and text is None:
            raise HTTPException(422, "send an `audio` file, a `text` field, or both")
        for modality, given in (("audio", wave), ("text", text)):
            if given is not None and modality not in recognizer.modalities:
                raise HTTPException(
                    422, f"this model was trained without {modality}; send only {_only(recognizer)}"
                )
        try:
            answer = await _answer(recognizer, batcher, workers, wave, text, listen, stop)
        except ValueError as err:  # the recognizer's words for an input it cannot read
            raise HTTPException(422, f"cannot predict from this input: {err}") from err
        if not finite(answer):
            raise HTTPException(422, "the model gave no valid numbers for this input (NaN or infinity)")
        return answer

    mount_page(app, recognizer, asr_on)  # GET /, /static/..., /card
    # WS /live, with a budget of threads of its own
    live_limiter = anyio.CapacityLimiter(limits.live_workers)
    mount_live(app, recognizer, live_limiter, asr_on, limits.max_live, allow_origins, limits.live_idle)
    return app


async def until_disconnected(request: Request, work: Callable[[threading.Event], Awaitable[T]]) -> T:
    """`await work(stop)`, unless the client leaves first: then `stop` is set (work in a thread ends at its
    next check), what `work` awaits is cancelled, and the answer is a 499 that no one reads."""
    stop, answer = threading.Event(), []

    async def watch(scope: anyio.CancelScope) -> None:
        while (await request.receive())["type"] != "http.disconnect":  # the body is in: nothing else comes
            await anyio.sleep(0.1)  # until the client leaves; a server answering at once must not spin
        stop.set()
        scope.cancel()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch, tasks.cancel_scope)
        try:
            answer.append(await work(stop))
        except Exception as err:  # raised below, as it is: inside the task group it would become a group
            answer.append(err)
        tasks.cancel_scope.cancel()
    if not answer:
        raise HTTPException(GONE, "the client left before its answer was ready")
    if isinstance(answer[0], Exception):
        raise answer[0]
    return answer[0]


async def _answer(
    recognizer: EmotionRecognizer,
    batcher: Batcher,
    workers: UploadWorkers,
    wave,
    text: str | None,
    transcribe: bool,
    stop: threading.Event | None = None,
) -> dict:
    """One request's answer: a prediction through the batcher; in one of the uploads' `workers`, audio to
    transcribe first, and audio beyond the model's limit (a timeline and its summary, which ends early once
    `stop` is set)."""
    seconds = 0.0 if wave is None else len(wave) / SAMPLE_RATE
    if seconds > recognizer.max_seconds:
        async with workers.timelines:
            return await workers.run(lambda: _timeline(recognizer, wave, text, transcribe, stop), seconds)
    item = {"audio": wave, "text": text, "sample_rate": SAMPLE_RATE, "transcribe": transcribe}
    if transcribe and wave is not None and text is None and recognizer.can_transcribe:
        # ASR takes seconds and holds no lock; the batch thread keeps answering others meanwhile
        heard = await workers.run(lambda: recognizer.predict(**item), seconds)
        return heard.to_dict()
    return (await batcher.predict(item)).to_dict()


def _timeline(recognizer: EmotionRecognizer, wave, text: str | None, transcribe: bool, stop=None) -> dict:
    """Audio beyond the model's limit, segment by segment: the timeline's summary and its rows."""
    segment = "none" if text is not None else "auto"
    try:
        result = recognizer.timeline(
            wave, sample_rate=SAMPLE_RATE, text=text, segment=segment, transcribe=transcribe, stop=stop
        )
    except TimelineStopped as err:  # the client left; no one reads this
        raise HTTPException(GONE, f"the client left; the timeline {err}") from err
    return {"summary": result.summary(), "segments": result.rows()}


def _given_text(text: str | None, with_audio: bool) -> str | None:
    """The `text` field, or None when absent; one with nothing visible (empty, spaces, zero-width or control
    characters) is dropped beside audio and refused in words when it is all there is."""
    if text is None or any(unicodedata.category(c)[0] not in "CZ" for c in text):
        return text
    if with_audio:
        return None
    raise HTTPException(422, EMPTY_TEXT)


async def _read_audio(
    upload: UploadFile,
    limit_bytes: int,
    max_upload_mb: float,
    max_seconds: float,
    workers: UploadWorkers,
    decoders: Decoders,
):
    """The upload decoded (by one of the uploads' `workers`, in a decoding process) to mono float32 at 16 kHz;
    413 / 422 with the reason."""
    data = await upload.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise HTTPException(413, _too_large(max_upload_mb))
    name = upload.filename or "the `audio` upload"
    try:
        wave = await workers.run(
            lambda: decoders.decode(data, SAMPLE_RATE, name, max_seconds), len(data) / PCM_BYTES_PER_SECOND
        )
    except AudioTooLong as err:  # says who can lift the limit, and what reads longer files
        raise HTTPException(422, f"{err}; {LONGER}") from err
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
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int | None = None,
    allow_hosts: Sequence[str] = (),
    **options: Any,
) -> None:
    """Load the run and serve it with uvicorn until interrupted (one SIGTERM or Ctrl-C: answers under way get
    `GRACE_SECONDS`, then the rest are cancelled and live streams closed); `threads`: torch threads (default
    `service_threads()`); requests may name `host` besides IP addresses, loopback names and `allow_hosts`."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads={threads}: must be at least 1 (mamer serve --threads)")
    if not 0 <= port <= 65535:
        raise ValueError(f"port={port}: must be 0 to 65535 (mamer serve --port)")
    import torch
    import uvicorn

    app = create_app(run_dir, allow_hosts=allowed_hosts(host, allow_hosts), **options)
    torch.set_num_threads(threads or service_threads())
    # What is loaded now lives as long as the service: keep the collector from walking it again and again (a full
    # collection over the model and its libraries paused every request for ~0.2 s under load; docs/service.md)
    gc.collect()
    gc.freeze()
    # The event loop takes turns at the GIL with the batch and worker threads, each turn waiting up to the
    # switch interval: 1 ms instead of 5 halved /health's worst under hostile clients (docs/service.md)
    sys.setswitchinterval(SWITCH_INTERVAL)
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=GRACE_SECONDS)
