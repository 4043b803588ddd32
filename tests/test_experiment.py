import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mamer.cli import main
from mamer.config import builtin_configs, load_config, load_experiment
from mamer.data.join import join_manifests, parse_pairs
from mamer.data.manifest import read_manifest
from mamer.workflows.evaluation.robustness import DroppedRows, drop_rows
from mamer.workflows.experiments.experiment import (
    RUN_FILE,
    claim_folder,
    experiment_dir,
    plan,
    run_experiment,
    source_digest,
)
from mamer.workflows.experiments.summary import experiment_table, view_scores


@pytest.fixture(scope="module")
def experiment(tiny_config, tmp_path_factory):
    """A real 2-seed experiment of three systems on the tiny corpus (1 epoch each)."""
    folder = tmp_path_factory.mktemp("experiment")
    config, e = tiny_config(
        folder, "quickstart", "train.epochs=1", f"experiment.out={folder / 'exp'}",
        "experiment.systems=[unified,audio_only,multimodal_only]", "experiment.seeds=[0,1]",
        "experiment.robustness=[0.0,0.5]", experiment=True,
    )  # fmt: skip
    return (config, e), run_experiment(config, e), folder / "exp"


def test_experiment_json_has_the_issue_schema_and_averages_the_runs(experiment):
    (config, e), summary, out = experiment
    saved = json.loads((out / "experiment.json").read_text())
    assert saved["folds"] == 1 and saved["seeds"] == [0, 1]
    assert set(saved["systems"]) == {"unified", "audio_only", "multimodal_only"}
    audio_only = saved["systems"]["audio_only"]
    assert isinstance(audio_only["params"], int) and audio_only["params"] > 0
    assert list(audio_only["views"]) == ["audio"]
    assert saved["systems"]["unified"]["params"] > audio_only["params"]  # it also has a text projection
    for seedless in ("macro_f1", "macro_f1_std", "uar", "uar_std"):
        assert seedless in saved["systems"]["unified"]["views"]["audio+text"]
    per_run = [
        json.loads((out / "unified" / f"seed{s}" / "report.json").read_text())["results"]["text"]["macro_f1"]
        for s in (0, 1)
    ]
    text = saved["systems"]["unified"]["views"]["text"]
    assert text["macro_f1"] == pytest.approx(np.mean(per_run))
    assert text["macro_f1_std"] == pytest.approx(np.std(per_run, ddof=1))


def test_multimodal_baseline_gets_a_missing_modality_row(experiment):
    _, summary, out = experiment
    assert summary["systems"]["multimodal_only"]["missing_modality_views"] == ["audio", "text"]
    table = experiment_table(summary, "test")
    assert "| multimodal_only, modality missing |" in table
    assert "| audio_only, modality missing |" not in table
    assert (out / "experiment.md").read_text().count("| unified |") == 1


def test_robustness_curves_are_written_per_system(experiment):
    _, summary, out = experiment
    curves = summary["systems"]["unified"]["robustness"]["test"]
    assert curves["audio"]["view"] == "audio+text" and curves["audio"]["fractions"] == [0.0, 0.5]
    assert "text" not in summary["systems"]["audio_only"]["robustness"]["test"]
    assert (out / "robustness.png").stat().st_size > 0
    # the undegraded point is the plain audio+text score
    assert curves["audio"]["scores"][0] == pytest.approx(
        summary["systems"]["unified"]["views"]["audio+text"]["macro_f1"]
    )


def test_rerun_warns_about_runs_trained_by_other_code(experiment, caplog):
    """A finished run made by other mamer source is reused, but named in a warning and in experiment.md."""
    (config, e), summary, out = experiment
    assert summary["systems"]["unified"]["code"] == [source_digest()]
    assert "more than one version" not in (out / "experiment.md").read_text()
    done = out / "unified" / "seed1" / RUN_FILE
    saved = done.read_text()
    done.write_text(json.dumps({**json.loads(saved), "code": "0123456789ab"}))
    try:
        with caplog.at_level("WARNING", logger="mamer.workflows.experiments.experiment"):
            rerun = run_experiment(config, e)
    finally:
        done.write_text(saved)
    warned = [r.getMessage() for r in caplog.records if "other mamer code" in r.getMessage()]
    assert len(warned) == 1 and str(done.parent) in warned[0] and "0123456789ab" in warned[0]
    assert rerun["systems"]["unified"]["code"] == sorted(["0123456789ab", source_digest()])
    assert rerun["systems"]["unified"]["views"] == summary["systems"]["unified"]["views"]
    assert "unified: 0123456789ab" in (out / "experiment.md").read_text()


