"""The colours of emotion classes and of arousal/valence/dominance: one palette for the page (`GET /colours.json`)
and the figures, so that anger is the same red everywhere.

A/V/D are not classes: their colours are none of the classes' (and the timeline plot draws them with distinct
line styles too). A label the palette does not name takes the next unused spare colour, in the model's order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

CLASSES = {
    "anger": "#d0342c", "angry": "#d0342c", "disgust": "#5c8a2b", "fear": "#7b4bb7", "fearful": "#7b4bb7",
    "happiness": "#e0a800", "happy": "#e0a800", "joy": "#e0a800", "neutral": "#8a939e", "sadness": "#2f6fd6",
    "sad": "#2f6fd6", "surprise": "#ef7d1a", "surprised": "#ef7d1a", "calm": "#1c9c8c", "boredom": "#9b6b43",
}  # fmt: skip
DIMENSIONS = {"arousal": "#c2185b", "valence": "#1a237e", "dominance": "#37474f"}
SPARE = ("#00897b", "#6d4c41", "#7cb342", "#f4511e", "#5e35b1", "#039be5", "#ad1457", "#827717")


def colours_of(names: Sequence[str]) -> dict[str, str]:
    """A colour for each of a model's labels (or dimensions): its named colour, else the spares in turn, as the
    page's `colourOf` gives them."""
    named = CLASSES | DIMENSIONS
    spare = itertools.cycle(SPARE)
    return {name: named.get(name) or next(spare) for name in names}


def palette() -> dict:
    """What `GET /colours.json` serves the page: named colours, then the spares for other labels."""
    return {"named": CLASSES | DIMENSIONS, "spare": list(SPARE)}
