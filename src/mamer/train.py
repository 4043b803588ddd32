"""The training loop: features from the cache, AdamW with warm-up, dev-based early stopping, checkpoints."""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

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
from mamer.data.dataset import EmotionDataset, Targets, collate
from mamer.data.features import extract_manifest, load_spec, load_split
from mamer.data.manifest import read_manifest, splits
from mamer.evaluate import evaluable_views, evaluate_views, main_score
from mamer.losses import SupervisedLoss
from mamer.model.heads import PretrainingHeads
from mamer.objective import Objective

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
        config.data.audio_encoder,
        config.data.text_encoder,
        progress=progress,
    )


@dataclass
class Loaders:
    train: DataLoader
    dev: DataLoader
    targets: Targets


def make_loaders(config: RunConfig, features: Path) -> Loaders:
    utterances, _ = read_manifest(Path(config.data.manifest))
    by_split = splits(utterances)
    for name in (config.data.train_split, config.data.dev_split):
        if name not in by_split:
            raise ValueError(f"split {name!r} not found in {config.data.manifest}; it has {sorted(by_split)}")
    targets = Targets.fit(by_split[config.data.train_split], config.data.labels)
    max_frames = config.model.max_audio_tokens * config.model.audio_downsample

    def dataset(split: str) -> EmotionDataset:
        return EmotionDataset(load_split(features, split), by_split[split], targets, max_frames)

    generator = torch.Generator().manual_seed(config.train.seed)
    t = config.train
    train = DataLoader(
        dataset(config.data.train_split),
        t.batch_size,
        shuffle=True,
        collate_fn=collate,
        generator=generator,
        num_workers=t.num_workers,
        drop_last=False,
    )
    dev = DataLoader(dataset(config.data.dev_split), 64, collate_fn=collate, num_workers=t.num_workers)
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


@dataclass
class Session:
    """Everything one training run updates: the model, its training-only heads, optimizer and counters."""

    config: RunConfig
    loaders: Loaders
    model: torch.nn.Module
    heads: PretrainingHeads
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    meta: ModelMeta
    device: torch.device
    mask_rng: torch.Generator
    state: dict

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters()) + list(self.heads.parameters())


def start_session(config: RunConfig, features: Path) -> Session:
    """Build model, heads, objective and optimizer for a config whose features are cached in `features`."""
    spec = load_spec(features)
    if config.model.audio_downsample == 0:
        config.model.audio_downsample = max(1, round(spec["frame_rate"] / AUDIO_TOKENS_PER_SECOND))
    loaders = make_loaders(config, features)
    targets, task = loaders.targets, config.data.task
    device = resolve_device(config.train.device)
    audio_dim, text_dim = spec["audio_dim"], spec["text_dim"]
    model = build_model(config, audio_dim, text_dim, targets).to(device)
    m = config.model
    heads = PretrainingHeads(
        m.width, audio_dim, text_dim, m.audio_downsample, m.contrastive_dim, config.loss.temperature
    ).to(device)
    use_weights = config.loss.class_weighted and task != "dimensional"
    weights = class_weights(loaders.train.dataset, len(targets.labels)) if use_weights else None
    supervised = SupervisedLoss(weights, use_classes=task != "dimensional", use_dims=task != "categorical")
    objective = Objective(config.loss, m.views, supervised).to(device)
    params = list(model.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.train.lr, weight_decay=config.train.weight_decay)
    total_steps = config.train.epochs * len(loaders.train)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, config.train.warmup_steps, total_steps)
    )
    encoders = {"audio": spec["audio_encoder"], "text": spec["text_encoder"]}
    meta = make_meta(config, model, audio_dim, text_dim, targets, features, encoders)
    return Session(
        config, loaders, model, heads, objective, optimizer, scheduler, meta, device,
        mask_rng=torch.Generator().manual_seed(config.train.seed),
        state={"epoch": 0, "best": -math.inf, "bad_epochs": 0},
    )  # fmt: skip


