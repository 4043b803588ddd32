"""Live mode of `mamer serve`: `WS /live`, the emotion of a rolling window of a microphone stream.

The protocol, in order:

- connect to `/live?window=3&hop=1&asr=off` (window: seconds of audio each answer reads, 0.5-30; hop: seconds
  between answers, 0.25-10; asr: transcribe each window, when the service and the model can);
- the server answers `{"type": "ready", "window", "hop", "sample_rate": 16000, "transcribe", ...}`;
- the client sends binary frames of little-endian float32 mono samples at 16 kHz, in -1..1 (any length up to
  5 s; the page sends 0.1 s), as they are recorded;
- each time another `hop` of audio has arrived, the server predicts on the last `window` seconds and sends
  `{"type": "window", "t", "start", "end", "label", "probabilities" | arousal/valence/dominance, "transcript"?,
  "latency_ms", "dropped"}`; `t`/`end` is the stream time of the window's last sample, `latency_ms` the time
  from that sample's arrival to the answer being sent;
- the text frame `{"type": "end"}` asks for a last window on any audio not yet answered, then
  `{"type": "end", "windows", "dropped"}` and the server closes.

Who may connect: a browser page only from the service's own origin (its `Origin` header names the host the
service answers on) or from one `mamer serve --allow-origin` names, so another site open in the same browser
cannot stream to it; clients that send no `Origin` (scripts) are let in (`access.py`). At most
`max_connections` streams run at once (`mamer serve --max-live`); one more is refused in words (close code
1013, try again later).

Live mode is for audio as it is recorded, and one stream must never slow the others down:

- a frame costs time in proportion to its length (`stream.Stream`: a ring buffer of the last `window` s);
- audio may arrive at most `stream.MAX_RATE` times real time after a start of `stream.BURST_SECONDS`
  (`stream.RateCap`); a stream sending faster is not read until it is back within that (TCP then slows the
  sender), and each frame counts as at least `stream.MIN_FRAME_SECONDS` (10 ms); a stream that sends more
  than `stream.SHORT_FRAMES` frames shorter than that is closed, so a flood of tiny frames never piles up;
- a stream that falls `idle` seconds behind real time (one that sends nothing for that long after it
  connects, or sends slower than real time) is closed (`mamer serve --live-idle`), so idle streams cannot
  hold the `--max-live` places;
- frames with samples far outside -1..1 are refused (as uploads are), and an answer is never NaN: a window
  the model gives no valid numbers for is answered with an error frame.

Inference runs in worker threads of the live budget (`mamer serve --live-workers`, apart from the uploads'
`--workers`), one window at a time per connection; a window that comes due while the previous one is still
being answered replaces any window still waiting (counted in `dropped`), so a slow model answers the newest
audio instead of falling behind. When the client leaves, windows not yet started are dropped. Protocol errors
are answered `{"type": "error", "detail"}` in words, then the connection closes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from mamer.data.audio import MAX_PEAK
from mamer.workflows.inference.recognizer import EmotionRecognizer
from mamer.workflows.service.access import AccessError, check_origin, origin_of
from mamer.workflows.service.errors import finite
from mamer.workflows.service.limits import LIVE_IDLE, MAX_LIVE
from mamer.workflows.service.stream import MIN_FRAME_SECONDS, SAMPLE_RATE, SHORT_FRAMES, RateCap, Stream

WINDOW, HOP = 3.0, 1.0  # defaults, seconds
WINDOW_RANGE, HOP_RANGE = (0.5, 30.0), (0.25, 10.0)
MAX_FRAME_SECONDS = 5.0
ON, OFF = ("1", "true", "on", "yes"), ("0", "false", "off", "no", "none", "")
UNSUPPORTED, TOO_BIG, POLICY, TRY_LATER = 1003, 1009, 1008, 1013  # WebSocket close codes


class LiveError(ValueError):
    """A request or frame the live protocol cannot take; its message is sent to the client."""

    def __init__(self, detail: str, code: int = UNSUPPORTED):
        super().__init__(detail)
        self.code = code


@dataclass
class Settings:
    window: float = WINDOW
    hop: float = HOP
    transcribe: bool = False
    note: str | None = None  # why transcription was asked for and is off


def mount_live(
    app: FastAPI,
    recognizer: EmotionRecognizer,
    limiter: anyio.CapacityLimiter,
    transcription: bool,
    max_connections: int = MAX_LIVE,
    allowed_origins: Sequence[str] = (),
    idle: float = LIVE_IDLE,
) -> None:
    """Add `WS /live` to `app`; windows are answered in threads of `limiter`; `transcription` says whether the
    service may run ASR at all; at most `max_connections` streams at once; pages of `allowed_origins` may
    connect besides the service's own; a stream `idle` seconds behind real time is closed."""
    active, allowed = 0, {origin_of(o) for o in allowed_origins}

    @app.websocket("/live")
    async def live(websocket: WebSocket) -> None:
        nonlocal active
        await websocket.accept()
        try:
            try:
                origin, host = websocket.headers.get("origin"), websocket.headers.get("host")
                check_origin(origin, host, allowed, "live mode takes streams")
            except AccessError as err:
                raise LiveError(str(err), POLICY) from None
            if active >= max_connections:
                raise LiveError(
                    f"live mode already serves {max_connections} streams, the most this service takes at "
                    "once (mamer serve --max-live): try again later",
                    TRY_LATER,
                )
            settings = read_settings(dict(websocket.query_params), recognizer, transcription)
        except LiveError as err:
            await refuse(websocket, err)
            return
        active += 1
        try:
            ready = {"type": "ready", "sample_rate": SAMPLE_RATE, "labels": recognizer.labels}
            await websocket.send_json(ready | {k: v for k, v in vars(settings).items() if v is not None})
            await run_stream(websocket, recognizer, limiter, settings, idle)
        finally:
            active -= 1


