"""One training step's forward: masking, the three views through the shared model, and the total loss.

total = sum_view w_view * L_S(view) + lambda_C * L_C + lambda_MAE * (L_MAE_audio + L_MAE_text)

The "audio+text" pass feeds every sample with whatever it has, so an audio-only row still gets its audio
rebuilt; its supervised loss counts only rows that have both modalities. Unimodal views count the rows that
have their modality; the contrastive loss pairs rows that have both.

Masks: with `loss.mask_passes: all` one set of [MASK]ed inputs feeds every pass (the supervised views and the
reconstruction); with `mae` the supervised passes see the inputs unmasked and an extra masked audio+text pass
feeds the reconstruction alone.
"""

from __future__ import annotations

import torch
from torch import nn

from mamer.config import LossConfig
from mamer.data.dataset import Batch
from mamer.forward import run_view, view_rows
from mamer.losses import ContrastiveLoss, ReconstructionLoss, SupervisedLoss, utterance_keys
from mamer.modality import VIEWS
from mamer.model.heads import PretrainingHeads
from mamer.model.mamer import MAMER, mean_pool
from mamer.model.masking import random_token_mask


class Objective(nn.Module):
    """L_S over the trained views + lambda_C L_C + lambda_MAE L_MAE, as configured."""

    def __init__(self, config: LossConfig, views: list[str], supervised: SupervisedLoss):
        super().__init__()
        self.config, self.views = config, list(views)
        self.supervised = supervised
        self.contrastive = ContrastiveLoss()
        self.reconstruction = ReconstructionLoss(config.mae_kind)

    def _masks(self, model: MAMER, batch: Batch, generator: torch.Generator | None):
        ratio = self.config.mask_ratio
        audio_masked = text_masked = None
        if batch.audio is not None:
            audio_masked = random_token_mask(model.audio_token_valid(batch.audio_mask), ratio, generator)
        if batch.text is not None:
            text_masked = random_token_mask(batch.text_mask, ratio, generator)
        return audio_masked, text_masked

    def forward(
        self, model: MAMER, heads: PretrainingHeads, batch: Batch, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Returns every loss term by name and their weighted sum under "total"."""
        cfg = self.config
        audio_masked, text_masked = self._masks(model, batch, generator)
        needed = set(self.views)
        if cfg.mae > 0:
            needed.add("audio+text")
        if cfg.contrastive > 0:
            needed.update(("audio", "text"))
        mae_only = cfg.mask_passes == "mae"
        shown = (None, None) if mae_only else (audio_masked, text_masked)  # what the supervised passes see
        outputs = {v: run_view(model, batch, v, *shown) for v in VIEWS if v in needed}
        rebuilt_from = outputs.get("audio+text")
        if cfg.mae > 0 and mae_only:
            rebuilt_from = run_view(model, batch, "audio+text", audio_masked, text_masked)
        terms: dict[str, torch.Tensor] = {}
        total = batch.labels.new_zeros((), dtype=torch.float32)
        for view in self.views:
            rows, out = view_rows(batch, view), outputs[view]
            if out is None or not rows.any():
                continue
            logits = None if out.logits is None else out.logits[rows]
            dims = None if out.dims is None else out.dims[rows]
            weights = None if batch.weights is None else batch.weights[rows]
            terms[f"supervised/{view}"] = self.supervised(
                logits, dims, batch.labels[rows], batch.dims[rows], weights
            )
            total = total + cfg.view_weights.get(view, 1.0) * terms[f"supervised/{view}"]
        if cfg.contrastive > 0:
            terms["contrastive"] = self._contrastive(heads, batch, outputs)
            total = total + cfg.contrastive * terms["contrastive"]
        if cfg.mae > 0:
            terms["mae/audio"], terms["mae/text"] = self._reconstruction(
                model, heads, batch, rebuilt_from, audio_masked, text_masked
            )
            total = total + cfg.mae * (terms["mae/audio"] + terms["mae/text"])
        terms["total"] = total
        return terms

    def _contrastive(self, heads: PretrainingHeads, batch: Batch, outputs: dict) -> torch.Tensor:
        paired = view_rows(batch, "audio+text")
        audio_out, text_out = outputs["audio"], outputs["text"]
        if audio_out is None or text_out is None:  # no pairs here; under torchrun it still joins the gather
            none = heads.logit_scale.new_zeros((0, heads.text_contrastive[-1].out_features))
            return self.contrastive(none, none, heads.logit_scale)
        if self.config.contrastive_pooling == "cls":
            audio, text = heads.audio_contrastive(audio_out.cls), heads.text_contrastive(text_out.cls)
        else:
            audio = heads.audio_contrastive(mean_pool(audio_out.audio_hidden, audio_out.audio_tokens_valid))
            text = heads.text_contrastive(mean_pool(text_out.text_hidden, text_out.text_valid))
        keys = utterance_keys(batch.ids).to(audio.device)[paired]
        return self.contrastive(audio[paired], text[paired], heads.logit_scale, keys)

    def _reconstruction(
        self, model, heads, batch, out, audio_masked, text_masked
    ) -> tuple[torch.Tensor, torch.Tensor]:
        zero = heads.logit_scale * 0.0
        audio_loss = text_loss = zero
        if out is not None and out.audio_hidden is not None:
            k, frames = heads.audio_up.k, batch.audio.shape[1]
            pred = heads.audio_up(out.audio_hidden)[:, :frames]
            masked = audio_masked.repeat_interleave(k, dim=1)[:, :frames] & batch.audio_mask
            audio_loss = self.reconstruction(pred, model.audio_in.target(batch.audio), masked)
        if out is not None and out.text_hidden is not None:
            target = model.text_in.target(batch.text)
            text_loss = self.reconstruction(heads.text_up(out.text_hidden), target, text_masked)
        return audio_loss, text_loss
