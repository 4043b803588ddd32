"""`train.batching: by_modality`: batches of one modality set each, every row drawn as often as when mixed."""

from collections import Counter

import pytest

from mamer.data.extract import prepare_features
from mamer.data.manifest import read_manifest, splits
from mamer.data.sampling import ModalityBatches
from mamer.workflows.training.session import make_loaders

KINDS = ["a"] * 10 + ["t"] * 23 + ["at"] * 5


def test_each_batch_holds_one_kind_and_an_epoch_draws_every_row_once():
    sampler = ModalityBatches(KINDS, batch_size=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 + 6 + 2
    assert sorted(i for batch in batches for i in batch) == list(range(len(KINDS)))
    assert all(len({KINDS[i] for i in batch}) == 1 and 1 <= len(batch) <= 4 for batch in batches)
    assert Counter(len(batch) for batch in batches) == Counter({4: 8, 2: 1, 3: 1, 1: 1})


def test_the_order_is_a_function_of_seed_and_epoch():
    def order(seed, epoch):
        sampler = ModalityBatches(KINDS, 4, seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(0, 2) and order(0, 1) != order(1, 1)
    kinds_in_order = [KINDS[batch[0]] for batch in order(0, 1)]
    assert kinds_in_order != sorted(kinds_in_order)  # the kinds are interleaved, not one after another


def test_ranks_share_the_batches_and_step_as_often():
    """11 batches over 3 ranks: padded from the start to 12, so each rank steps 4 times and no row is lost."""
    ranks = [ModalityBatches(KINDS, 4, seed=5, rank=r, world_size=3) for r in range(3)]
    for sampler in ranks:
        sampler.set_epoch(2)
    shares = [list(sampler) for sampler in ranks]
    assert [len(share) for share in shares] == [len(sampler) for sampler in ranks] == [4, 4, 4]
    drawn = Counter(i for share in shares for batch in share for i in batch)
    assert set(drawn) == set(range(len(KINDS)))
    whole = ModalityBatches(KINDS, 4, seed=5)
    whole.set_epoch(2)
    assert [batch for share in zip(*shares, strict=True) for batch in share][:11] == list(whole)


def test_a_kind_may_have_its_own_batch_size():
    """Audio-only rows ("a") in batches of 3: 4 of them for 10 rows, the other kinds still in batches of 4."""
    batches = list(ModalityBatches(KINDS, 4, seed=1, sizes={"a": 3}))
    sizes = {kind: sorted(len(b) for b in batches if KINDS[b[0]] == kind) for kind in ("a", "t", "at")}
    assert sizes == {"a": [1, 3, 3, 3], "t": [3, 4, 4, 4, 4, 4], "at": [1, 4]}
    assert len(ModalityBatches(KINDS, 4, sizes={"a": 3})) == 4 + 6 + 2


@pytest.mark.parametrize(("size", "sizes"), [(0, None), (4, {"a": 0})])
def test_a_batch_size_below_one_is_rejected(size, sizes):
    with pytest.raises(ValueError, match="batch sizes must be >= 1"):
        ModalityBatches(KINDS, size, sizes=sizes)


def test_partially_paired_train_loader_batches_by_modality(partial_manifest, tiny_config, tmp_path):
    """Audio-only, text-only and paired rows never share a batch; the oversampled rows are drawn as often as
    in mixed batches; dev batches are left as they are."""
    manifest = partial_manifest
    by_split = splits(read_manifest(manifest, strict=True)[0])
    options = [f"data.manifest={manifest}", "train.audio_oversample=3", "train.batch_size=4"]
    config = tiny_config(tmp_path, "quickstart", *options, "train.batching=by_modality")
    loaders = make_loaders(config, prepare_features(config, progress=False))
    mixed = make_loaders(
        tiny_config(tmp_path, "quickstart", *options), prepare_features(config, progress=False)
    )

    batches = list(loaders.train)
    assert len(batches) == len(loaders.train)
    for batch in batches:
        assert len(set(zip(batch.has_audio.tolist(), batch.has_text.tolist(), strict=True))) == 1, batch.ids
    kinds = {(b.has_audio[0].item(), b.has_text[0].item()) for b in batches}
    assert kinds == {(True, True), (True, False), (False, True)}
    assert Counter(i for b in batches for i in b.ids) == Counter(i for b in mixed.train for i in b.ids)
    assert [i for b in loaders.dev for i in b.ids] == [u.id for u in by_split["dev"]]

    small = tiny_config(
        tmp_path, "quickstart", *options, "train.batching=by_modality", "train.audio_batch_size=2"
    )
    for batch in make_loaders(small, prepare_features(small, progress=False)).train:
        assert len(batch) <= (2 if batch.has_audio.any() else 4)
    with pytest.raises(ValueError, match="train.audio_batch_size must be an integer >= 0"):
        tiny_config(tmp_path, "quickstart", "train.audio_batch_size=-1")
    with pytest.raises(ValueError, match="train.batching must be 'mixed' or 'by_modality'"):
        tiny_config(tmp_path, "quickstart", "train.batching=modality")
