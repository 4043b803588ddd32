import dataclasses

import pytest

from mamer.config import (
    builtin_configs,
    config_from_dict,
    config_to_dict,
    differing_keys,
    load_config,
    load_experiment,
)


def test_builtin_quickstart_and_overrides():
    config = load_config("quickstart", ["loss.contrastive=0", "model.views=[audio]", "train.epochs=3"])
    assert config.loss.contrastive == 0 and config.model.views == ["audio"] and config.train.epochs == 3


def test_base_inheritance():
    config = load_config("quickstart_no_mae")
    assert config.loss.mae == 0 and config.loss.contrastive == load_config("quickstart").loss.contrastive
    assert config.name == "unified_no_mae"
    assert {"quickstart", "quickstart_audio_only", "quickstart_multimodal_only"} <= set(builtin_configs())


def test_numbers_in_e_notation_are_numbers():
    """YAML reads 1e-4 as a string (it wants 1.0e-4): a float option takes it as the number it means, not as a
    string that fails deep inside the optimizer."""
    config = load_config("quickstart", ["train.lr=1e-4", "loss.mae=2", "train.init_lr_scale=0.5"])
    assert (config.train.lr, config.loss.mae, config.train.init_lr_scale) == (1e-4, 2.0, 0.5)
    assert type(config.loss.mae) is float


def test_round_trip():
    config = load_config("quickstart")
    assert config_from_dict(config_to_dict(config)) == config


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.bogus=1", "model.'bogus'"),
        ("data.task=regression", "data.task"),
        ("model.views=[video]", "views"),
        ("loss.mask_ratio=1.5", "mask_ratio"),
        ("train.lr=fast", r"train.lr must be a number \(e.g. 1.0e-4\), got 'fast'"),
        ("loss.mae=true", "loss.mae must be a number"),
        ("oops", "section.key=value"),
    ],
)
def test_bad_config_names_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_config("quickstart", [override])


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_a_derived_config_replaces_per_corpus_dicts_whole(tmp_path):
    (tmp_path / "joint.yaml").write_text(
        "base: quickstart.yaml\n"
        "data: {class_parts: {ravdess: [happiness], meld: [happiness]}}\n"
        "train: {corpus_oversample: {emodb: 12, ravdess: 3}}\n"
    )
    (tmp_path / "one.yaml").write_text(
        "base: joint.yaml\ndata: {class_parts: {}}\ntrain: {corpus_oversample: {ravdess: 2}}\n"
    )
    joint, one = load_config(tmp_path / "joint.yaml"), load_config(tmp_path / "one.yaml")
    assert joint.train.corpus_oversample == {"emodb": 12, "ravdess": 3}
    assert set(joint.data.class_parts) == {"ravdess", "meld"}
    assert one.train.corpus_oversample == {"ravdess": 2} and one.data.class_parts == {}
    # the shipped single-corpus configs train none of the joint recipe's parts or EmoDB draws
    assert load_config("mamer_base_emodb").train.corpus_oversample == {}
    assert load_config("mamer_base_ravdess").data.class_parts == {}


def test_every_builtin_config_loads_as_the_model_its_header_names():
    """Through `load_config` (what `mamer train --config NAME` reads), not only through `plan`: a dedicated model
    (one view) is supervised only with no [MASK]ed inputs, and a model without reconstruction masks nothing."""
    dedicated = 0
    for name in builtin_configs():
        config = load_config(name)
        loss = config.loss
        if len(config.model.views) == 1:
            assert (loss.contrastive, loss.mae, loss.mask_ratio) == (0, 0, 0), (name, loss)
            dedicated += 1
        if loss.mae == 0:
            assert loss.mask_ratio == 0, (name, loss)
    assert dedicated >= 4  # quickstart audio/text/multimodal only, emodb_audio_only


def test_a_config_of_one_system_trains_what_mamer_experiment_trains_for_it():
    """`mamer train --config quickstart_audio_only` and the audio_only runs of `mamer experiment` are one model:
    the same config but for the run's name, folder and seed."""
    from mamer.workflows.experiments.experiment import SYSTEMS, plan

    checked = []
    for name in builtin_configs():
        config, e = load_experiment(name)
        if len(e.systems) != 1 or e.systems[0] not in SYSTEMS or e.systems[0] in e.custom:
            continue
        run = plan(config, dataclasses.replace(e, seeds=[config.train.seed], folds=0))[0]
        alone, planned = config_to_dict(config), config_to_dict(run.config)
        for raw in (alone, planned):
            del raw["name"], raw["run_dir"]
        assert differing_keys(alone, planned) == [], name
        checked.append(name)
    assert {"quickstart_audio_only", "quickstart_no_mae", "emodb_audio_only"} <= set(checked)