def test_rerun_reuses_finished_runs_and_refuses_a_changed_config(experiment, tiny_config):
    (config, e), summary, out = experiment
    done = out / "unified" / "seed0" / RUN_FILE
    before = done.stat().st_mtime_ns
    assert run_experiment(config, e)["systems"] == summary["systems"]
    assert done.stat().st_mtime_ns == before
    e.seeds = [0]  # the experiment section may change: the finished run is still reused
    config.train.progress = not config.train.progress  # and so may the progress bar
    assert run_experiment(config, e)["systems"]["unified"]["runs"] == 1
    assert done.stat().st_mtime_ns == before
    # a system redefined under the same name: its finished runs name what changed
    e.custom = {"audio_only": ["model.views=[audio]", "train.lr=0.123"]}
    with pytest.raises(ValueError, match=r"audio_only/seed0/experiment_run.json was made with a different "
                       r"config \(in loss.contrastive, loss.mae, loss.mask_ratio, train.lr\)"):  # fmt: skip
        run_experiment(config, e)
    e.custom = {}
    config.train.lr = 0.123  # what every system is built on: the folder is another config's
    with pytest.raises(ValueError, match=r"holds the experiment of config 'unified', .* in train.lr"):
        run_experiment(config, e)


def test_an_experiment_folder_refuses_a_config_its_runs_are_not_built_on(tmp_path):
    claim_folder(load_config("emodb_categorical"), tmp_path)
    assert (tmp_path / "experiment_config.json").is_file()
    # more seeds, other systems: the same experiment
    claim_folder(
        load_config("emodb_categorical", ["experiment.seeds=[0,1,2]", "experiment.systems=[unified]"]),
        tmp_path,
    )
    # the audio-only baseline inherits the experiment section: its `unified` would be audio-only
    baseline = load_config("emodb_audio_only", [f"experiment.out={tmp_path}"])
    with pytest.raises(ValueError, match=r"'emodb_unified', which differs from this one \('emodb_audio_only'\) in "
                       r"loss.contrastive, loss.mae, loss.mask_ratio, model.views"):  # fmt: skip
        claim_folder(baseline, tmp_path)


def test_builtin_configs_that_share_an_experiment_folder_are_one_experiment(tmp_path):
    for name in builtin_configs():
        config, e = load_experiment(name)
        assert plan(config, e), name
        claim_folder(config, tmp_path / experiment_dir(config, e))  # raises for a second config in one folder


def test_dedicated_systems_of_every_builtin_config_are_supervised_only_and_unmasked():
    """A config may redefine audio_only / text_only / multimodal_only (own epochs, own manifest): they stay
    dedicated models, with no L_C, no L_MAE and no [MASK]ed inputs; no_mae masks nothing either."""
    checked = 0
    for name in builtin_configs():
        config, e = load_experiment(name)
        for run in plan(config, e):
            loss = run.config.loss
            if run.system in ("audio_only", "text_only", "multimodal_only"):
                assert (loss.contrastive, loss.mae, loss.mask_ratio) == (0, 0, 0), (name, run.system, loss)
                checked += 1
            if run.system == "no_mae":
                assert (loss.mae, loss.mask_ratio) == (0, 0), (name, loss)
    assert checked >= 5