def read_settings(params: dict[str, str], recognizer: EmotionRecognizer, transcription: bool) -> Settings:
    """Query parameters -> Settings; LiveError in words for values out of range or a model without audio."""
    if "audio" not in recognizer.modalities:
        raise LiveError("this model was trained without audio: live mode needs one that hears speech", POLICY)
    window = number(params, "window", WINDOW, WINDOW_RANGE)
    hop = number(params, "hop", HOP, HOP_RANGE)
    asked = params.get("asr", "off").strip().lower()
    if asked not in ON + OFF:
        raise LiveError(f"asr={asked!r}: use asr=on or asr=off")
    settings = Settings(window, hop)
    if asked in ON:
        if not transcription:
            settings.note = "this service runs without speech recognition (mamer serve --asr none)"
        elif not recognizer.can_transcribe:
            settings.note = "this model reads no text, so transcripts would not change its answers"
        else:
            settings.transcribe = True
    return settings


def number(params: dict[str, str], name: str, default: float, bounds: tuple[float, float]) -> float:
    """A float query parameter within `bounds`; LiveError naming it otherwise."""
    raw = params.get(name)
    try:
        value = default if raw is None else float(raw)
    except ValueError:
        raise LiveError(f"{name}={raw!r} is not a number of seconds") from None
    if not bounds[0] <= value <= bounds[1]:
        raise LiveError(f"{name}={value:g} s is out of range: use {bounds[0]:g} to {bounds[1]:g} s")
    return value


def read_frame(data: bytes) -> np.ndarray:
    """A binary frame -> float32 samples; LiveError in words for a frame that is not 16 kHz float32 PCM."""
    if len(data) % 4:
        raise LiveError(
            f"a live audio frame holds little-endian float32 samples (4 bytes each) of 16 kHz mono audio; "
            f"this one has {len(data)} bytes, not a multiple of 4"
        )
    samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if len(samples) > MAX_FRAME_SECONDS * SAMPLE_RATE:
        raise LiveError(
            f"a live audio frame holds at most {MAX_FRAME_SECONDS:g} s ({int(MAX_FRAME_SECONDS * SAMPLE_RATE)} "
            f"samples at 16 kHz); this one has {len(samples) / SAMPLE_RATE:.1f} s",
            TOO_BIG,
        )
    if not np.isfinite(samples).all():
        raise LiveError("a live audio frame holds NaN or infinite samples: send float32 PCM in [-1, 1]")
    peak = float(np.abs(samples).max(initial=0.0))
    if peak > MAX_PEAK:  # the encoders' spectra overflow to infinity (NaN answers) well before float32 does
        raise LiveError(
            f"a live audio frame holds samples of {peak:.3g}, far outside -1..1: send float32 PCM in [-1, 1]"
        )
    return samples


def read_text(text: str) -> None:
    """A text frame: only `{"type": "end"}` is known; LiveError otherwise."""
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    if not isinstance(message, dict) or message.get("type") != "end":
        raise LiveError(
            f'live mode takes binary audio frames and the text frame {{"type": "end"}}; got {text[:60]!r}'
        )


