import pytest
import torch

from mamer.config import ModelConfig
from mamer.model.mamer import MAMER

AUDIO_DIM, TEXT_DIM = 12, 10


def tiny_model(**overrides) -> MAMER:
    config = ModelConfig(
        width=16,
        depth=2,
        heads=2,
        audio_downsample=3,
        max_audio_tokens=40,
        max_text_tokens=20,
        dropout=0.0,
        **overrides,
    )
    torch.manual_seed(0)
    return MAMER(config, AUDIO_DIM, TEXT_DIM, num_classes=4, num_dims=3).eval()


def inputs(b=3, ta=10, tt=6):
    audio, text = torch.randn(b, ta, AUDIO_DIM), torch.randn(b, tt, TEXT_DIM)
    audio_mask = torch.arange(ta)[None] < torch.tensor([10, 7, 1])[:b, None]
    text_mask = torch.arange(tt)[None] < torch.tensor([6, 2, 4])[:b, None]
    return audio, audio_mask, text, text_mask


@pytest.mark.parametrize("view", ["audio", "text", "audio+text"])
def test_shapes_for_every_view(view):
    audio, audio_mask, text, text_mask = inputs()
    use_audio, use_text = "audio" in view, "text" in view
    out = tiny_model()(
        audio=audio if use_audio else None,
        audio_mask=audio_mask if use_audio else None,
        text=text if use_text else None,
        text_mask=text_mask if use_text else None,
    )
    assert out.logits.shape == (3, 4) and out.dims.shape == (3, 3) and out.cls.shape == (3, 16)
    if use_audio:  # 10 frames folded by 3 -> 4 tokens; 1 valid frame -> 1 valid token
        assert out.audio_hidden.shape == (3, 4, 16)
        assert out.audio_tokens_valid.sum(1).tolist() == [4, 3, 1]
    else:
        assert out.audio_hidden is None
    assert (out.text_hidden is not None) == use_text


@pytest.mark.parametrize("pooling", ["cls", "cls+mean"])
def test_padding_never_changes_outputs(pooling):
    model = tiny_model(pooling=pooling)
    audio, audio_mask, text, text_mask = inputs()
    ref = model(audio=audio, audio_mask=audio_mask, text=text, text_mask=text_mask)
    audio2, text2 = audio.clone(), text.clone()
    audio2[~audio_mask] = 1e3
    text2[~text_mask] = -1e3
    out = model(audio=audio2, audio_mask=audio_mask, text=text2, text_mask=text_mask)
    torch.testing.assert_close(out.logits, ref.logits)


def test_mean_pooling_puts_the_mean_of_the_valid_outputs_beside_cls():
    model = tiny_model(pooling="cls+mean")
    assert model.head.net[-1].in_features == 32  # [CLS] and the mean side by side
    seen = {}
    model.transformer.register_forward_hook(
        lambda _m, _args, kwargs, hidden: seen.update(hidden=hidden, valid=~kwargs["src_key_padding_mask"]),
        with_kwargs=True,
    )
    model.head.register_forward_pre_hook(lambda _m, args: seen.update(pooled=args[0]))
    audio, audio_mask, text, text_mask = inputs()
    out = model(audio=audio, audio_mask=audio_mask, text=text, text_mask=text_mask)
    hidden, valid = seen["hidden"], seen["valid"]
    assert not valid.all()  # the batch has padding, which the mean must leave out
    mean = torch.stack([hidden[i][valid[i]].mean(0) for i in range(3)])
    torch.testing.assert_close(seen["pooled"], torch.cat([out.cls, mean], dim=-1))


def test_missing_modality_for_one_sample_never_reaches_the_transformer():
    """A sample whose audio mask is all False gives the same output as the text-only view of that sample."""
    model = tiny_model()
    audio, audio_mask, text, text_mask = inputs()
    audio_mask[1] = False
    both = model(audio=audio, audio_mask=audio_mask, text=text, text_mask=text_mask)
    audio[1] = torch.randn_like(audio[1]) * 50  # whatever sits there must not matter
    again = model(audio=audio, audio_mask=audio_mask, text=text, text_mask=text_mask)
    text_only = model(text=text[1:2], text_mask=text_mask[1:2])
    torch.testing.assert_close(again.logits[1], both.logits[1])
    torch.testing.assert_close(both.logits[1], text_only.logits[0], atol=1e-5, rtol=1e-5)


def test_mask_tokens_replace_inputs():
    model = tiny_model()
    audio, audio_mask, text, text_mask = inputs()
    masked = torch.zeros(3, 4, dtype=torch.bool)
    masked[0, 0] = True
    a = model(audio=audio, audio_mask=audio_mask, audio_masked=masked)
    audio[0, :3] += 10.0  # the frames folded into the masked token
    b = model(audio=audio, audio_mask=audio_mask, audio_masked=masked)
    torch.testing.assert_close(a.logits, b.logits)
    assert not torch.allclose(a.logits, model(audio=audio, audio_mask=audio_mask).logits)


def test_errors_are_clear():
    model = tiny_model()
    with pytest.raises(ValueError, match="neither"):
        model()
    with pytest.raises(ValueError, match="at most 20"):
        model(text=torch.randn(1, 25, TEXT_DIM))
    audio_only = MAMER(model.config, AUDIO_DIM, 0, 4, 0)
    with pytest.raises(ValueError, match="without text"):
        audio_only(text=torch.randn(1, 3, TEXT_DIM))
