"""Cut a recording into the stretches an emotion model reads: speech segments found by VAD, or fixed windows.

`vad_segments` runs Silero VAD (bundled with faster-whisper, offline) block by block over `stream_audio`, so a
1-hour file costs one block of memory. It turns Silero's fine speech regions into segments in four steps:

1. regions separated by a pause shorter than `min_pause` belong to the same segment (also across block seams);
2. a segment that would outgrow `max_seconds` is cut at the longest pause in it (preferring cuts that leave at
   least `min_seconds` before them), or, with no pause at all, at the limit;
3. a segment shorter than `min_seconds` is merged with the previous segment when the pause between them is at
   most `merge_gap` and the result fits in `max_seconds`, else with the next one on the same terms, else it is
   dropped (a cough, a click, an isolated short word);
4. each segment is padded by `pad` on both sides, never past the midpoint of the pause to its neighbour nor
   past the recording's ends, so segments never overlap.

A recording no longer than `max_seconds` stays one segment, the whole of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from mamer.data.audio import stream_audio

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # what Silero VAD reads
VAD_WINDOW = 512  # samples per Silero decision (32 ms); blocks are fed in whole windows


@dataclass(frozen=True)
class Segment:
    """A stretch of a recording, in seconds from its start."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start


def window_segments(duration: float, window: float = 8.0, hop: float = 4.0) -> list[Segment]:
    """Windows of `window` s every `hop` s covering `[0, duration]`; the last one ends at `duration` (shorter)."""
    if window <= 0 or not 0 < hop <= window:
        raise ValueError(f"need window > 0 and 0 < hop <= window (no gaps), got window={window}, hop={hop}")
    segments, start = [], 0.0
    while start < duration:
        end = min(start + window, duration)
        segments.append(Segment(round(start, 6), round(end, 6)))
        if end >= duration:
            break
        start += hop
    return segments


def vad_segments(
    source: str | Path | np.ndarray | Iterable[np.ndarray],
    min_seconds: float = 1.0,
    max_seconds: float = 20.0,
    min_pause: float = 0.5,
    merge_gap: float = 1.0,
    pad: float = 0.2,
    threshold: float = 0.5,
    block_seconds: float = 30.0,
) -> list[Segment]:
    """Speech segments of a file, a mono 16 kHz waveform `(N,)` or an iterable of such blocks (see module doc)."""
    if not 0 <= min_seconds < max_seconds - 2 * pad:
        raise ValueError(
            f"need 0 <= min_seconds < max_seconds - 2 * pad, got {min_seconds}, {max_seconds}, {pad}"
        )
    clock = _Clock()
    blocks = _counted(_blocks(source, block_seconds), clock)
    head = _head(blocks, max_seconds * SAMPLE_RATE)
    if head is None:  # the whole recording fits in one segment
        return [Segment(0.0, clock.seconds)] if clock.samples else []
    regions = _speech_regions(chain(head, blocks), threshold)
    limit = max_seconds - 2 * pad  # room for the padding
    grouped = _grouped(regions, min_pause, min_seconds, limit)
    settled = _merged_short(grouped, min_seconds, limit, merge_gap)
    return list(_padded(settled, pad, clock))


# ---------------------------------------------------------------- audio in


class _Clock:
    """Counts the samples that went by, so the recording's duration is known once the stream ends."""

    samples = 0

    @property
    def seconds(self) -> float:
        """Samples so far in seconds."""
        return self.samples / SAMPLE_RATE


def _blocks(
    source: str | Path | np.ndarray | Iterable[np.ndarray], block_seconds: float
) -> Iterator[np.ndarray]:
    """Mono float32 16 kHz blocks from a path (streamed), one waveform, or an iterable of blocks."""
    if isinstance(source, str | Path):
        return stream_audio(source, SAMPLE_RATE, block_seconds)
    if isinstance(source, np.ndarray):
        source = [source]
    return (np.asarray(block, dtype=np.float32).reshape(-1) for block in source)


def _counted(blocks: Iterator[np.ndarray], clock: _Clock) -> Iterator[np.ndarray]:
    """Pass blocks through, adding their lengths to `clock`."""
    for block in blocks:
        clock.samples += block.shape[0]
        yield block


def _head(blocks: Iterator[np.ndarray], samples: float) -> list[np.ndarray] | None:
    """The first blocks up to more than `samples` samples; None when the stream ends within `samples`."""
    head, held = [], 0
    for block in blocks:
        head.append(block)
        held += block.shape[0]
        if held > samples:
            return head
    return None


