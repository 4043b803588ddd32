"""One way to say each thing on the command line: the model of `predict` / `serve` is their first argument,
fine-tuning is the `train.init_from=` override, and `serve --device` picks where the model runs."""

from pathlib import Path

import pytest
import uvicorn

from mamer.cli import main


@pytest.fixture(scope="module")
def run(train_tiny, tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("cli_names"))


def test_predict_names_its_model_first(run, capsys):
    assert main(["predict", str(run), "--text", "I am furious about this"]) == 0
    assert '"view": "text"' in capsys.readouterr().out


@pytest.mark.parametrize("command", [["predict", "--text", "hi"], ["serve"]])
def test_the_old_model_option_is_refused_with_the_one_way(command, run, capsys):
    assert main([*command, "--model", str(run)]) == 2
    assert f"name the model first, without --model: mamer {command[0]} {run}" in capsys.readouterr().err


def test_fine_tuning_is_the_init_from_override_alone(run, tmp_path, capsys):
    with pytest.raises(SystemExit):  # argparse: no such option
        main(["train", "--config", "quickstart", "--init-from", str(run)])
    assert "unrecognized arguments: --init-from" in capsys.readouterr().err


def test_serve_loads_the_model_on_the_device_it_is_given(run, monkeypatch, capsys):
    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: apps.append(app))  # no server: its app
    assert main(["serve", str(run), "--device", "cpu", "--asr", "none"]) == 0
    assert str(apps[0].state.recognizer.device) == "cpu"
    assert main(["serve", str(run), "--device", "gpu"]) == 2
    assert "device 'gpu': not a device name; give cpu, cuda or cuda:N" in capsys.readouterr().err
    assert main(["serve", str(run), "--device", "cuda:7"]) == 2
    assert "device 'cuda:7': this machine has" in capsys.readouterr().err