def test_plan_runs_every_fold_seed_and_system():
    runs = plan(
        *load_experiment(
            "emodb_categorical", ["experiment.seeds=[0,1]", "experiment.fold_manifest=m_fold{fold}.jsonl"]
        )
    )
    assert len(runs) == 5 * 2 * 3  # folds x seeds x (unified, audio_only, unified_layer_mix)
    assert {r.config.data.manifest for r in runs} == {f"m_fold{k}.jsonl" for k in range(5)}
    audio = [r for r in runs if r.system == "audio_only" and r.fold == 3 and r.seed == 1][0]
    assert audio.config.model.views == ["audio"] and audio.config.loss.mae == 0
    assert audio.config.run_dir.endswith("audio_only/seed1/fold3") and audio.config.train.seed == 1
    mix = [r for r in runs if r.system == "unified_layer_mix" and r.fold == 0 and r.seed == 0][0]
    assert (
        mix.config.data.audio_layer_pooling == "learned" and audio.config.data.audio_layer_pooling == "mean"
    )


def test_a_system_can_name_its_own_manifest_per_fold():
    runs = plan(*load_experiment("emodb_meld_joint_folds"))
    manifests = {(r.system, r.fold): r.config.data.manifest for r in runs}
    assert len(runs) == 5 * 3
    assert manifests["audio_only", 3] == "mamer_runs/joint/manifest_fold3_emodb.jsonl"
    assert manifests["unified_oversampled", 3] == "mamer_runs/joint/manifest_fold3.jsonl"


@pytest.mark.parametrize(
    "override, message",
    [
        ("experiment.systems=[unified,nonsense]", "unknown"),
        ("experiment.robustness=[0.5,1.0]", "fractions"),
        ("experiment.folds=3", "fold_manifest"),
        ("experiment.seeds=[]", "seed"),
        ("experiment.corpus=msp", "corpus"),
    ],
)
def test_bad_experiment_sections_fail_clearly(override, message):
    with pytest.raises(ValueError, match=message):
        plan(*load_experiment("quickstart", [override]))


def test_drop_rows_keeps_order_and_a_fraction():
    block = torch.arange(10.0)[:, None]
    kept = drop_rows(block, 0.5, torch.Generator().manual_seed(0))
    assert len(kept) == 5 and torch.all(kept[1:, 0] > kept[:-1, 0])
    assert torch.equal(drop_rows(block, 0.0, torch.Generator()), block)
    assert len(drop_rows(block, 0.99, torch.Generator())) == 1
    with pytest.raises(ValueError):
        drop_rows(block, 1.0, torch.Generator())


def test_dropped_rows_are_the_same_on_every_read():
    items = [{"audio": torch.randn(20, 3), "text": torch.randn(6, 3)} for _ in range(3)]
    dropped = DroppedRows(items, "audio", 0.75, seed=1)
    assert torch.equal(dropped[2]["audio"], dropped[2]["audio"])
    assert len(dropped[0]["audio"]) == 5 and dropped[0]["text"] is items[0]["text"]


