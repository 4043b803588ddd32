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
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from mamer import distributed
from mamer.checkpoint import LAST_DIR, MODEL_FILE, save_model
from mamer.config import RunConfig, save_config
from mamer.data.dataset import Batch
from mamer.data.extract import prepare_features
from mamer.data.sampling import ModalityBatches
from mamer.device import autocast, resolve_device
from mamer.scoring import corpus_parts, evaluable_views, main_score, predict_view, score
from mamer.workflows.training.init_from import adopt_source, load_source
from mamer.workflows.training.resume import resume_last, save_last
from mamer.workflows.training.session import Session, seed_everything, start_session

log = logging.getLogger(__name__)


class NonFiniteLoss(ValueError):
    """Training stopped before an update: a loss term came out NaN or infinite (every later step would be too)."""


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """The learning rate's factor at optimizer step `step` (from 0): linear from 1/`warmup` up to 1 over the
    first `warmup` steps, then half a cosine from 1 down to 0 at step `total`, and 0 after it."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


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


def optimizer_step(s: Session, batches: list[Batch], step: int) -> dict[str, float]:
    """One AdamW update on the mean loss of `batches`; returns each loss term's mean over the batches that have
    it (a view without rows in a batch has no term there). NonFiniteLoss, before any weight changes, when a
    batch's loss is NaN or infinite.

    Under DDP the gradients are averaged over the ranks once, on the last batch's backward (`no_sync` before).
    """
    for group in s.optimizer.param_groups:
        group["lr"] = learning_rate(s, step) * group.get("lr_scale", 1.0)  # none in states saved before it
    s.optimizer.zero_grad(set_to_none=True)
    sums: dict[str, list[torch.Tensor]] = {}
    for i, batch in enumerate(batches):
        accumulate = isinstance(s.trainee, DistributedDataParallel) and i < len(batches) - 1
        with s.trainee.no_sync() if accumulate else contextlib.nullcontext():
            with autocast(s.device, s.config.train.precision):
                terms = s.trainee(batch.to(s.device), s.mask_rng)
            check_finite(s, terms, batch, step)
            (terms["total"] / len(batches)).backward()
        for name, value in terms.items():
            sums.setdefault(name, []).append(value.detach().float())
    torch.nn.utils.clip_grad_norm_(s.params, s.config.train.grad_clip)
    s.optimizer.step()
    return {name: torch.stack(values).mean().item() for name, values in sums.items()}


def check_finite(s: Session, terms: dict[str, torch.Tensor], batch: Batch, step: int) -> None:
    """NonFiniteLoss naming the terms, the step and the batch's rows when the batch's total loss is NaN or
    infinite: a gradient step on it would turn every weight into NaN (MAE's engine_pretrain stops so too)."""
    if math.isfinite(terms["total"].item()):
        return
    bad = {name: value.item() for name, value in terms.items() if not math.isfinite(value.item())}
    rows = ", ".join(batch.ids[:5]) + (f" and {len(batch) - 5} more" if len(batch) > 5 else "")
    raise NonFiniteLoss(
        f"{s.config.name}: the training loss is not finite at optimizer step {step} (epoch {s.state['epoch']}): "
        f"{', '.join(f'{k} = {v}' for k, v in bad.items())}; batch rows {rows}. Training stopped before this "
        f"step changed any weight ({s.config.run_dir} keeps what earlier epochs saved). Lower train.lr, train "
        "with train.precision=fp32, or check these rows' features"
    )


def train_epoch(s: Session, writer: SummaryWriter | None, bar: tqdm) -> None:
    s.trainee.train()
    for sampler in (s.loaders.train.sampler, s.loaders.train.batch_sampler):
        if isinstance(sampler, DistributedSampler | ModalityBatches):
            sampler.set_epoch(s.state["epoch"])  # the same shuffle on every rank, new each epoch
    step = s.state["epoch"] * steps_per_epoch(s)
    for batches in accumulation_groups(s.loaders.train, s.config.train.grad_accum_steps):
        terms = optimizer_step(s, batches, step)
        step += 1
        if writer is not None:
            for name, value in terms.items():
                writer.add_scalar(f"train/{name}", value, step)
        bar.update(len(batches))
        bar.set_postfix(loss=f"{terms['total']:.3f}", best=f"{s.state['best']:.3f}")
    s.state["epoch"] += 1


def dev_predictions(s: Session) -> dict[str, dict[str, np.ndarray]]:
    """Predictions per view over every dev row: each rank predicts its share, and every rank gets them all."""
    preds = {}
    for view in evaluable_views(s.config.model.views):
        shares = distributed.all_gather_object(predict_view(s.model, s.loaders.dev, view, s.device))
        keys = {key for share in shares for key in share}
        preds[view] = {key: np.concatenate([share[key] for share in shares if key in share]) for key in keys}
    return preds


def views_score(results: dict[str, dict[str, float]], views: list[str], task: str) -> float | None:
    """Mean over `views` of the task's main metric; a view without scores (no rows) is left out, and None
    when every one is."""
    scores = [main_score(results[v], task) for v in views if results.get(v)]
    return float(np.mean(scores)) if scores else None


def dev_score(s: Session, writer: SummaryWriter | None) -> float:
    """Mean over the trained views of the task's main metric on the dev rows (logged per view). A view with
    no dev rows (audio on a text-only corpus) is left out rather than counted as 0. With
    `train.select_by: corpus` each corpus (id prefix) is scored so on its own rows, and the mean over corpora
    is the dev score (logged per corpus too)."""
    task, epoch, views, targets = (
        s.config.data.task,
        s.state["epoch"],
        s.config.model.views,
        s.loaders.targets,
    )
    preds = dev_predictions(s)
    results = {view: score(pred, task, targets)[0] for view, pred in preds.items()}
    if s.config.train.select_by == "corpus":
        by_corpus = {
            corpus: views_score(
                {view: score(pred, task, targets)[0] for view, pred in part.items()}, views, task
            )
            for corpus, part in corpus_parts(preds).items()
        }
        by_corpus = {corpus: value for corpus, value in by_corpus.items() if value is not None}
        value = float(np.mean(list(by_corpus.values()))) if by_corpus else 0.0
    else:
        by_corpus, value = {}, views_score(results, views, task) or 0.0
    if writer is not None:
        for view, metrics in results.items():
            for name, number in metrics.items():
                writer.add_scalar(f"dev/{view}/{name}", number, epoch)
        for corpus, number in by_corpus.items():
            writer.add_scalar(f"dev/corpus/{corpus or 'none'}", number, epoch)
        writer.add_scalar("dev/score", value, epoch)
    if s.context.is_main:  # the progress bar shows the best score; without it, a line an epoch
        log.log(logging.DEBUG if s.config.train.progress else logging.INFO, "%s: epoch %d, dev score %.4f%s",
                s.config.name, epoch, value, "".join(f", {c or 'none'} {v:.4f}" for c, v in by_corpus.items()))  # fmt: skip
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


def train(
    config: RunConfig, resume: bool = False, features: Path | None = None, overwrite: bool = False
) -> Path:
    """Train one model as configured; returns the run directory holding the best checkpoint.

    Under torchrun every rank calls this (see the module docstring), and the feature cache is extracted by all
    ranks together, each its share. A run directory that already holds a trained run is refused unless
    `resume` (continue it) or `overwrite` (train it again, replacing its weights).
    """
    refuse_trained_run(Path(config.run_dir), resume or overwrite)
    config = copy.deepcopy(config)  # resolved values (e.g. audio_downsample) are filled in below
    if config.train.init_from:  # the source's architecture and encoders, before its features are extracted
        config = adopt_source(config, load_source(config.train.init_from)[1])
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


def refuse_trained_run(run_dir: Path, allowed: bool) -> None:
    """ValueError when `run_dir` holds a trained run (weights or a last epoch) and replacing it is not allowed."""
    held = [name for name in (MODEL_FILE, LAST_DIR) if (run_dir / name).exists()]
    if held and not allowed:
        raise ValueError(
            f"{run_dir} already holds a trained run ({', '.join(held)}); it is left as it is: add --resume to "
            "continue it, --overwrite to train it again from scratch, or give another run_dir="
        )
