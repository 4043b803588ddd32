"""torch layers that skip their random initialisation, for frozen encoders whose every weight is then assigned
from a file (`load_state_dict(..., assign=True)`).

Initialising 20M parameters at random costs about 0.2 s of a cold start, and building on the meta device instead
imports `torch._dynamo` (3 s on 2 loaded cores): these layers allocate their tensors and leave them unset.
"""

from __future__ import annotations

from torch import nn


class Linear(nn.Linear):
    def reset_parameters(self) -> None:  # assigned from the weights file
        pass


class Conv1d(nn.Conv1d):
    def reset_parameters(self) -> None:
        pass


class Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        pass


class LayerNorm(nn.LayerNorm):
    def reset_parameters(self) -> None:
        pass
