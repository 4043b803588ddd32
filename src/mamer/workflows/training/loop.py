"""The training loop: features from the cache, AdamW with warm-up, dev-based early stopping, checkpoints.

Under torchrun every rank runs `train`: the model, heads and objective are wrapped in DistributedDataParallel,
each rank reads its share of the train split (DistributedSampler) and of the dev split (the predictions are
gathered, so every rank scores all dev rows and takes the same early-stopping decision), and rank 0 alone
writes the run directory (TensorBoard, checkpoints, config) while the others wait at a barrier.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from mamer import distributed
from mamer.checkpoint import (
    LAST_DIR,
    ModelMeta,
    build_model,
    load_training_state,
    make_meta,
    save_model,
    save_training_state,
)
from mamer.config import RunConfig, save_config
from mamer.data.dataset import Batch, EmotionDataset, Targets, collate
from mamer.data.features import extract_manifest, load_spec, load_split
from mamer.data.manifest import read_manifest, splits
from mamer.distributed import SINGLE_PROCESS, DistContext
from mamer.encoders.base import stacked_layers
from mamer.encoders.choice import EncoderChoice
from mamer.losses import SupervisedLoss
from mamer.model.heads import PretrainingHeads
from mamer.model.mamer import MAMER
from mamer.model.tokens import LayerMix
from mamer.objective import Objective
from mamer.workflows.evaluation.evaluate import evaluable_views, main_score, predict_view, score

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str) -> torch.autocast:
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def prepare_features(config: RunConfig, progress: bool = True) -> Path:
    """Extract (or reuse) the cached features of every split in the manifest; returns the cache folder."""
    root = Path(config.data.features or Path(config.data.manifest).parent / "features")
    return extract_manifest(
        Path(config.data.manifest),
        root,
        EncoderChoice.from_config(config.data, "audio"),
        EncoderChoice.from_config(config.data, "text"),
        device=str(resolve_device(config.train.device)),
        progress=progress,
    )


@dataclass
class Loaders:
    train: DataLoader
    dev: DataLoader
    targets: Targets


def make_loaders(config: RunConfig, features: Path, context: DistContext = SINGLE_PROCESS) -> Loaders:
    """Train and dev loaders; under torchrun each rank gets its share of both splits."""
    utterances, _ = read_manifest(Path(config.data.manifest))
    by_split = splits(utterances)
    for name in (config.data.train_split, config.data.dev_split):
        if name not in by_split:
            raise ValueError(f"split {name!r} not found in {config.data.manifest}; it has {sorted(by_split)}")
    targets = Targets.fit(by_split[config.data.train_split], config.data.labels)
    max_frames = config.model.max_audio_tokens * config.model.audio_downsample

    def dataset(split: str, audio_repeat: int = 1) -> EmotionDataset:
        return EmotionDataset(load_split(features, split), by_split[split], targets, max_frames, audio_repeat)

    generator = torch.Generator().manual_seed(config.train.seed)
    t = config.train
    train_set = dataset(config.data.train_split, t.audio_oversample)
    dev_set = dataset(config.data.dev_split)
    sampler = None
    if context.enabled:  # a shuffle fixed by (seed, epoch) dealt over the ranks, padded to as many steps each
        sampler = DistributedSampler(train_set, context.world_size, context.rank, seed=t.seed)
    train = DataLoader(
        train_set,
        t.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        collate_fn=collate,
        generator=generator,
        num_workers=t.num_workers,
        drop_last=False,
    )
    dev_share = Subset(dev_set, range(context.rank, len(dev_set), context.world_size))
    dev = DataLoader(dev_share, 64, collate_fn=collate, num_workers=t.num_workers)
    return Loaders(train, dev, targets)


def class_weights(dataset: EmotionDataset, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1 over the classes present."""
    counts = torch.bincount(
        torch.tensor(
            [dataset.targets.class_index(u) for u in dataset.utterances if u.label in dataset.targets.labels]
        ),
        minlength=num_classes,
    ).float()
    weights = torch.where(
        counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts)
    )
    return weights / weights[counts > 0].mean()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


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
    model = build_model(config, audio_dim, text_dim, targets, encoders).to(device)
    m = config.model
    # The masked autoencoder rebuilds one hidden state (or the mean of those stacked) per frame and token.
    audio_target = audio_dim // stacked_layers(encoders["audio"])
    text_target = text_dim // stacked_layers(encoders["text"])
    heads = PretrainingHeads(
        m.width, audio_target, text_target, m.audio_downsample, m.contrastive_dim, config.loss.temperature
    ).to(device)
    use_weights = config.loss.class_weighted and task != "dimensional"
    weights = class_weights(loaders.train.dataset, len(targets.labels)) if use_weights else None
    supervised = SupervisedLoss(weights, use_classes=task != "dimensional", use_dims=task != "categorical")
    objective = Objective(config.loss, m.views, supervised).to(device)
    optimizer = make_optimizer(config, model, heads)
    meta = make_meta(config, model, audio_dim, text_dim, targets, features, encoders)
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


