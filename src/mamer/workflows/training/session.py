"""One training run's state: loaders, the model with its training-only heads and objective, and the optimizer."""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler, Subset

from mamer import distributed
from mamer.checkpoint import (
    ModelMeta,
    build_model,
    make_meta,
)
from mamer.config import RunConfig
from mamer.data.cache import load_spec, load_split
from mamer.data.dataset import Batch, EmotionDataset, Targets, collate
from mamer.data.manifest import Utterance, corpus_of, read_manifest, splits
from mamer.data.sampling import ModalityBatches
from mamer.device import resolve_device
from mamer.distributed import SINGLE_PROCESS, DistContext
from mamer.encoders.base import stacked_layers
from mamer.losses import SupervisedLoss
from mamer.modality import has_categories, has_dimensions
from mamer.model.heads import PretrainingHeads
from mamer.model.mamer import MAMER
from mamer.model.tokens import LayerMix
from mamer.objective import Objective
from mamer.workflows.training.init_from import inherited_lineage, load_source, same_labels, transfer

log = logging.getLogger(__name__)


@dataclass
class Loaders:
    train: DataLoader
    dev: DataLoader
    targets: Targets


def make_loaders(config: RunConfig, features: Path, context: DistContext = SINGLE_PROCESS) -> Loaders:
    """Train and dev loaders; under torchrun each rank gets its share of both splits."""
    data = config.data  # problems were reported when the features were extracted (`prepare_features`)
    utterances, _ = read_manifest(Path(data.manifest), labels=data.labels, train_split=data.train_split)
    by_split = splits(utterances)
    for name in (config.data.train_split, *config.data.dev_splits):
        if name not in by_split:
            raise ValueError(f"split {name!r} not found in {config.data.manifest}; it has {sorted(by_split)}")
    targets = Targets.fit(by_split[config.data.train_split], config.data.labels, config.data.class_parts)
    check_corpora(config.train.corpus_oversample, by_split[config.data.train_split], config.data.manifest)
    if context.is_main:
        warn_classes_left_out(by_split[config.data.train_split], targets.labels, config.data.manifest)
    max_frames = config.model.max_audio_tokens * config.model.audio_downsample
    max_tokens = config.model.max_text_tokens

    def dataset(split: str, **options) -> EmotionDataset:  # repeats, lone_share, lone_statistics
        return EmotionDataset(
            load_split(features, split),
            by_split[split],
            targets,
            max_frames,
            max_tokens=max_tokens,
            audio_normalise=config.model.audio_normalise,
            **options,
        )

    generator = torch.Generator().manual_seed(config.train.seed)
    t = config.train
    train_set = dataset(
        config.data.train_split,
        audio_repeat=t.audio_oversample,
        corpus_repeat=t.corpus_oversample,
        lone_share=t.lone_share,
    )
    if config.loss.class_weighted and has_categories(config.data.task):
        train_set.row_weights = row_weights(train_set, config.loss.class_balance)
    # with model.audio_normalise speaker, the train split's raw audio statistics (its dataset's own, as nothing
    # was given): what a dev clip of no speaker is standardised by, and what the model keeps for clips alone
    reference = train_set.lone_statistics
    dev_set = ConcatDataset([dataset(split, lone_statistics=reference) for split in config.data.dev_splits])
    train = train_loader(train_set, config, context, generator)
    dev_share = Subset(dev_set, range(context.rank, len(dev_set), context.world_size))
    dev = DataLoader(dev_share, 64, collate_fn=collate, num_workers=t.num_workers)
    return Loaders(train, dev, targets)


def train_loader(
    train_set: EmotionDataset, config: RunConfig, context: DistContext, generator: torch.Generator
) -> DataLoader:
    """The train split's batches: mixed (shuffled, or under torchrun dealt over the ranks by a shuffle fixed by
    (seed, epoch), padded to as many steps each) or by modality (`ModalityBatches`, also by (seed, epoch))."""
    t = config.train
    if t.batching == "by_modality":
        kinds = [train_set.modalities(i) for i in range(len(train_set))]  # (has audio, has text)
        sizes = {kind: t.audio_batch_size or t.batch_size for kind in set(kinds) if kind[0]}
        batches = ModalityBatches(kinds, t.batch_size, t.seed, context.rank, context.world_size, sizes)
        return DataLoader(
            train_set,
            batch_sampler=batches,
            collate_fn=collate,
            generator=generator,
            num_workers=t.num_workers,
        )
    sampler = None
    if context.enabled:
        sampler = DistributedSampler(train_set, context.world_size, context.rank, seed=t.seed)
    return DataLoader(
        train_set,
        t.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        collate_fn=collate,
        generator=generator,
        num_workers=t.num_workers,
        drop_last=False,
    )


