"""The probe baseline EmoBox reports: frozen features of an encoder, pooled over time, and a small classifier.

It reads the same cached features a MAMER run of the fold reads (same encoder, same hidden states), the same
train / dev / test rows, and is scored with the same metrics, so the difference to MAMER is the model alone.
Three classifiers, each picked on the dev rows only:

- ``linear``: a class-balanced logistic regression on the mean over time of the standardised frames; its
  inverse regularisation C is the one of `LINEAR_CS` with the best dev macro-F1. Deterministic: the seed is
  not used. This is what a user gets in 20 lines.
- ``linear_speaker``: the same, each row's pooled vector first standardised by the mean and std of its speaker's
  rows in its split (no labels read; on test rows it needs several clips of each speaker, as a deployment
  normalising over a speaker's or a recording's clips would): the per-speaker normalisation lever.
- ``linear_corpus``: the same, standardised by the rows of its corpus in its split instead (the corpus an id
  names, `emodb/...`): a folder of clips from one source, speakers unknown.
- ``mlp``: EmoBox's head (its examples/sb/classifier_head.py: Linear(D, 128) and ReLU on every frame, the mean
  over frames, Linear(128, classes)), on frames standardised with the train mean and std, trained as its recipe
  does (Adam, lr 1e-4, batch 32, up to 100 epochs, unweighted cross-entropy); the epoch with the best dev
  macro-F1 is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from mamer.data.cache import load_split
from mamer.data.manifest import corpus_of, read_manifest
from mamer.metrics import categorical_metrics

PROBES = ("linear", "linear_speaker", "linear_corpus", "mlp")
GROUPED = {"linear_speaker": "speaker", "linear_corpus": "corpus"}  # the linear probes on grouped vectors
LINEAR_CS = (0.01, 0.1, 1.0)  # C of the logistic regression, chosen on dev macro-F1
MLP_HIDDEN = 128  # EmoBox's hidden size
SPLITS = ("train", "dev", "test")


@dataclass
class ProbeSplit:
    """One split's rows with audio and a known class: ``frames`` `(T_i, D)` float16 per row, ``labels`` `(n,)`,
    ``speakers`` (a row without one is a speaker of its own)."""

    ids: list[str]
    frames: list[torch.Tensor]
    labels: np.ndarray
    speakers: list[str]

    def pooled(self, by: str | None = None) -> np.ndarray:
        """`(n, D)` float32: each row's frames averaged over time; with ``by`` ``speaker`` or ``corpus``, then
        standardised by the mean and std of the rows of its speaker or corpus (a dimension constant over a
        group's rows is left centred)."""
        pooled = np.stack([f.float().mean(0).numpy() for f in self.frames])
        if by is not None:
            keys = self.speakers if by == "speaker" else [corpus_of(i) for i in self.ids]
            groups = np.array(keys)
            for group in set(keys):
                rows = groups == group
                std = pooled[rows].std(0)
                pooled[rows] = (pooled[rows] - pooled[rows].mean(0)) / np.where(std > 0, std, 1.0)
        return pooled


def probe_splits(features: Path, manifest: Path, classes: list[str]) -> dict[str, ProbeSplit]:
    """The train, dev and test rows of ``manifest`` with their cached audio features (the index folder that
    `prepare_features` returns); rows without audio or outside ``classes`` are left out, as MAMER leaves them."""
    rows = {u.id: u for u in read_manifest(Path(manifest))[0]}
    label_of = {uid: u.label for uid, u in rows.items()}
    out = {}
    for split in SPLITS:
        cached = load_split(Path(features), split)
        keep = [
            i for i, uid in enumerate(cached.ids) if cached.has_audio(i) and label_of.get(uid) in classes
        ]  # fmt: skip
        out[split] = ProbeSplit(
            [cached.ids[i] for i in keep],
            [cached.audio_of(i) for i in keep],
            np.array([classes.index(label_of[cached.ids[i]]) for i in keep], dtype=np.int64),
            [rows[cached.ids[i]].speaker or cached.ids[i] for i in keep],
        )
        if not keep:
            raise ValueError(f"{manifest}: no {split} rows with audio and one of the classes {classes}")
    return out


def linear_probe(data: dict[str, ProbeSplit], num_classes: int, by: str | None = None) -> dict:
    """Test and dev metrics of the logistic regression whose C scored best on dev, and that C (``by``: on
    vectors standardised per speaker or corpus first, `ProbeSplit.pooled`)."""
    pooled = {split: part.pooled(by) for split, part in data.items()}
    scaler = StandardScaler().fit(pooled["train"])
    x = {split: scaler.transform(vectors) for split, vectors in pooled.items()}
    best = None
    for c in LINEAR_CS:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
        model.fit(x["train"], data["train"].labels)
        dev = categorical_metrics(data["dev"].labels, model.predict(x["dev"]), num_classes)
        if best is None or dev["macro_f1"] > best[0]["macro_f1"]:
            best = dev, c, model
    dev, c, model = best
    test = categorical_metrics(data["test"].labels, model.predict(x["test"]), num_classes)
    return {"test": test, "dev": dev, "C": c}


class EmoBoxHead(nn.Module):
    """EmoBox's probe head: frames `(B, T, D)` -> Linear + ReLU per frame -> masked mean over T -> logits `(B, C)`."""

    def __init__(self, dim: int, num_classes: int, hidden: int = MLP_HIDDEN) -> None:
        super().__init__()
        self.pre_net = nn.Linear(dim, hidden)
        self.post_net = nn.Linear(hidden, num_classes)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.pre_net(frames)) * mask.unsqueeze(-1)
        return self.post_net(hidden.sum(1) / mask.sum(1, keepdim=True).clamp(min=1))