def _speech_regions(blocks: Iterable[np.ndarray], threshold: float) -> Iterator[Segment]:
    """Silero's fine speech regions (pauses >= 100 ms split them), block by block, in seconds."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(threshold=threshold, min_silence_duration_ms=100, speech_pad_ms=0)
    offset, carry = 0, np.zeros(0, np.float32)
    for block in chain(blocks, [None]):
        if block is None:  # end of stream: the last partial window
            audio, carry = carry, np.zeros(0, np.float32)
        else:
            joined = np.concatenate([carry, block])
            whole = joined.shape[0] // VAD_WINDOW * VAD_WINDOW
            audio, carry = joined[:whole], joined[whole:]
        if audio.shape[0] == 0:
            continue
        for found in get_speech_timestamps(audio, options, sampling_rate=SAMPLE_RATE):
            yield Segment((offset + found["start"]) / SAMPLE_RATE, (offset + found["end"]) / SAMPLE_RATE)
        offset += audio.shape[0]


# ---------------------------------------------------------------- regions to segments


def _grouped(
    regions: Iterable[Segment], min_pause: float, min_seconds: float, limit: float
) -> Iterator[Segment]:
    """Regions joined across pauses shorter than `min_pause`; a group outgrowing `limit` s is cut (steps 1-2)."""
    group: list[Segment] = []
    for region in regions:
        if group and region.start - group[-1].end >= min_pause:
            yield Segment(group[0].start, group[-1].end)
            group = []
        group.append(region)
        while group[-1].end - group[0].start > limit:
            head, group = _cut(group, min_seconds, limit)
            yield head
    if group:
        yield Segment(group[0].start, group[-1].end)


def _cut(group: list[Segment], min_seconds: float, limit: float) -> tuple[Segment, list[Segment]]:
    """Split a group longer than `limit` at its longest pause within the limit, else at the limit itself."""
    start = group[0].start
    fits = [i for i in range(len(group) - 1) if group[i].end - start <= limit]
    roomy = [i for i in fits if group[i].end - start >= min_seconds]
    candidates = roomy or fits
    if candidates:
        i = max(candidates, key=lambda k: (group[k + 1].start - group[k].end, k))
        return Segment(start, group[i].end), group[i + 1 :]
    at = start + limit  # continuous speech: cut inside the region that crosses the limit
    inside = [r for r in group if r.start < at]
    rest = [Segment(at, r.end) if r.start < at else r for r in group if r.end > at]
    return Segment(start, min(inside[-1].end, at)), rest


def _merged_short(
    segments: Iterable[Segment], min_seconds: float, limit: float, merge_gap: float
) -> Iterator[Segment]:
    """Segments under `min_seconds` merged into the previous, else the next neighbour, else dropped (step 3)."""
    held: Segment | None = None
    for segment in segments:
        if held is None:
            held = segment
            continue
        joined = Segment(held.start, segment.end)
        short = held.duration < min_seconds or segment.duration < min_seconds
        if short and segment.start - held.end <= merge_gap and joined.duration <= limit:
            held = joined
            continue
        yield from _kept(held, min_seconds)
        held = segment
    if held is not None:
        yield from _kept(held, min_seconds)


def _kept(segment: Segment, min_seconds: float) -> Iterator[Segment]:
    """`segment` if it is long enough; a too-short one is dropped, with a debug log line."""
    if segment.duration >= min_seconds:
        yield segment
    else:
        log.debug(
            "dropped a %.2f s speech bit at %.2f s (isolated, under the minimum)",
            segment.duration,
            segment.start,
        )


def _padded(segments: Iterable[Segment], pad: float, clock: _Clock) -> Iterator[Segment]:
    """Segments widened by `pad` s each side, at most to the pause midpoints and the recording's ends (step 4)."""
    previous_end, held = 0.0, None
    for segment in segments:
        if held is not None:
            end = min(held.end + pad, (held.end + segment.start) / 2)
            yield Segment(round(max(held.start - pad, previous_end, 0.0), 3), round(end, 3))
            previous_end = end
        held = segment
    if held is not None:  # the stream is exhausted now, so the clock holds the full duration
        start, end = max(held.start - pad, previous_end, 0.0), min(held.end + pad, clock.seconds)
        yield Segment(round(start, 3), round(end, 3))
