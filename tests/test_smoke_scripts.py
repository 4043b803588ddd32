"""Every script under benchmarks/ and recipes/, run at its smallest size: `python -m pytest -k smoke`.

A script no test runs rots unseen when the API under it changes (issue 33: `benchmarks/extract_speed.py` died on
a changed `Shard` for weeks). `SMOKE` gives each script the arguments of its smallest run, and a script without
an entry fails `test_smoke_every_script_has_its_smallest_arguments`, which says what to add. These runs check
that a script still runs from start to end, not its figures: the sizes are far too small to mean anything.

Python scripts run in this process (`runpy`, as `python SCRIPT ARGS` from the repository root would: the script's
folder first on `sys.path`, `__name__ == "__main__"`), which saves each one the 4-5 s of importing torch and
mamer again; shell scripts run in a subprocess.
"""

from __future__ import annotations

import csv
import importlib
import os
import re
import runpy
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import TINY
from test_corpora import DATA

ROOT = Path(__file__).resolve().parents[1]
SCRIPT_FOLDERS = ("benchmarks", "recipes")


@dataclass(frozen=True)
class Elsewhere:
    """A script whose smallest run is a test of its own, `module::test`, marked `smoke` (the test or its module,
    so that `-k smoke` selects it): for a script whose inputs are costly to build twice."""

    test: str


class Inputs:
    """What a script's smallest run reads, each built on first use (a run of one script builds only its own)."""

    def __init__(self, request: pytest.FixtureRequest, tmp: Path):
        self.request, self.tmp = request, tmp

    @property
    def run(self) -> str:
        """A tiny quickstart run (1 epoch, log-mel + hashed text) on the tiny synthetic corpus."""
        return str(self.request.getfixturevalue("smoke_run"))

    @property
    def corpus(self) -> str:
        """The tiny synthetic corpus's manifest (4 speakers x 8 utterances, split 2 / 1 / 1)."""
        return str(self.request.getfixturevalue("tiny_corpus"))

    @property
    def audio(self) -> str:
        """The tiny corpus's folder of audio files."""
        return str(Path(self.corpus).parent / "audio")

    @property
    def data(self) -> Path:
        """../shared/data, the real corpora (the script is skipped without them)."""
        if DATA is None:
            pytest.skip("real corpora not found in ../shared/data")
        return DATA

    @property
    def data_root(self) -> str:
        """A few rows of each of mamer-base's five corpora, laid out as ../shared/data (`tiny_data_root`)."""
        self.data  # noqa: B018 - skips without the real corpora
        return str(self.request.getfixturevalue("tiny_root"))