def test_join_manifests_shares_labels_and_keeps_test_sets_apart(tmp_path):
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    row = {"audio": None, "arousal": None, "valence": None, "dominance": None, "speaker": None}
    write_jsonl(a, [{**row, "id": "a1", "text": "x", "label": "happiness", "split": "train"},
                    {**row, "id": "a2", "text": "y", "label": "boredom", "split": "train"},
                    {**row, "id": "a3", "text": "z", "label": "anger", "split": "test"}])  # fmt: skip
    write_jsonl(b, [{**row, "id": "b1", "text": "u", "label": "joy", "split": "test"},
                    {**row, "id": "b2", "text": "v", "label": "anger", "split": "dev"}])  # fmt: skip
    written = join_manifests(
        {"a": a, "b": b}, tmp_path / "j.jsonl", ["anger", "happiness"], {"joy": "happiness"}
    )
    rows, problems = read_manifest(tmp_path / "j.jsonl")
    assert not problems
    assert [(u.id, u.label, u.split) for u in rows] == [
        ("a1", "happiness", "train"), ("a3", "anger", "test_a"), ("b1", "happiness", "test_b"), ("b2", "anger", "dev"),
    ]  # fmt: skip
    assert [u.id for u in read_manifest(tmp_path / "j_b.jsonl")[0]] == ["b1", "b2"]
    assert len(written) == 3
    with pytest.raises(ValueError, match="both"):
        join_manifests({"a": a, "again": a}, tmp_path / "k.jsonl", ["anger"])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_pairs(["emodb"], "--part")
    # cross-corpus: part b held out whole, every split of it becomes test_b; a's splits are kept
    join_manifests(
        {"a": a, "b": b}, tmp_path / "x.jsonl", ["anger", "happiness"], {"joy": "happiness"}, ("b",)
    )
    crossed = {u.id: u.split for u in read_manifest(tmp_path / "x.jsonl")[0]}
    assert crossed == {"a1": "train", "a3": "test_a", "b1": "test_b", "b2": "test_b"}
    with pytest.raises(ValueError, match="not a part name"):
        join_manifests({"a": a, "b": b}, tmp_path / "y.jsonl", ["anger"], test_only=("c",))
    with pytest.raises(ValueError, match="nothing would be left"):
        join_manifests({"a": a, "b": b}, tmp_path / "y.jsonl", ["anger"], test_only=("a", "b"))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_join_command_writes_the_joint_and_per_part_manifests(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(a, [{"id": "a1", "text": "x", "label": "anger", "split": "test"}])
    write_jsonl(b, [{"id": "b1", "text": "y", "label": "joy", "split": "train"}])
    argv = ["join", "--part", f"a={a}", "--part", f"b={b}", "--labels", "anger,happiness",
            "--rename", "joy=happiness", "--out", str(tmp_path / "j.jsonl")]  # fmt: skip
    assert main(argv) == 0
    assert "j_b.jsonl: 1 rows" in capsys.readouterr().out
    assert (
        main([*argv[:-2], "--out", str(tmp_path / "k.jsonl"), "--part", "c"]) == 2
    )  # a clear error, no traceback


def test_views_without_rows_are_left_out_of_the_summary():
    reports = [
        {"results": {"audio": {}, "text": {"macro_f1": 0.4}}},
        {"results": {"audio": {}, "text": {"macro_f1": 0.6}}},
    ]
    assert view_scores(reports) == {
        "text": {"macro_f1": pytest.approx(0.5), "macro_f1_std": pytest.approx(0.1414, abs=1e-4)}
    }


def masks_seen(tiny_config, tmp_path, monkeypatch, system: str, *extra: str) -> list[tuple[str, bool]]:
    """(view, any token masked) for every pass one training step of `system` runs."""
    import mamer.objective as objective_module
    from mamer.data.extract import prepare_features
    from mamer.workflows.experiments.experiment import system_config
    from mamer.workflows.training.session import start_session

    config, e = tiny_config(tmp_path, "quickstart", *extra, experiment=True)
    run = system_config(config, e, system, 0, None)
    session = start_session(run, prepare_features(run, progress=False))
    seen, real = [], objective_module.run_view

    def spy(model, batch, view, audio_masked=None, text_masked=None):
        masks = [m for m in (audio_masked, text_masked) if m is not None]
        seen.append((view, any(bool(m.any()) for m in masks)))
        return real(model, batch, view, audio_masked, text_masked)

    monkeypatch.setattr(objective_module, "run_view", spy)
    session.trainee(next(iter(session.loaders.train)), session.mask_rng)
    return seen


@pytest.mark.parametrize(
    "system, masked",
    [("audio_only", False), ("text_only", False), ("multimodal_only", False), ("no_mae", False),
     ("multimodal_only_masked", True), ("unified", True)],
)  # fmt: skip
def test_dedicated_systems_and_no_mae_train_on_unmasked_tokens(
    system, masked, tiny_config, tmp_path, monkeypatch
):
    seen = masks_seen(tiny_config, tmp_path, monkeypatch, system)
    assert seen and any(m for _, m in seen) == masked


def test_masks_can_reach_the_reconstruction_pass_only(tiny_config, tmp_path, monkeypatch):
    seen = masks_seen(tiny_config, tmp_path, monkeypatch, "mask_mae_pass_only")
    assert sorted(seen) == [("audio", False), ("audio+text", False), ("audio+text", True), ("text", False)]
    assert sorted(masks_seen(tiny_config, tmp_path, monkeypatch, "unified")) == [
        ("audio", True), ("audio+text", True), ("text", True)
    ]  # fmt: skip
