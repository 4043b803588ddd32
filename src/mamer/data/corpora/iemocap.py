"""IEMOCAP (USC SAIL), as distributed: ``IEMOCAP_full_release`` (``root`` may be that folder or its parent).

Per session k = 1..5::

    Session{k}/sentences/wav/<dialog>/<utterance>.wav
    Session{k}/dialog/EmoEvaluation/<dialog>.txt      # [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[V, A, D]
    Session{k}/dialog/transcriptions/<dialog>.txt     # Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.

The usual 4-class setup: neu -> neutral, hap and exc -> happy, ang -> angry, sad -> sad (5,531 utterances in the
full release); the other consensus codes (fru, sur, fea, dis, oth, xxx) have no class but keep valence,
activation (arousal) and dominance, averaged ratings on the 1-5 scale. The speaker is the session and the
gender letter of the utterance's last name part (``Ses01F_script01_1_M012`` -> ``Ses01_M``); the dialog's own
letter only says who wore the motion-capture markers. Folds are leave-one-session-out (`session_of`).
"""

from __future__ import annotations

import re
from pathlib import Path

from mamer.data.corpora.base import Prepared, check_audio, number_in, read_text
from mamer.data.manifest import Utterance

SESSIONS = (1, 2, 3, 4, 5)
EMOTIONS = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
NO_CLASS = ("fru", "sur", "fea", "dis", "oth", "xxx")  # no class in the 4-class task; dimensions kept
SCALE = (1.0, 5.0)
_TURN = re.compile(
    r"\[(?P<start>[\d.]+) - (?P<end>[\d.]+)\]\t(?P<id>\S+)\t(?P<code>\S+)\t\[(?P<vad>[^\]]*)\]"
)
_TRANSCRIPT = re.compile(r"(?P<id>Ses\S+) \[[^\]]*\]:\s?(?P<text>.*)")


def read_iemocap(root: Path) -> Prepared:
    """IEMOCAP rows of every session (split left empty: the session folds fill it)."""
    release = _release_folder(Path(root))
    out = Prepared()
    for k in SESSIONS:
        session = release / f"Session{k}"
        if not session.is_dir():
            out.problems.append(f"{session}: session folder not found; session skipped")
            continue
        evaluations = sorted((session / "dialog" / "EmoEvaluation").glob("Ses*.txt"))
        if not evaluations:
            out.problems.append(
                f"{session / 'dialog' / 'EmoEvaluation'}: no <dialog>.txt files; session skipped"
            )
        for path in evaluations:
            _read_dialog(session, path, out)
    return out


def session_of(u: Utterance) -> str | None:
    """The session of an IEMOCAP row (``Ses01_F`` -> ``Ses01``): the unit its folds hold out."""
    return u.speaker.split("_")[0] if u.speaker else None


def _release_folder(root: Path) -> Path:
    """``root`` if it holds Session folders, else ``root/IEMOCAP_full_release``; FileNotFoundError otherwise."""
    for folder in (root, root / "IEMOCAP_full_release"):
        if any((folder / f"Session{k}").is_dir() for k in SESSIONS):
            return folder
    raise FileNotFoundError(
        f"{root}: no IEMOCAP found; expected {root}/Session1 ... Session5 (IEMOCAP_full_release, or its parent)"
    )


def _read_dialog(session: Path, evaluation: Path, out: Prepared) -> None:
    """Rows of one dialog: labels from its EmoEvaluation file, text from its transcription, one wav each."""
    dialog = evaluation.stem
    texts = _transcripts(session / "dialog" / "transcriptions" / f"{dialog}.txt", out)
    seen: set[str] = set()
    for line, raw in enumerate(read_text(evaluation).splitlines(), start=1):
        if not raw.startswith("["):
            continue  # the header, blank lines and the individual evaluators' lines
        where = f"{evaluation}:{line}"
        turn = _TURN.fullmatch(raw.rstrip())
        if turn is None:
            out.problems.append(
                f"{where}: not a '[start - end]<TAB>id<TAB>code<TAB>[V, A, D]' line; row skipped"
            )
            continue
        if turn["id"] in seen:
            out.problems.append(f"{where}: duplicate utterance {turn['id']!r}; row skipped")
            continue
        seen.add(turn["id"])
        wav = session / "sentences" / "wav" / dialog / f"{turn['id']}.wav"
        utt = _utterance(turn, wav, (texts or {}).get(turn["id"]), where, out.problems)
        if utt is None:
            continue
        if utt.text is None and texts is not None:
            out.notes.append(f"{where}: no (or an empty) transcript for {utt.id!r}; row kept audio-only")
        out.rows.append(utt)


def _utterance(
    turn: re.Match, wav: Path, text: str | None, where: str, problems: list[str]
) -> Utterance | None:
    """One evaluation line as an utterance, or None (the reasons in ``problems``)."""
    errors = []
    code = turn["code"]
    if code not in EMOTIONS and code not in NO_CLASS:
        errors.append(f"unknown emotion code {code!r} (expected one of {[*EMOTIONS, *NO_CLASS]})")
    values = [v.strip() for v in turn["vad"].split(",")]
    dims: dict[str, float | None] = {"valence": None, "arousal": None, "dominance": None}
    if len(values) != 3:
        errors.append(f"[V, A, D] needs 3 numbers, got [{turn['vad']}]")
    else:
        for name, value in zip(dims, values, strict=True):
            dims[name], error = number_in(value, *SCALE)
            if error:
                errors.append(f"{name} {error}")
    part = turn["id"].rsplit("_", 1)[-1]
    if part[:1] not in ("F", "M"):
        errors.append(f"utterance name {turn['id']!r} does not end in _F<n> or _M<n>")
    if errors:
        problems.extend(f"{where}: {e}; row skipped" for e in errors)
        return None
    if not check_audio(wav, where, problems):
        return None
    return Utterance(
        id=turn["id"],
        audio=wav.resolve(),
        text=text,
        label=EMOTIONS.get(code),
        speaker=f"{turn['id'][:5]}_{part[0]}",
        split="",
        **dims,
    )


def _transcripts(path: Path, out: Prepared) -> dict[str, str] | None:
    """Utterance id -> text of one transcription file (lines ``<id> [start-end]: text``), empty texts left out;
    None (and a note) if the file is missing."""
    if not path.is_file():
        out.notes.append(f"{path}: transcription file not found; that dialog's rows are audio-only")
        return None
    texts = {}
    for raw in read_text(path).splitlines():
        line = _TRANSCRIPT.fullmatch(raw.strip())
        if line is not None and line["text"].strip():
            texts[line["id"]] = " ".join(line["text"].split())
    return texts