def make_optimizer(config: RunConfig, model: MAMER, heads: nn.Module) -> torch.optim.AdamW:
    """AdamW over the model and the training-only heads; the learned layer weights, if any, in a group of
    their own at `train.layer_mix_lr` without weight decay. Each group's `lr_scale` is its rate over `lr`."""
    t = config.train
    mix = [m.logits for m in model.modules() if isinstance(m, LayerMix)]
    rest = [p for p in [*model.parameters(), *heads.parameters()] if all(p is not m for m in mix)]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if mix:
        groups.append({"params": mix, "lr_scale": t.layer_mix_lr / t.lr, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)


def save_last(s: Session, run_dir: Path) -> None:
    """The state after an epoch, for --resume on any number of processes: rank 0 writes it, with the random
    streams of every rank (gathered), while the others wait."""
    streams = distributed.all_gather_object((torch.get_rng_state(), s.mask_rng.get_state()))
    if s.context.is_main:
        save_training_state(run_dir / LAST_DIR, s.model, s.heads, {
            **s.state, "best_epoch": s.meta.epoch, "optimizer": s.optimizer.state_dict(),
            "rng": [rng for rng, _ in streams], "mask_rng": [mask for _, mask in streams],
            "shuffle_rng": s.loaders.train.generator.get_state(), "world_size": s.context.world_size,
        })  # fmt: skip
    distributed.barrier()


def resume_last(s: Session, run_dir: Path) -> None:
    """Continue from `last/`, whatever number of processes wrote it.

    Weights, optimizer, counters and the learning-rate schedule (a function of the epoch) carry over exactly.
    Rank r takes the random streams rank r saved; a rank the saved run did not have keeps fresh ones. The
    train order of a resumed epoch is the one an uninterrupted run would draw with the same number of
    processes (a 1-process run: its saved shuffle generator; torchrun: the seed and epoch); with another
    number of processes it is another, equally random, order.
    """
    saved = load_training_state(run_dir / LAST_DIR, s.model, s.heads)
    s.optimizer.load_state_dict(saved["optimizer"])
    s.loaders.train.generator.set_state(saved["shuffle_rng"])
    if s.context.rank < len(saved["rng"]):
        torch.set_rng_state(saved["rng"][s.context.rank])
        s.mask_rng.set_state(saved["mask_rng"][s.context.rank])
    s.meta.epoch, s.meta.dev_score = saved["best_epoch"], saved["best"]
    s.state = {k: saved[k] for k in s.state}
    log.info("resumed %s after epoch %d (saved by %d process(es), now %d)", run_dir, s.state["epoch"],
             saved["world_size"], s.context.world_size)  # fmt: skip


def steps_per_epoch(s: Session) -> int:
    """Optimizer steps in one epoch of this rank's loader."""
    return math.ceil(len(s.loaders.train) / s.config.train.grad_accum_steps)


def learning_rate(s: Session, step: int) -> float:
    """AdamW's rate at optimizer step `step` (from 0): warm-up then cosine over the whole run."""
    t = s.config.train
    return t.lr * warmup_cosine(step, t.warmup_steps, t.epochs * steps_per_epoch(s))


def accumulation_groups(loader: Iterable[Batch], size: int) -> Iterator[list[Batch]]:
    """The loader's batches in lists of `size` (the last one may be shorter): one optimizer step each."""
    group: list[Batch] = []
    for batch in loader:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def optimizer_step(s: Session, batches: list[Batch], step: int) -> dict[str, torch.Tensor]:
    """One AdamW update on the mean loss of `batches`; returns the loss terms of the last one.

    Under DDP the gradients are averaged over the ranks once, on the last batch's backward (`no_sync` before).
    """
    for group in s.optimizer.param_groups:
        group["lr"] = learning_rate(s, step) * group.get("lr_scale", 1.0)  # none in states saved before it
    s.optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(batches):
        accumulate = isinstance(s.trainee, DistributedDataParallel) and i < len(batches) - 1
        with s.trainee.no_sync() if accumulate else contextlib.nullcontext():
            with autocast(s.device, s.config.train.precision):
                terms = s.trainee(batch.to(s.device), s.mask_rng)
            (terms["total"] / len(batches)).backward()
    torch.nn.utils.clip_grad_norm_(s.params, s.config.train.grad_clip)
    s.optimizer.step()
    return terms


def train_epoch(s: Session, writer: SummaryWriter | None, bar: tqdm) -> None:
    s.trainee.train()
    if isinstance(s.loaders.train.sampler, DistributedSampler):
        s.loaders.train.sampler.set_epoch(s.state["epoch"])  # the same shuffle on every rank, new each epoch
    step = s.state["epoch"] * steps_per_epoch(s)
    for batches in accumulation_groups(s.loaders.train, s.config.train.grad_accum_steps):
        terms = optimizer_step(s, batches, step)
        step += 1
        if writer is not None:
            for name, value in terms.items():
                writer.add_scalar(f"train/{name}", value.item(), step)
        bar.update(len(batches))
        bar.set_postfix(loss=f"{terms['total'].item():.3f}", best=f"{s.state['best']:.3f}")
    s.state["epoch"] += 1


def dev_results(s: Session) -> dict[str, dict[str, float]]:
    """Metrics per view over every dev row: each rank predicts its share, and every rank scores them all."""
    results = {}
    for view in evaluable_views(s.config.model.views):
        shares = distributed.all_gather_object(predict_view(s.model, s.loaders.dev, view, s.device))
        keys = {key for share in shares for key in share}
        rows = {key: np.concatenate([share[key] for share in shares if key in share]) for key in keys}
        results[view], _ = score(rows, s.config.data.task, s.loaders.targets)
    return results


def dev_score(s: Session, writer: SummaryWriter | None) -> float:
    """Mean over the trained views of the task's main metric on the dev split (logged per view). A view with
    no dev rows (audio on a text-only corpus) is left out rather than counted as 0."""
    task, epoch = s.config.data.task, s.state["epoch"]
    results = dev_results(s)
    scores = [main_score(results[v], task) for v in s.config.model.views if results[v]]
    value = float(np.mean(scores)) if scores else 0.0
    if writer is not None:
        for view, metrics in results.items():
            for name, number in metrics.items():
                writer.add_scalar(f"dev/{view}/{name}", number, epoch)
        writer.add_scalar("dev/score", value, epoch)
    return value


def end_epoch(s: Session, run_dir: Path, dev: float) -> None:
    """Early-stopping bookkeeping; the best model and the resumable state are saved (by rank 0)."""
    if dev > s.state["best"]:
        s.state["best"], s.state["bad_epochs"] = dev, 0
        s.meta.epoch, s.meta.dev_score = s.state["epoch"], dev
        if s.context.is_main:
            save_model(run_dir, s.model, s.meta)
    else:
        s.state["bad_epochs"] += 1
    save_last(s, run_dir)


def train(config: RunConfig, resume: bool = False, features: Path | None = None) -> Path:
    """Train one model as configured; returns the run directory holding the best checkpoint.

    Under torchrun every rank calls this (see the module docstring), and the feature cache is extracted by all
    ranks together, each its share.
    """
    config = copy.deepcopy(config)  # resolved values (e.g. audio_downsample) are filled in below
    context = distributed.setup(None if resolve_device(config.train.device).type == "cuda" else "gloo")
    seed_everything(config.train.seed)
    run_dir = Path(config.run_dir)
    s = start_session(config, features or prepare_features(config, config.train.progress), context)
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    if resume:
        resume_last(s, run_dir)
    batches, t = len(s.loaders.train), config.train
    writer = SummaryWriter(str(run_dir / "tensorboard")) if context.is_main else None
    bar = tqdm(total=t.epochs * batches, initial=s.state["epoch"] * batches, desc=config.name, unit="batch",
               disable=not (t.progress and context.is_main))  # fmt: skip
    started = time.time()
    while s.state["epoch"] < t.epochs and s.state["bad_epochs"] < t.patience:
        train_epoch(s, writer, bar)
        end_epoch(s, run_dir, dev_score(s, writer))
    bar.close()
    if writer is not None:
        writer.close()
    log.info("%s: best dev score %.4f at epoch %d (%.0f s)", config.name, s.state["best"], s.meta.epoch,
             time.time() - started)  # fmt: skip
    return run_dir