def check_corpora(named: dict[str, int], train: Sequence[Utterance], manifest: str) -> None:
    """`train.corpus_oversample` must name corpora the train split has (a typo would otherwise change nothing)."""
    present = {corpus_of(u.id) for u in train}
    unknown = sorted(set(named) - present)
    if unknown:
        raise ValueError(
            f"train.corpus_oversample names {', '.join(unknown)}, which no train row of {manifest} belongs to; "
            f"the train rows' corpora (id prefixes): {', '.join(sorted(present - {''})) or 'none'}"
        )


def warn_classes_left_out(train: Sequence[Utterance], labels: list[str], manifest: str) -> None:
    """Say how many train rows carry a class outside `data.labels`: they train without a class (only the
    contrastive and reconstruction losses read them), which a typo in `data.labels` would do silently."""
    outside = Counter(u.label for u in train if u.label is not None and u.label not in labels)
    if outside:
        counts = ", ".join(f"{label} {n}" for label, n in outside.most_common())
        log.warning(
            "%s: %d train rows have a class outside data.labels (%s) and train without a class: %s",
            manifest, sum(outside.values()), ", ".join(labels), counts,
        )  # fmt: skip


def row_weights(dataset: EmotionDataset, balance: str = "split") -> list[float]:
    """Each row's inverse-frequency class weight, N / (K n_k) for a row of class k among N labelled rows of K
    classes, counted over the whole dataset (`balance` "split") or within each corpus (`corpus_of` the id):
    with "corpus" every class of a corpus then weighs as much in all, and the rows of a corpus average 1, so each
    corpus keeps its share of the loss; with "corpus_equal" each corpus's rows weigh N / C in all (C corpora), so
    each corpus has an equal share, its classes equal within it. Repeated (oversampled) rows count as often as
    they are drawn; unlabelled rows get 1. A class's part (`data.class_parts`) counts as its class: parts change
    which output a row trains, not its weight."""
    groups = [corpus_of(u.id) if balance != "split" else "" for u in dataset.utterances]
    labels = [u.label if u.label in dataset.targets.labels else None for u in dataset.utterances]
    counts = Counter((g, label) for g, label in zip(groups, labels, strict=True) if label is not None)
    rows = Counter(g for g, _ in counts.elements())
    if balance == "corpus_equal":  # every corpus the mean share of the labelled rows
        rows = Counter({g: rows.total() / len(rows) for g in rows})
    classes = Counter(g for g, _ in counts)
    return [
        1.0 if label is None else rows[g] / (classes[g] * counts[g, label])
        for g, label in zip(groups, labels, strict=True)
    ]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


AUDIO_TOKENS_PER_SECOND = 12.5


