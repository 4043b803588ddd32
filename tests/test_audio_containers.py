"""Only audio containers are decoded: FFmpeg's playlist, network and other demuxers never open (issue 32, 1-2).

An upload or a file handed to `mamer predict` is hostile: FFmpeg guesses the container from its bytes, and a
`concat` playlist opens files on the server, an `sdp` description opens UDP ports. `mamer.data.audio` opens
only `ALLOWED_DEMUXERS`; these tests feed it such inputs, and one crafted input for every demuxer PyAV lists.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from mamer.data import audio
from mamer.data.audio import ALLOWED_DEMUXERS, NOT_AUDIO, AudioLoadError, decode_bytes, load_audio

SR = 16000


def allowed(name: str) -> bool:
    """Whether FFmpeg's demuxer `name` (possibly "mov,mp4,m4a,...") is on the allow-list, as FFmpeg matches it."""
    return bool(set(name.split(",")) & set(ALLOWED_DEMUXERS))


def concat_playlist(target: str) -> bytes:
    return f"ffconcat version 1.0\nfile {target}\n".encode()


def sdp(port: int) -> bytes:
    return (
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


@pytest.fixture
def server_folder(tmp_path, monkeypatch) -> Path:
    """A working folder like a server's: a private recording, a sub-folder and a log file beside it."""
    (tmp_path / "private").mkdir()
    tone = (0.3 * np.sin(np.arange(SR) / 5)).astype(np.float32)
    import soundfile as sf

    sf.write(tmp_path / "private" / "meeting16.wav", tone, SR)
    (tmp_path / "tiny.log").write_text("a log line\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_concat_playlist_reads_no_file_and_leaks_no_existence(server_folder):
    """The issue's upload: a playlist naming a server file was answered with that file's audio; and
    missing / folder / non-audio targets answered three different errors, telling which paths exist."""
    answers = set()
    for target in ("private/meeting16.wav", "nonexistent.wav", "private", "tiny.log"):
        with pytest.raises(AudioLoadError) as caught:
            decode_bytes(concat_playlist(target), SR, "clip.webm")
        answers.add(str(caught.value))
        playlist = (
            server_folder / f"sent_{len(answers)}.wav"
        )  # a file a user was sent, given to `mamer predict`
        playlist.write_bytes(concat_playlist(target))
        with pytest.raises(AudioLoadError, match="not an audio file"):
            load_audio(playlist, SR)
    assert answers == {f"clip.webm: {NOT_AUDIO}"}


def udp_ports() -> set[int]:
    """Local ports of every UDP socket open in this network namespace (/proc/net/udp and udp6)."""
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        ports |= {int(line.split()[1].rsplit(":", 1)[1], 16) for line in lines}
    return ports


@pytest.mark.skipif(not Path("/proc/net/udp").exists(), reason="needs /proc/net/udp to watch sockets")
def test_an_sdp_upload_opens_no_socket_and_returns_at_once():
    """A 109-byte SDP made FFmpeg bind UDP ports the uploader chose and hold a worker for 30 s."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # a port nobody holds
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome: dict = {}

    def decode() -> None:
        try:
            decode_bytes(sdp(port), SR, "a.wav")
        except Exception as err:  # recorded and checked below
            outcome["error"] = err

    worker = threading.Thread(target=decode, daemon=True)
    seen, start = set(), time.monotonic()
    worker.start()
    while worker.is_alive() and time.monotonic() - start < 5:
        seen |= udp_ports() & {port, port + 1}  # RTP and RTCP
        time.sleep(0.002)
    assert not seen, f"decoding the SDP upload opened UDP port(s) {sorted(seen)}"
    assert not worker.is_alive(), "decoding the SDP upload still runs after 5 s"
    assert isinstance(outcome.get("error"), AudioLoadError) and "not an audio file" in str(outcome["error"])


# ------------------------------------------------------------------ every demuxer PyAV lists

# Inputs for demuxers with no muxer to make one (or whose muxer makes something else): the dangerous ones first.
HANDMADE = {
    "concat": concat_playlist("private/meeting16.wav"),
    "hls": b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nprivate/meeting16.wav\n#EXT-X-ENDLIST\n",
    "dash": b'<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
    b'mediaPresentationDuration="PT1S"><Period><AdaptationSet mimeType="audio/wav"><Representation id="a" '
    b'bandwidth="1"><BaseURL>private/meeting16.wav</BaseURL></Representation></AdaptationSet></Period></MPD>\n',
    "ffmetadata": b";FFMETADATA1\ntitle=x\n",
    "srt": b"1\n00:00:00,000 --> 00:00:01,000\nhello\n\n",
    "webvtt": b"WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n",
    "ass": b"[Script Info]\nScriptType: v4.00+\n\n[Events]\nFormat: Layer, Start, End, Text\n",
    "sbg": b"-SE\nalpha: 200+10/50\nNOW alpha\n",
    "tty": b"plain text that FFmpeg reads as a terminal recording\n" * 4,
}
OPEN_OTHERS = {"concat", "hls", "dash"}  # read the files they name: never opened unguarded, even here
MUXER_OF = {"aac": "adts"}  # demuxers whose muxer has another name
DEVICES = {"alsa", "oss", "fbdev", "video4linux2,v4l2", "sdl,sdl2", "xv", "opengl", "pulse", "audiotoolbox"}
CODECS = ("pcm_s16le", "pcm_s16be", "aac", "mp2", "libmp3lame", "libopus", "flac", "pcm_mulaw", "pcm_alaw")


def muxed(name: str) -> bytes | None:
    """0.1 s of a tone written by FFmpeg's muxer `name` with the first audio codec it takes, or None."""
    if name in DEVICES:  # an output device plays or shows; it writes no file
        return None
    try:
        if not av.ContainerFormat(name, "w").is_output:
            return None
    except (ValueError, av.FFmpegError):
        return None
    pcm = (8000 * np.sin(np.arange(1600) / 5)).astype(np.int16)[None]
    for codec in CODECS:
        try:
            buffer = io.BytesIO()
            with av.open(buffer, "w", format=name) as out:
                stream = out.add_stream(codec, rate=16000 if codec != "libopus" else 48000)
                stream.layout = "mono"
                frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
                frame.sample_rate = 16000
                for packet in [*stream.encode(frame), *stream.encode(None)]:
                    out.mux(packet)
            if buffer.getvalue():
                return buffer.getvalue()
        except Exception:  # this muxer does not take this codec (or no audio at all): try the next
            continue
    return None


def input_demuxers() -> list[str]:
    names = []
    for name in sorted(av.formats_available):
        try:
            if av.ContainerFormat(name, "r").is_input:
                names.append(name)
        except (ValueError, av.FFmpegError):
            continue
    return names


def test_every_demuxer_pyav_lists_gets_a_crafted_input_and_only_allowed_ones_open(server_folder, monkeypatch):
    """Feed each input demuxer a crafted input (what its muxer writes, or a handmade header) as an upload and as
    a file; record every container that `mamer.data.audio` lets FFmpeg open. Only allow-listed demuxers may
    open; everything else is refused as "not an audio file", never another exception."""
    inputs = {
        name: data
        for name in input_demuxers()
        if (data := HANDMADE.get(name) or muxed(MUXER_OF.get(name, name)))
    }
    real_open, opened = av.open, []

    def spy(*args, **kwargs):
        container = real_open(*args, **kwargs)
        opened.append(container.format.name)
        return container

    monkeypatch.setattr(audio.av, "open", spy)
    assert {"concat", "hls", "wav", "flac", "mp3", "ogg"} <= set(inputs)
    decoded = set()
    for name, data in inputs.items():
        path = server_folder / f"input_{name.replace(',', '_')}.bin"
        path.write_bytes(data)
        for decode, source in ((decode_bytes, data), (load_audio, path)):
            try:
                wave = decode(source, SR)
            except AudioLoadError:
                continue
            assert wave.ndim == 1 and len(wave) > 0
            decoded.add(name)
    refused = sorted({name for name in opened if not allowed(name)})
    assert not refused, f"demuxers outside ALLOWED_DEMUXERS were opened: {refused}"
    assert {
        "wav",
        "flac",
        "mp3",
        "ogg",
        "mov",
        "webm",
        "aac",
        "aiff",
        "au",
    } <= decoded  # real audio still reads

    # The crafted inputs do reach other demuxers: opened with no allow-list, many are read as something else.
    monkeypatch.setattr(audio.av, "open", real_open)
    harmless = {n: d for n, d in inputs.items() if n not in OPEN_OTHERS}
    foreign = set()
    for data in harmless.values():
        try:
            with av.open(io.BytesIO(data)) as container:
                if not allowed(container.format.name):
                    foreign.add(container.format.name)
        except (av.FFmpegError, ValueError, OSError):
            continue
    assert len(foreign) >= 15, (
        f"only {sorted(foreign)} would open without the allow-list: the fuzz lost its reach"
    )


def test_the_service_answers_every_playlist_alike_with_422(train_tiny, tmp_path_factory, server_folder):
    """Through `POST /predict`, as the issue sent it with curl: 422 "not an audio file", the same words whether
    the named file exists, is a folder, or is not audio."""
    from fastapi.testclient import TestClient

    from mamer.workflows.service.app import create_app

    run = train_tiny(tmp_path_factory.mktemp("containers_run"))
    with TestClient(create_app(run, asr=None, allow_hosts=["testserver"])) as client:
        answers = set()
        for target in ("private/meeting16.wav", "nonexistent.wav", "private", "tiny.log"):
            upload = {"audio": ("clip.webm", concat_playlist(target), "audio/webm")}
            answer = client.post("/predict", files=upload)
            assert answer.status_code == 422
            answers.add(answer.json()["detail"])
        answer = client.post("/predict", files={"audio": ("a.wav", sdp(9), "audio/wav")})
        assert answer.status_code == 422 and "not an audio file" in answer.json()["detail"]
    assert answers == {f"clip.webm: {NOT_AUDIO}"}