def save_last(s: Session, run_dir: Path) -> None:
    save_training_state(run_dir / LAST_DIR, s.model, s.heads, {
        **s.state, "best_epoch": s.meta.epoch, "optimizer": s.optimizer.state_dict(),
        "scheduler": s.scheduler.state_dict(), "rng": torch.get_rng_state(),
        "shuffle_rng": s.loaders.train.generator.get_state(), "mask_rng": s.mask_rng.get_state(),
    })  # fmt: skip


def resume_last(s: Session, run_dir: Path) -> None:
    saved = load_training_state(run_dir / LAST_DIR, s.model, s.heads)
    s.optimizer.load_state_dict(saved["optimizer"])
    s.scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])
    s.loaders.train.generator.set_state(saved["shuffle_rng"])
    s.mask_rng.set_state(saved["mask_rng"])
    s.meta.epoch, s.meta.dev_score = saved["best_epoch"], saved["best"]
    s.state = {k: saved[k] for k in s.state}
    log.info("resumed %s after epoch %d", run_dir, s.state["epoch"])


def train_epoch(s: Session, writer: SummaryWriter, bar: tqdm) -> None:
    s.model.train()
    s.heads.train()
    step = s.state["epoch"] * len(s.loaders.train)
    for batch in s.loaders.train:
        with autocast(s.device, s.config.train.precision):
            terms = s.objective(s.model, s.heads, batch.to(s.device), s.mask_rng)
        s.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(s.params, s.config.train.grad_clip)
        s.optimizer.step()
        s.scheduler.step()
        step += 1
        for name, value in terms.items():
            writer.add_scalar(f"train/{name}", value.item(), step)
        bar.update(1)
        bar.set_postfix(loss=f"{terms['total'].item():.3f}", best=f"{s.state['best']:.3f}")
    s.state["epoch"] += 1


def dev_score(s: Session, writer: SummaryWriter) -> float:
    """Mean over the trained views of the task's main metric on the dev split (logged per view)."""
    task, epoch = s.config.data.task, s.state["epoch"]
    views = evaluable_views(s.config.model.views)
    results, _, _ = evaluate_views(s.model, s.loaders.dev, views, task, s.loaders.targets, s.device)
    for view, metrics in results.items():
        for name, value in metrics.items():
            writer.add_scalar(f"dev/{view}/{name}", value, epoch)
    score = float(np.mean([main_score(results[v], task) for v in s.config.model.views]))
    writer.add_scalar("dev/score", score, epoch)
    return score


def train(config: RunConfig, resume: bool = False, features: Path | None = None) -> Path:
    """Train one model as configured; returns the run directory holding the best checkpoint."""
    config = copy.deepcopy(config)  # resolved values (e.g. audio_downsample) are filled in below
    seed_everything(config.train.seed)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    s = start_session(config, features or prepare_features(config, config.train.progress))
    save_config(config, run_dir / "config.yaml")
    if resume:
        resume_last(s, run_dir)
    steps_per_epoch, t = len(s.loaders.train), config.train
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    bar = tqdm(total=t.epochs * steps_per_epoch, initial=s.state["epoch"] * steps_per_epoch, desc=config.name,
               unit="step", disable=not t.progress)  # fmt: skip
    started = time.time()
    while s.state["epoch"] < t.epochs and s.state["bad_epochs"] < t.patience:
        train_epoch(s, writer, bar)
        score = dev_score(s, writer)
        if score > s.state["best"]:
            s.state["best"], s.state["bad_epochs"] = score, 0
            s.meta.epoch, s.meta.dev_score = s.state["epoch"], score
            save_model(run_dir, s.model, s.meta)
        else:
            s.state["bad_epochs"] += 1
        save_last(s, run_dir)
    bar.close()
    writer.close()
    log.info("%s: best dev score %.4f at epoch %d (%.0f s)", config.name, s.state["best"], s.meta.epoch,
             time.time() - started)  # fmt: skip
    return run_dir