# Each script (or "script [what]" for a second mode of one) -> the arguments of its smallest run. A shell
# script's leading NAME=VALUE items are its environment. A new script needs an entry: the smallest arguments that
# still go through all of its code (a `--smoke` flag where no argument makes it small enough), a few seconds.
# fmt: off
SMOKE: dict[str, Callable[[Inputs], list[str]] | Elsewhere] = {
    "benchmarks/asr_languages.py": lambda i: ["--smoke", "--data", str(i.data)],
    "benchmarks/asr_views.py": lambda i: ["--run", i.run, "--manifest", i.corpus, "--asr", "whisper-tiny.en"],
    "benchmarks/asr_wer.py": lambda i: [
        "--emodb", str(i.data / "emodb"), "--per-sentence", "1", "--sentences", "1", "--manifest", i.corpus,
        "--synthetic-max", "1", "--threads", "1",
    ],
    "benchmarks/audio_keys.py": lambda i: [i.audio],
    "benchmarks/batching.py": lambda i: ["--rows", "32", "--batch-size", "16", "--frames", "20", "--words", "4",
                                         "--rounds", "1"],
    "benchmarks/cold_start.py": lambda i: ["--smoke", "--model", i.run],
    "benchmarks/cpu_ceiling.py": lambda i: ["--smoke", "--seconds", "0.5", "--batch", "2"],
    "benchmarks/ddp_gpu_check.sh": lambda i: ["SMOKE=1", f"OUT={i.tmp}"],
    "benchmarks/extract_speed.py": lambda i: [
        "--smoke", "--utterances", "12", "--encoders", "wavlm-base", "--wavlm-layers", "-1",
    ],
    "benchmarks/degraded_input.py": lambda i: [
        "--model", i.run, "--manifest", i.corpus, "--split", "test", "--limit", "4",
        "--conditions", "clean,telephone,babble10", "--groups", "none,speaker",
    ],
    "benchmarks/extract_speed.py [--batching]": lambda i: [
        "--smoke", "--batching", "--data", str(i.data), "--utterances", "2", "--join", "2", "--repeats", "1",
        "--sizes", "1,auto", "--encoders", "wavlm-base",
    ],
    "benchmarks/finetune_emodb.py": lambda i: [
        "--source", i.run, "--features", str(i.tmp / "features"), "--emodb", f"{i.data_root}/emodb",
        "--out", str(i.tmp / "finetune"), "--folds", "0", "--fractions", "0.5", "--epochs", "1",
        "--patience", "1", "--batch-size", "8",
    ],
    # its speaker-normalised run is trained once, for the normalisation's own tests
    "benchmarks/group_size.py": Elsewhere("test_frame_norm::test_group_size_benchmark_smoke"),
    "benchmarks/latency.py": lambda i: [i.run, "--seconds", "1", "--repeats", "1"],
    "benchmarks/layer_probe.py": lambda i: ["--manifest", i.corpus, "--encoder", "whisper-tiny.en"],
    "benchmarks/live_latency.py": lambda i: [
        "--model", i.run, "--audio", i.audio, "--seconds", "2", "--window", "1", "--hop", "1", "--speed", "10",
        "--asr", "whisper-tiny.en",
    ],
    "benchmarks/scale_cluster.py": lambda i: ["--smoke", "--model", i.run, "--audio", i.audio, "--work", str(i.tmp)],
    # its Ray cluster is costly to start twice: the Ray module's own test runs it
    "benchmarks/scale_throughput.py": Elsewhere("test_ray_engine::test_scale_throughput_benchmark_smoke"),
    "benchmarks/service_hostile.py": lambda i: ["--smoke", "--run", i.run],
    "benchmarks/service_load.py": lambda i: ["--smoke", "--run", i.run],
    "benchmarks/timeline.py": lambda i: [
        "--run", i.run, "--manifest", i.corpus, "--splits", "test", "--minutes", "0.1", "--asr", "none",
        "--rss-minutes", "0.1", "--work", str(i.tmp),
    ],
    "benchmarks/timeline_plot_speed.py": lambda i: ["--smoke"],
    "benchmarks/train_step.py": lambda i: ["--sizes", "quickstart", "--steps", "1", "--batch-size", "2"],
    "recipes/emobox/run.py": lambda i: ["--corpus", "emodb", "--smoke", "--data", str(i.data), "--out", str(i.tmp)],
    "recipes/mamer_base/candidate.py": Elsewhere(
        "test_recipe_mamer_base::test_candidate_scores_the_speech_corpora_three_ways_beside_the_release"
    ),
    "recipes/mamer_base/compare.py": Elsewhere(
        "test_recipe_mamer_base::test_compare_puts_every_corpus_beside_the_single_corpus_runs"
    ),
    "recipes/mamer_base/dev_selection.py": Elsewhere(
        "test_recipe_mamer_base::test_dev_selection_scores_each_corpus_and_picks_the_highest_mean"
    ),
    "recipes/mamer_base/emodb_folds.py": Elsewhere(
        "test_recipe_mamer_base::test_emodb_folds_groups_runs_by_their_test_speakers"
    ),
    "recipes/mamer_base/loco.py": Elsewhere(
        "test_corpora_cross::test_smoke_recipe_scores_the_release_probes_and_systems_on_each_left_out_corpus"
    ),
    "recipes/mamer_base/release.py": Elsewhere(
        "test_recipe_mamer_base::test_release_writes_a_model_that_loads_with_its_test_scores_on_the_card"
    ),
    "recipes/mamer_base/run.sh": lambda i: [
        f"WORK={i.tmp / 'work'}", f"RELEASE={i.tmp / 'release'}", i.data_root, "data.audio_encoder=logmel",
        "data.text_encoder=hashed", "data.audio_layers=[]", "data.text_layers=[]", *TINY, "train.epochs=1",
    ],
    "recipes/mamer_base/run.sh [v2]": lambda i: [
        "CONFIG=mamer_base_v2", "AUGMENT=per-speaker", f"WORK={i.tmp / 'work'}", f"RELEASE={i.tmp / 'release'}", i.data_root,
        "data.audio_encoder=logmel", "data.text_encoder=hashed", "data.audio_layers=[]", "data.text_layers=[]",
        *TINY, "train.epochs=1",
    ],
}
# fmt: on


def scripts() -> list[str]:
    """Every script under benchmarks/ and recipes/, as a path from the repository root."""
    found = [p for folder in SCRIPT_FOLDERS for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".sh")]
    return sorted(p.relative_to(ROOT).as_posix() for p in found if "__pycache__" not in p.parts)


def script_of(key: str) -> str:
    return key.split(" ", 1)[0]


def test_smoke_every_script_has_its_smallest_arguments():
    missing = [s for s in scripts() if s not in {script_of(key) for key in SMOKE}]
    assert not missing, (
        f"no smoke run for {missing}: add an entry to SMOKE in tests/test_smoke_scripts.py with the arguments "
        "of the script's smallest run (tiny sizes, or a --smoke flag where no argument makes it small enough: a "
        "few seconds), so that an API change that breaks it fails the tests; a module that is not a script "
        "belongs in src/mamer/"
    )
    gone = [key for key in SMOKE if script_of(key) not in scripts()]
    assert not gone, f"SMOKE names scripts that are gone: {gone}; remove their entries"