async def run_stream(
    websocket: WebSocket,
    recognizer: EmotionRecognizer,
    limiter: anyio.CapacityLimiter,
    settings: Settings,
    idle: float = LIVE_IDLE,
) -> None:
    """Receive frames and answer windows until the client ends, leaves, idles or breaks the protocol."""
    stream, error = Stream(settings.window, settings.hop), None
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(answer_windows, websocket, recognizer, limiter, settings, stream)
        try:
            ended = await receive_frames(websocket, stream, idle)
        except LiveError as err:
            error, ended = err, False
        if ended:
            stream.finish()  # answer_windows returns after the last window; the task group waits for it
        else:
            tasks.cancel_scope.cancel()
    if error is not None:
        await refuse(websocket, error)
    elif ended:
        try:
            await websocket.send_json({"type": "end", "windows": stream.windows, "dropped": stream.dropped})
            await websocket.close()
        except (WebSocketDisconnect, RuntimeError):
            pass


async def receive_frames(websocket: WebSocket, stream: Stream, idle: float = LIVE_IDLE) -> bool:
    """Audio frames into `stream` until `{"type": "end"}` (True) or the client leaves (False); LiveError when it
    falls `idle` seconds behind real time. Frames arriving faster than the `RateCap` wait to be read."""
    cap, start = RateCap(), time.monotonic()
    while True:
        message = None
        with anyio.move_on_after(start + stream.received / SAMPLE_RATE + idle - time.monotonic()):
            message = await websocket.receive()
        if message is None:  # it fell `idle` s behind real time before another frame came
            raise LiveError(
                f"this stream is {idle:g} s behind real time (no audio for that long, or audio sent slower "
                "than it is recorded): live mode closes such streams (mamer serve --live-idle)",
                POLICY,
            )
        if message["type"] == "websocket.disconnect":
            return False
        if message.get("bytes") is not None:
            samples = read_frame(message["bytes"])
            stream.push(samples)
            wait = cap.charge(len(samples))
            if cap.short > SHORT_FRAMES:
                raise LiveError(
                    f"live frames hold at least {1000 * MIN_FRAME_SECONDS:g} ms of audio "
                    f"({round(MIN_FRAME_SECONDS * SAMPLE_RATE)} samples); this stream sent {cap.short} shorter "
                    "ones: send 20-500 ms a frame",
                    POLICY,
                )
            await anyio.sleep(wait)  # sleep(0) within the cap: a frame at a time
        else:
            read_text(message.get("text") or "")
            return True


async def answer_windows(
    websocket: WebSocket,
    recognizer: EmotionRecognizer,
    limiter: anyio.CapacityLimiter,
    settings: Settings,
    stream: Stream,
) -> None:
    """Predict each window in a worker thread and send its answer, until the stream is finished."""
    while (window := await stream.take()) is not None:
        try:
            answer = await anyio.to_thread.run_sync(
                lambda w=window: predict_window(recognizer, w.audio, settings.transcribe), limiter=limiter
            )
        except (ValueError, RuntimeError) as err:  # e.g. ASR that failed on this window: say so, go on
            answer = {
                "type": "error",
                "detail": f"could not predict the window ending at {window.end / SAMPLE_RATE:.1f} s: {err}",
            }
        if not finite(answer):  # NaN is not JSON: a page's JSON.parse would throw on it
            answer = {
                "type": "error",
                "detail": f"the model gave no valid numbers for the window ending at {window.end / SAMPLE_RATE:.1f}"
                " s (NaN or infinity)",
            }
        answer = (
            {"type": "window"}
            | answer
            | {
                "t": round(window.end / SAMPLE_RATE, 3),
                "start": round(max(0, window.end - len(window.audio)) / SAMPLE_RATE, 3),
                "end": round(window.end / SAMPLE_RATE, 3),
                "dropped": stream.dropped,
                "latency_ms": round((time.perf_counter() - window.arrived) * 1000, 1),
            }
        )
        try:
            await websocket.send_json(answer)
        except (WebSocketDisconnect, RuntimeError):
            return


def predict_window(recognizer: EmotionRecognizer, audio: np.ndarray, transcribe: bool) -> dict[str, Any]:
    """One window's prediction as a dict (ASR transcript included when asked for and heard)."""
    return recognizer.predict(audio=audio, sample_rate=SAMPLE_RATE, transcribe=transcribe).to_dict()


async def refuse(websocket: WebSocket, err: LiveError) -> None:
    """Send the error in words, then close with its code."""
    try:
        await websocket.send_json({"type": "error", "detail": str(err)})
        await websocket.close(err.code, str(err)[:120])
    except (WebSocketDisconnect, RuntimeError):
        pass
