"""The shipped mamer-base is what its card says: its EmoDB test score, recomputed from the weights, and its
examples, run (issue 33, defects 4 and 7)."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from mamer import EmotionRecognizer
from mamer.data.corpora.mamer_base import read_mamer_base
from mamer.metrics import categorical_metrics
from mamer.workflows.inference.pretrained import builtin_folder
from test_corpora import DATA, needs_data

CARD = builtin_folder("mamer-base") / "README.md"
TEMPLATE = Path(__file__).resolve().parents[1] / "recipes" / "mamer_base" / "card.md"
ROUNDING = 5e-5  # the card keeps four decimals


def card_score(dataset: str, metric: str, card: Path = CARD) -> float:
    """A test score from the card's model-index metadata (its YAML header), read here without mamer's parser."""
    header = yaml.safe_load(card.read_text(encoding="utf-8").split("---\n")[1])
    for result in header["model-index"][0]["results"]:
        if result["dataset"]["name"] == dataset:
            return next(m["value"] for m in result["metrics"] if m["type"] == metric)
    raise KeyError(f"{card}: no {metric} of {dataset}")


@pytest.fixture(scope="module")
def recognizer() -> EmotionRecognizer:
    return EmotionRecognizer.from_pretrained("mamer-base")


@pytest.fixture(scope="module")
def emodb_test(tmp_path_factory) -> list:
    """EmoDB's released test split (speakers 03 and 08, boredom left out: 92 clips), read as the recipe does."""
    root = tmp_path_factory.mktemp("emodb_root")
    (root / "emodb").symlink_to(DATA / "emodb")
    return [u for u in read_mamer_base(root).rows if u.split == "test_emodb"]


@needs_data
def test_the_shipped_weights_score_on_emodb_what_the_card_says(recognizer, emodb_test):
    """The release scored each corpus's test split from the feature cache (recipes/mamer_base/release.py); here
    the same 92 clips go through the recognizer from their audio files, every step a user's prediction takes."""
    assert len(emodb_test) == 92
    predictions = recognizer.predict_batch([{"audio": u.audio} for u in emodb_test], batch_size=16)
    assert {p.view for p in predictions} == {"audio"}
    index = {label: i for i, label in enumerate(recognizer.labels)}
    truth = np.array([index[u.label] for u in emodb_test])
    scores = categorical_metrics(truth, np.array([index[p.label] for p in predictions]), len(index))
    for metric in ("uar", "macro_f1"):
        assert abs(scores[metric] - card_score("EmoDB", metric)) <= ROUNDING, (metric, scores[metric])
    table = re.search(r"\| EmoDB \| audio \| uar \| (\d\.\d{3}) \|", CARD.read_text(encoding="utf-8"))
    assert table and float(table.group(1)) == round(card_score("EmoDB", "uar"), 3)


def test_the_shipped_card_is_the_recipes_card_filled_in():
    """recipes/mamer_base/card.md is the card's source (release.py fills in the scores and the size): an edit to
    one alone would be undone, or lost, by the next release."""
    body = CARD.read_text(encoding="utf-8").split("---\n", 2)[2]
    scores = re.search(r"\| test set \| view \| metric \| score \|\n(?:\|.*\n)+", body).group(0).rstrip("\n")
    params = re.search(r"\(([\d,]+) parameters", body).group(1)
    template = TEMPLATE.read_text(encoding="utf-8")
    assert template.replace("{scores}", scores).replace("{params}", params).strip() == body.strip()


def predict_lines(text: str) -> list[tuple[str, str]]:
    """Each `r.predict(...)  # comment` line of the text's Python blocks: (the call, its comment)."""
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.startswith("r.predict(")]
    return [tuple(part.strip() for part in line.split("#", 1)) for line in lines]


@needs_data
@pytest.mark.parametrize("document", [CARD, Path(__file__).resolve().parents[1] / "README.md"])
def test_each_predict_example_answers_with_the_view_its_comment_names(document, recognizer, emodb_test):
    """`r.predict(audio=...)  # audio view`: run each example on a real clip and read the view it answered
    with, so a comment that promises a transcript the call does not make fails (the card said so of
    `transcribe=False`, the default)."""
    examples = predict_lines(document.read_text(encoding="utf-8"))
    assert examples, f"{document}: no r.predict example"
    clip = str(emodb_test[0].audio)
    for call, comment in examples:
        keywords = {k.arg: ast.literal_eval(k.value) for k in ast.parse(call).body[0].value.keywords}
        if "audio" in keywords:
            keywords["audio"] = clip
        view = recognizer.predict(**keywords).view
        named = re.findall(r"audio\+text|audio|text", comment.split("view")[0])
        assert named and named[-1] == view, (
            f"{document.name}: {call}  # {comment} answers with the {view} view"
        )
