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
    build_model,
    load_training_state,
    make_meta,
    save_model,
    save_training_state,
)
from mamer.config import RunConfig, save_config
from mamer.data.dataset import EmotionDataset, Targets, collate
from mamer.data.features import extract_features, load_spec, load_split
from mamer.data.manifest import read_manifest, splits
from mamer.encoders.registry import default_encoder_names, load_audio_encoder, load_text_encoder
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


def resolve_encoder_names(config: RunConfig) -> tuple[str, str]:
    """'auto' -> the offline pretrained encoders when installed, else the no-download fallbacks (said loudly)."""
    audio, text, note = default_encoder_names()
    if note and "auto" in (config.data.audio_encoder, config.data.text_encoder):
        log.warning(note)
    return (
        audio if config.data.audio_encoder == "auto" else config.data.audio_encoder,
        text if config.data.text_encoder == "auto" else config.data.text_encoder,
    )


def prepare_features(config: RunConfig, progress: bool = True) -> Path:
    """Extract (or reuse) the cached features of every split in the manifest; returns the cache folder."""
    utterances, problems = read_manifest(Path(config.data.manifest))
    for problem in problems:
        log.warning(problem)
    audio_name, text_name = resolve_encoder_names(config)
    root = Path(config.data.features or Path(config.data.manifest).parent / "features")
    return extract_features(
        splits(utterances),
        load_audio_encoder(audio_name),
        load_text_encoder(text_name),
        root,
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


def train(config: RunConfig, resume: bool = False, features: Path | None = None) -> Path:
    """Train one model as configured; returns the run directory holding the best checkpoint."""
    config = copy.deepcopy(config)  # resolved values (e.g. audio_downsample) are filled in below
    seed_everything(config.train.seed)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    features = features or prepare_features(config, config.train.progress)
    spec = load_spec(features)
    if config.model.audio_downsample == 0:
        config.model.audio_downsample = max(1, round(spec["frame_rate"] / AUDIO_TOKENS_PER_SECOND))
    save_config(config, run_dir / "config.yaml")
    loaders = make_loaders(config, features)
    targets, task = loaders.targets, config.data.task
    device = resolve_device(config.train.device)

    model = build_model(config, spec["audio_dim"], spec["text_dim"], targets).to(device)
    heads = PretrainingHeads(
        config.model.width,
        spec["audio_dim"],
        spec["text_dim"],
        config.model.audio_downsample,
        config.model.contrastive_dim,
        config.loss.temperature,
    ).to(device)
    weights = (
        class_weights(loaders.train.dataset, len(targets.labels))
        if (config.loss.class_weighted and task != "dimensional")
        else None
    )
    supervised = SupervisedLoss(weights, use_classes=task != "dimensional", use_dims=task != "categorical")
    objective = Objective(config.loss, config.model.views, supervised).to(device)
    params = list(model.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.train.lr, weight_decay=config.train.weight_decay)
    total_steps = config.train.epochs * len(loaders.train)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, config.train.warmup_steps, total_steps)
    )
    meta = make_meta(
        config,
        model,
        spec["audio_dim"],
        spec["text_dim"],
        targets,
        features,
        {"audio": spec["audio_encoder"], "text": spec["text_encoder"]},
    )
    state = {"epoch": 0, "best": -math.inf, "bad_epochs": 0}
    mask_rng = torch.Generator().manual_seed(config.train.seed)
    if resume:
        saved = load_training_state(run_dir / LAST_DIR, model, heads)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
        loaders.train.generator.set_state(saved["shuffle_rng"])
        mask_rng.set_state(saved["mask_rng"])
        meta.epoch, meta.dev_score = saved["best_epoch"], saved["best"]
        state = {k: saved[k] for k in state}
        log.info("resumed %s after epoch %d", run_dir, state["epoch"])
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    views = evaluable_views(config.model.views)
    bar = tqdm(
        total=total_steps,
        initial=state["epoch"] * len(loaders.train),
        desc=config.name,
        unit="step",
        disable=not config.train.progress,
    )
    step = state["epoch"] * len(loaders.train)
    started = time.time()
    while state["epoch"] < config.train.epochs and state["bad_epochs"] < config.train.patience:
        model.train()
        heads.train()
        for batch in loaders.train:
            with autocast(device, config.train.precision):
                terms = objective(model, heads, batch.to(device), mask_rng)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            torch.nn.utils.clip_grad_norm_(params, config.train.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            for name, value in terms.items():
                writer.add_scalar(f"train/{name}", value.item(), step)
            bar.update(1)
            bar.set_postfix(loss=f"{terms['total'].item():.3f}", best=f"{state['best']:.3f}")
        state["epoch"] += 1
        results, _, _ = evaluate_views(model, loaders.dev, views, task, targets, device)
        dev = float(np.mean([main_score(results[v], task) for v in config.model.views]))
        for view, metrics in results.items():
            for name, value in metrics.items():
                writer.add_scalar(f"dev/{view}/{name}", value, state["epoch"])
        writer.add_scalar("dev/score", dev, state["epoch"])
        if dev > state["best"]:
            state["best"], state["bad_epochs"] = dev, 0
            meta.epoch, meta.dev_score = state["epoch"], dev
            save_model(run_dir, model, meta)
        else:
            state["bad_epochs"] += 1
        save_training_state(
            run_dir / LAST_DIR,
            model,
            heads,
            {
                **state,
                "best_epoch": meta.epoch,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "shuffle_rng": loaders.train.generator.get_state(),
                "mask_rng": mask_rng.get_state(),
            },
        )
    bar.close()
    writer.close()
    log.info(
        "%s: best dev score %.4f at epoch %d (%.0f s)",
        config.name,
        state["best"],
        meta.epoch,
        time.time() - started,
    )
    return run_dir
