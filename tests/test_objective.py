import math

import torch

from mamer.config import LossConfig, ModelConfig
from mamer.data.dataset import Batch
from mamer.forward import view_rows
from mamer.losses import SupervisedLoss
from mamer.model.heads import PretrainingHeads
from mamer.model.mamer import MAMER
from mamer.objective import Objective

A_DIM, T_DIM, K = 12, 10, 2


def fixed_batch(b: int = 8, has_audio=None, has_text=None) -> Batch:
    g = torch.Generator().manual_seed(0)
    has_audio = torch.ones(b, dtype=torch.bool) if has_audio is None else has_audio
    has_text = torch.ones(b, dtype=torch.bool) if has_text is None else has_text
    labels = torch.arange(b) % 3
    audio = torch.randn(b, 12, A_DIM, generator=g) + labels[:, None, None]
    text = torch.randn(b, 6, T_DIM, generator=g) - labels[:, None, None]
    return Batch(
        ids=[str(i) for i in range(b)],
        audio=audio,
        audio_mask=has_audio[:, None].expand(b, 12).clone(),
        text=text,
        text_mask=has_text[:, None].expand(b, 6).clone(),
        has_audio=has_audio,
        has_text=has_text,
        labels=labels,
        dims=torch.randn(b, 3, generator=g),
    )


def setup(loss: LossConfig, task: str = "both"):
    torch.manual_seed(0)
    config = ModelConfig(width=32, depth=2, heads=2, audio_downsample=K, dropout=0.0)
    model = MAMER(config, A_DIM, T_DIM, 3 if task != "dimensional" else 0, 3 if task != "categorical" else 0)
    heads = PretrainingHeads(32, A_DIM, T_DIM, K, 16, 0.07)
    supervised = SupervisedLoss(use_classes=task != "dimensional", use_dims=task != "categorical")
    return model, heads, Objective(loss, ["audio", "text", "audio+text"], supervised)


def test_a_training_step_reduces_every_loss_on_a_fixed_batch():
    model, heads, objective = setup(LossConfig(contrastive=1.0, mae=1.0, mask_ratio=0.3))
    batch = fixed_batch()
    params = list(model.parameters()) + list(heads.parameters())
    optimizer = torch.optim.Adam(params, lr=3e-3)

    def losses():  # the same masks every time, so only the weights change
        return objective(model, heads, batch, torch.Generator().manual_seed(1))

    before = {k: v.item() for k, v in losses().items()}
    assert set(before) == {
        "supervised/audio",
        "supervised/text",
        "supervised/audio+text",
        "contrastive",
        "mae/audio",
        "mae/text",
        "total",
    }
    for _ in range(30):
        optimizer.zero_grad()
        losses()["total"].backward()
        optimizer.step()
    after = {k: v.item() for k, v in losses().items()}
    for name in before:
        assert after[name] < before[name], (name, before[name], after[name])


def test_zero_weights_remove_parts():
    model, heads, objective = setup(LossConfig(contrastive=0.0, mae=0.0), task="categorical")
    terms = objective(model, heads, fixed_batch())
    assert "contrastive" not in terms and "mae/audio" not in terms
    expected = sum(terms[f"supervised/{v}"] for v in ("audio", "text", "audio+text"))
    assert math.isclose(terms["total"].item(), expected.item(), rel_tol=1e-6)


def test_partially_paired_rows_feed_only_their_losses():
    """Audio-only rows count for the audio view and audio MAE, text-only rows for text; pairs for everything."""
    has_audio = torch.tensor([True, True, True, True, True, False, False, False])
    has_text = torch.tensor([True, True, True, False, False, True, True, True])
    batch = fixed_batch(has_audio=has_audio, has_text=has_text)
    assert view_rows(batch, "audio+text").sum() == 3
    model, heads, objective = setup(LossConfig(contrastive=1.0, mae=1.0, mask_ratio=0.3), task="categorical")
    terms = objective(model, heads, batch, torch.Generator().manual_seed(0))
    # Change the audio of text-only rows and the text of audio-only rows: no loss may move.
    noisy = fixed_batch(has_audio=has_audio, has_text=has_text)
    noisy.audio[~has_audio] = 99.0
    noisy.text[~has_text] = -99.0
    again = objective(model, heads, noisy, torch.Generator().manual_seed(0))
    for name in terms:
        assert math.isclose(terms[name].item(), again[name].item(), rel_tol=1e-5), name


def test_contrastive_pooling_chooses_what_the_contrastive_heads_read():
    """`tokens` pools each unimodal view's output tokens; `cls` reads its [CLS] output: the two losses differ,
    and `cls` equals the InfoNCE of the heads applied to the views' [CLS] vectors."""
    from mamer.forward import run_view
    from mamer.losses import utterance_keys

    batch = fixed_batch()
    model, heads, objective = setup(LossConfig(contrastive=1.0, mae=0.0, mask_ratio=0.0), task="categorical")
    on_tokens = objective(model, heads, batch)["contrastive"]
    on_cls = Objective(LossConfig(contrastive=1.0, mae=0.0, mask_ratio=0.0, contrastive_pooling="cls"),
                       ["audio", "text", "audio+text"], objective.supervised)(model, heads, batch)["contrastive"]  # fmt: skip
    audio, text = (run_view(model, batch, view, None, None).cls for view in ("audio", "text"))
    expected = objective.contrastive(heads.audio_contrastive(audio), heads.text_contrastive(text),
                                     heads.logit_scale, utterance_keys(batch.ids))  # fmt: skip
    assert math.isclose(on_cls.item(), expected.item(), rel_tol=1e-5)
    assert not math.isclose(on_cls.item(), on_tokens.item(), rel_tol=1e-3)
