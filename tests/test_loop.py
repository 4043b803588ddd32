"""The training loop's pieces: the learning-rate schedule, the non-finite loss guard, the logged loss terms."""

import math
from pathlib import Path

import pytest
import torch

from mamer.data.dataset import collate
from mamer.data.extract import prepare_features
from mamer.workflows.training.loop import (
    NonFiniteLoss,
    learning_rate,
    optimizer_step,
    train,
    warmup_cosine,
)
from mamer.workflows.training.session import seed_everything, start_session

# deterministic steps: no dropout, no masks, so one batch's loss terms can be recomputed outside the step
STILL = ["model.dropout=0", "loss.mask_ratio=0", "train.progress=false"]


@pytest.fixture(scope="module")
def features(tiny_config, tmp_path_factory) -> Path:
    return prepare_features(tiny_config(tmp_path_factory.mktemp("loop")), progress=False)


def session(tiny_config, features: Path, tmp_path: Path, *extra: str):
    seed_everything(0)
    config = tiny_config(tmp_path, "quickstart", f"data.features={features.parent}", *STILL, *extra)
    return start_session(config, features)


@pytest.mark.parametrize(
    "step, factor",
    [(0, 0.25), (1, 0.5), (3, 1.0), (4, 1.0), (8, 0.5), (6, 0.5 + 0.5 * math.cos(math.pi / 4)), (12, 0.0),
     (40, 0.0)],
)  # fmt: skip
def test_warmup_cosine_rises_linearly_then_falls_as_half_a_cosine(step, factor):
    """Warm-up of 4 steps (1/4, 2/4, 3/4, 1), then cosine from 1 at step 4 to 0 at step 12, and 0 after it."""
    assert warmup_cosine(step, warmup=4, total=12) == pytest.approx(factor, abs=1e-12)


def test_warmup_cosine_without_warm_up_starts_at_the_full_rate():
    assert warmup_cosine(0, warmup=0, total=10) == 1.0
    assert warmup_cosine(5, warmup=0, total=10) == pytest.approx(0.5)


def test_a_nan_loss_stops_training_before_any_weight_changes(tiny_config, features, tmp_path):
    s = session(tiny_config, features, tmp_path)
    with torch.no_grad():
        s.model.head.net[-1].bias[0] = float("nan")  # every logit row becomes NaN through the softmax
    before = {name: p.detach().clone() for name, p in s.model.named_parameters()}
    batch = collate([s.loaders.train.dataset[i] for i in range(4)])
    with pytest.raises(
        NonFiniteLoss, match=r"not finite at optimizer step 7 \(epoch 0\): supervised/"
    ) as err:
        optimizer_step(s, [batch], step=7)
    assert batch.ids[0] in str(err.value) and "train.lr" in str(err.value)
    after = dict(s.model.named_parameters())
    for name, value in before.items():
        assert torch.equal(value, after[name]) or torch.isnan(value).any(), name  # not one update


def test_training_that_diverges_stops_with_a_named_error(tiny_config, features, tmp_path):
    """A learning rate far too high sends the weights to infinity: `train` stops, saying so, instead of
    writing NaN checkpoints; the CLI shows the message on one line (NonFiniteLoss is a ValueError)."""
    config = tiny_config(tmp_path, "quickstart", f"data.features={features.parent}", "train.lr=1.0e+30",
                         "train.warmup_steps=1", "train.grad_clip=1.0e+30", "train.epochs=3")  # fmt: skip
    with pytest.raises(NonFiniteLoss, match="the training loss is not finite") as err:
        train(config, features=features)
    assert isinstance(err.value, ValueError)


def test_the_logged_loss_terms_are_their_mean_over_the_accumulated_batches(tiny_config, features, tmp_path):
    s = session(tiny_config, features, tmp_path, "train.grad_accum_steps=2")
    items = [s.loaders.train.dataset[i] for i in range(8)]
    batches = [collate(items[:4]), collate(items[4:])]
    with torch.no_grad():  # the same weights, the same deterministic forward as the step's
        each = [s.trainee(b, s.mask_rng) for b in batches]
    logged = optimizer_step(s, batches, step=0)
    assert set(logged) == set(each[0]) | set(each[1])
    for name, value in logged.items():
        values = [float(terms[name]) for terms in each if name in terms]
        assert value == pytest.approx(sum(values) / len(values), rel=1e-5), name
    assert logged["total"] != pytest.approx(float(each[1]["total"]), rel=1e-3)  # not the last batch's


def test_fine_tuning_by_default_trains_the_copied_weights_at_the_full_rate(
    train_tiny, tiny_config, features, tmp_path
):
    """`mamer train ... train.init_from=M` with no `train.init_lr_scale`: the copied weights learn at `train.lr`, the
    setting that beat a tenth of it at every EmoDB data size (docs/mamer-base.md, fine-tuning)."""
    source = train_tiny(tmp_path / "source")
    s = session(tiny_config, features, tmp_path, f"train.init_from={source}")
    assert s.config.train.init_lr_scale == 1.0
    assert {group["lr_scale"] for group in s.optimizer.param_groups} == {1.0}
    optimizer_step(s, [collate([s.loaders.train.dataset[i] for i in range(4)])], step=60)
    rates = {group["lr"] for group in s.optimizer.param_groups}
    assert rates == {learning_rate(s, 60)}  # one rate for every weight, copied or new