def _batch(
    frames: list[torch.Tensor], mean: torch.Tensor, std: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised frames padded to `(B, T_max, D)` and their mask `(B, T_max)`."""
    length = max(len(f) for f in frames)
    x = torch.zeros(len(frames), length, frames[0].shape[1])
    mask = torch.zeros(len(frames), length)
    for i, f in enumerate(frames):
        x[i, : len(f)] = (f.float() - mean) / std
        mask[i, : len(f)] = 1
    return x, mask


@torch.inference_mode()
def _predict(head: EmoBoxHead, part: ProbeSplit, mean: torch.Tensor, std: torch.Tensor, batch: int = 64):
    head.eval()
    out = [
        head(*_batch(part.frames[i : i + batch], mean, std)).argmax(1) for i in range(0, len(part.ids), batch)
    ]
    return torch.cat(out).numpy()


def mlp_probe(
    data: dict[str, ProbeSplit],
    num_classes: int,
    seed: int,
    epochs: int = 100,
    lr: float = 1e-4,
    batch: int = 32,
) -> dict:
    """Test and dev metrics of EmoBox's head at the epoch with the best dev macro-F1, and that epoch."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    train = data["train"]
    stacked = torch.cat([f.float() for f in train.frames])
    mean, std = stacked.mean(0), stacked.std(0).clamp(min=1e-5)
    head = EmoBoxHead(stacked.shape[1], num_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    labels = torch.from_numpy(train.labels)
    best: tuple[dict, int, dict] | None = None
    for epoch in range(1, epochs + 1):
        head.train()
        for rows in torch.randperm(len(train.ids), generator=generator).split(batch):
            x, mask = _batch([train.frames[i] for i in rows], mean, std)
            loss = nn.functional.cross_entropy(head(x, mask), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        dev = categorical_metrics(data["dev"].labels, _predict(head, data["dev"], mean, std), num_classes)
        if best is None or dev["macro_f1"] > best[0]["macro_f1"]:
            best = dev, epoch, {k: v.clone() for k, v in head.state_dict().items()}
    dev, epoch, state = best
    head.load_state_dict(state)
    test = categorical_metrics(data["test"].labels, _predict(head, data["test"], mean, std), num_classes)
    return {"test": test, "dev": dev, "epoch": epoch}


def run_probe(
    kind: str, features: Path, manifest: Path, classes: list[str], seed: int = 0, **options
) -> dict:
    """One probe (``linear`` or ``mlp``) on one fold: its test and dev metrics and what dev chose."""
    if kind not in PROBES:
        raise ValueError(f"unknown probe {kind!r}; known: {', '.join(PROBES)}")
    data = probe_splits(features, manifest, classes)
    if kind == "mlp":
        return mlp_probe(data, len(classes), seed, **options)
    return linear_probe(data, len(classes), by=GROUPED.get(kind))