@pytest.mark.parametrize("key", [k for k, v in SMOKE.items() if isinstance(v, Elsewhere)])
def test_smoke_a_script_run_elsewhere_is_run_by_a_smoke_test(key):
    module_name, name = SMOKE[key].test.split("::")
    module = importlib.import_module(module_name)
    test = getattr(module, name, None)
    assert callable(test), f"{key}: {SMOKE[key].test} is gone; give the script an entry"
    marks = [m for owner in (module, test) for m in _as_list(getattr(owner, "pytestmark", []))]
    assert any(m.name == "smoke" for m in marks), (
        f"{SMOKE[key].test} runs {key} but is not marked smoke (@pytest.mark.smoke on it, or pytestmark = "
        "pytest.mark.smoke in its module), so -k smoke skips it"
    )


def _as_list(marks) -> list:
    return marks if isinstance(marks, list) else [marks]


@pytest.fixture(scope="module")
def smoke_run(train_tiny, tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("smoke_run"))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return tiny_data_root(DATA, tmp_path_factory.mktemp("tiny_data"))


def first_rows(rows: list, key: Callable, n: int) -> list:
    """The first `n` rows of each `key(row)`, in their order (a key of None: left out)."""
    seen: Counter = Counter()
    kept = []
    for row in rows:
        group = key(row)
        seen[group] += 1
        if group is not None and seen[group] <= n:
            kept.append(row)
    return kept


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def tiny_data_root(data: Path, out: Path) -> Path:
    """`out` laid out as ../shared/data with a few rows of each class of each mamer-base corpus, in every split
    (audio folders linked): EmoDB one clip of each speaker and emotion, RAVDESS one of each emotion of a train,
    a dev and a test actor, MELD two rows a class and split, GoEmotions 16 train rows a label (every 8th is kept)
    and two dev and test rows, EmoBank 6 rows a split; and nEMO one clip of each speaker and emotion (for the
    leave-one-corpus-out recipe)."""
    tables = {
        "emodb/metadata.csv": (lambda r: (r["speaker"], r["emotion"]), 1),
        "nemo/metadata.csv": (lambda r: (r["speaker"], r["emotion"]), 1),
        "ravdess/metadata.csv": (
            lambda r: (r["actor"], r["emotion"]) if r["actor"] in ("01", "17", "21") else None,
            1,
        ),
        "emobank/emobank.csv": (lambda r: r["split"], 6),
        **{f"meld/{split}_sent_emo.csv": (lambda r: r["Emotion"], 2) for split in ("train", "dev", "test")},
    }
    for table, (key, n) in tables.items():
        write_csv(out / table, first_rows(read_csv(data / table), key, n))
    for corpus in ("emodb", "ravdess", "nemo"):
        (out / corpus / "audio").symlink_to(data / corpus / "audio")
    ekman = out / "goemotions" / "ekman"
    ekman.mkdir(parents=True)
    (ekman / "labels.txt").write_bytes((data / "goemotions" / "ekman" / "labels.txt").read_bytes())
    for split in ("train", "dev", "test"):
        lines = (data / "goemotions" / "ekman" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        kept = first_rows(lines, lambda line: line.split("\t")[1], 16 if split == "train" else 2)
        (ekman / f"{split}.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run_python(path: Path, argv: list[str], monkeypatch) -> None:
    """`python path argv...` in this process; a nonzero SystemExit fails."""
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    monkeypatch.syspath_prepend(str(path.parent))
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exit:
        assert exit.code in (None, 0), f"{path.name} exited with {exit.code}"
    finally:
        torch.set_num_threads(threads)  # a script's --threads is its own


def run_shell(path: Path, argv: list[str]) -> None:
    """`NAME=VALUE... bash path argv...` in a subprocess, with the venv's `mamer` and python on its PATH."""
    env_items = [a for a in argv if re.fullmatch(r"[A-Z_]+=.*", a)]
    args = argv[len(env_items) :]
    env = os.environ | dict(item.split("=", 1) for item in env_items)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(["bash", str(path), *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, (
        f"{path.name} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
    )


@pytest.mark.parametrize("key", [k for k, v in SMOKE.items() if not isinstance(v, Elsewhere)])
def test_smoke(key, request, tmp_path, monkeypatch, capsys):
    path = ROOT / script_of(key)
    argv = SMOKE[key](Inputs(request, tmp_path))
    monkeypatch.chdir(ROOT)  # relative defaults (../shared/data) as the scripts' docstrings run them
    if path.suffix == ".sh":
        run_shell(path, argv)
    else:
        run_python(path, argv, monkeypatch)
        assert capsys.readouterr().out.strip(), f"{key} printed nothing"