class Trainee(nn.Module):
    """The model, its training-only heads and the objective as one module: what DistributedDataParallel wraps,
    so that one forward a batch covers every trained parameter."""

    def __init__(self, model: MAMER, heads: PretrainingHeads, objective: Objective):
        super().__init__()
        self.model, self.heads, self.objective = model, heads, objective

    def forward(self, batch: Batch, mask_rng: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return self.objective(self.model, self.heads, batch, mask_rng)


def wrap(trainee: Trainee, context: DistContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel under torchrun, else the trainee itself."""
    if not context.enabled:
        return trainee
    # Unused parameters: ablations and batches without a modality leave some heads out of the loss.
    # Buffers are constants (no running statistics), so there is nothing to broadcast before each forward.
    return DistributedDataParallel(
        trainee,
        [device.index] if device.type == "cuda" else None,
        broadcast_buffers=False,
        find_unused_parameters=True,
    )


@dataclass
class Session:
    """Everything one training run updates: the model, its training-only heads, optimizer and counters.

    `trainee` runs the training forward (DDP under torchrun); `model` and `heads` are the plain modules that
    checkpoints save and evaluation runs, so their state_dict keys never carry a wrapper's prefix.
    """

    config: RunConfig
    loaders: Loaders
    model: MAMER
    heads: PretrainingHeads
    trainee: nn.Module
    optimizer: torch.optim.Optimizer
    meta: ModelMeta
    device: torch.device
    context: DistContext
    mask_rng: torch.Generator
    state: dict

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters()) + list(self.heads.parameters())


def start_session(config: RunConfig, features: Path, context: DistContext = SINGLE_PROCESS) -> Session:
    """Build model, heads, objective and optimizer for a config whose features are cached in `features`."""
    spec = load_spec(features)
    if config.model.audio_downsample == 0:
        config.model.audio_downsample = max(1, round(spec["frame_rate"] / AUDIO_TOKENS_PER_SECOND))
    loaders = make_loaders(config, features, context)
    targets, task = loaders.targets, config.data.task
    device = distributed.rank_device(resolve_device(config.train.device))
    audio_dim, text_dim = spec["audio_dim"], spec["text_dim"]
    encoders = {"audio": spec["audio_encoder"], "text": spec["text_encoder"]}
    model = build_model(config, audio_dim, text_dim, targets, encoders)
    kept = set()
    if config.train.init_from:
        source, source_meta = load_source(config.train.init_from)
        keep_head = same_labels(source_meta, targets.outputs, task)
        kept = transfer(model, source, source_meta.label_space.outputs, targets.outputs, keep_head)
    if config.model.audio_standardise and model.audio_in is not None and not config.train.init_from:
        # a fine-tuned model keeps its source's statistics (copied above), which its weights were trained on
        model.audio_in.set_statistics(*loaders.train.dataset.audio_statistics())
    if (
        config.model.audio_normalise == "speaker"
        and model.audio_in is not None
        and not config.train.init_from
    ):
        reference = loaders.train.dataset.lone_statistics  # the train split's raw statistics
        if reference is None:
            raise ValueError("no audio frames in the split to take statistics of")
        model.audio_in.set_reference(*reference)
    model = model.to(device)
    m = config.model
    # The masked autoencoder rebuilds one hidden state (or the mean of those stacked) per frame and token.
    audio_target = audio_dim // stacked_layers(encoders["audio"])
    text_target = text_dim // stacked_layers(encoders["text"])
    heads = PretrainingHeads(
        m.width, audio_target, text_target, m.audio_downsample, m.contrastive_dim, config.loss.temperature
    ).to(device)
    supervised = SupervisedLoss(use_classes=has_categories(task), use_dims=has_dimensions(task))
    objective = Objective(config.loss, m.views, supervised).to(device)
    optimizer = make_optimizer(config, model, heads, kept)
    meta = make_meta(config, model, audio_dim, text_dim, targets, features, encoders)
    if config.train.init_from:  # its licence and data travel with what is made from it
        meta.lineage = inherited_lineage(config.train.init_from)
    if config.train.compile:
        model.compile()  # in place, unlike torch.compile(model): the state_dict keys stay the plain model's
    trainee = wrap(Trainee(model, heads, objective), context, device)
    if context.rank:  # other ranks draw other dropout and masks; rank 0 draws as a single process does
        torch.manual_seed(config.train.seed + context.rank)
    return Session(
        config, loaders, model, heads, trainee, optimizer, meta, device, context,
        mask_rng=torch.Generator().manual_seed(config.train.seed + context.rank),
        state={"epoch": 0, "best": -math.inf, "bad_epochs": 0},
    )  # fmt: skip


def undecayed(*modules: nn.Module) -> set[int]:
    """Ids of the parameters weight decay should not pull to zero: biases, norms, the learned [CLS]/[SEP]/[MASK]
    vectors and the temperature (fewer than 2 dimensions), and embedding tables (positions, modality types)."""
    ids = set()
    for module in modules:
        for sub in module.modules():
            if isinstance(sub, nn.Embedding):
                ids.update(id(p) for p in sub.parameters())
        ids.update(id(p) for p in module.parameters() if p.ndim < 2)
    return ids


def make_optimizer(
    config: RunConfig, model: MAMER, heads: nn.Module, kept: set[str] = frozenset()
) -> torch.optim.AdamW:
    """AdamW over the model and the training-only heads, in groups by learning-rate scale (`lr_scale`: the
    group's rate over `lr`) and weight decay: the learned layer weights at `train.layer_mix_lr`, the model
    parameters named in `kept` (copied by `train.init_from`) at `train.init_lr_scale`, the rest at `lr`; weight
    decay only on weight matrices (see `undecayed`)."""
    t = config.train
    mix = {id(m.logits) for m in model.modules() if isinstance(m, LayerMix)}
    copied = {id(p) for name, p in model.named_parameters() if name in kept}
    plain = undecayed(model, heads)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for p in [*model.parameters(), *heads.parameters()]:
        if id(p) in mix:
            key = (t.layer_mix_lr / t.lr, 0.0)
        else:
            key = (t.init_lr_scale if id(p) in copied else 1.0, 0.0 if id(p) in plain else t.weight_decay)
        groups.setdefault(key, []).append(p)
    ordered = sorted(groups.items(), key=lambda item: (item[0][0] != 1.0, -item[0][1]))
    return torch.optim.AdamW(
        [{"params": ps, "lr_scale": scale, "weight_decay": decay} for (scale, decay), ps in ordered], lr=t.lr
    )
