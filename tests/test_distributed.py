"""torchrun / DDP on 2 CPU processes (gloo): the global-batch InfoNCE, a DDP training run, resume across
process counts; and, in one process, gradient accumulation and compile-clean checkpoints.

Spawned workers import this module, so it imports only torch and the loss at the top.
"""

import datetime
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mamer.losses import ContrastiveLoss

SHARES = {  # rows of an 8-row global batch held by rank 0 and rank 1
    "equal": ([0, 1, 2, 3], [4, 5, 6, 7]),
    "uneven": ([0, 1, 2, 3, 4, 5, 6], [7]),
    "one rank without pairs": (list(range(8)), []),
}


class Embedders(nn.Module):
    """Audio and text features -> embeddings, and CLIP's logit scale: what the contrastive loss trains."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.audio, self.text = nn.Linear(6, 4), nn.Linear(5, 4)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, audio: torch.Tensor, text: torch.Tensor):
        return self.audio(audio), self.text(text), self.logit_scale


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 6, generator=generator), torch.randn(8, 5, generator=generator)


def loss_and_grads(module: nn.Module, audio: torch.Tensor, text: torch.Tensor) -> tuple[float, dict]:
    loss = ContrastiveLoss()(*module(audio, text))
    loss.backward()
    return loss.item(), {
        name.removeprefix("module."): p.grad.clone() for name, p in module.named_parameters()
    }


def _contrastive_worker(rank: int, folder: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{folder}/store",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=60),
    )
    audio, text = global_batch()
    results = {}
    for name, shares in SHARES.items():
        rows = shares[rank]
        results[name] = loss_and_grads(DistributedDataParallel(Embedders()), audio[rows], text[rows])
    torch.save(results, f"{folder}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_give_the_loss_and_gradients_of_one_process_with_the_global_batch(tmp_path):
    mp.start_processes(_contrastive_worker, (str(tmp_path),), nprocs=2, start_method="spawn")
    loss, grads = loss_and_grads(Embedders(), *global_batch())
    local_only, _ = loss_and_grads(Embedders(), *(x[:4] for x in global_batch()))
    assert local_only != pytest.approx(loss, rel=1e-3)  # so an ungathered loss would fail below
    for rank in (0, 1):
        for name, (rank_loss, rank_grads) in torch.load(tmp_path / f"rank{rank}.pt").items():
            assert rank_loss == pytest.approx(loss, rel=1e-6), (name, rank)
            for key, grad in grads.items():  # after DDP's averaging over the ranks
                torch.testing.assert_close(rank_grads[key], grad, rtol=1e-5, atol=1e-7, msg=f"{name} {key}")


@pytest.fixture(scope="module")
def features(tiny_config, tmp_path_factory) -> Path:
    """The tiny corpus's feature cache, shared by the tests below."""
    from mamer.data.extract import prepare_features

    return prepare_features(tiny_config(tmp_path_factory.mktemp("features")), progress=False)


def config_file(tiny_config, folder: Path, features: Path, *extra: str) -> Path:
    """A tiny run's config as YAML, for `mamer train --config` under torchrun."""
    from mamer.config import save_config

    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_config(folder, "quickstart", f"data.features={features.parent}", *extra)
    save_config(config, folder / "run.yaml")
    return folder / "run.yaml"


def torchrun(nproc: int, *args: str) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    done = subprocess.run([*command, "-m", "mamer", *args], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]


def trainer_state(run: Path) -> dict:
    return torch.load(run / "last/trainer_state.pt", weights_only=True)


def optimizer_steps(run: Path) -> int:
    return int(trainer_state(run)["optimizer"]["state"][0]["step"])


@pytest.fixture(scope="module")
def run_dir(tiny_config, features, tmp_path_factory) -> Path:
    """One epoch in 1 process, then a second one resumed by `torchrun --nproc_per_node 2 -m mamer train`."""
    from mamer.config import load_config
    from mamer.workflows.training.loop import train

    folder = tmp_path_factory.mktemp("ddp")
    run = train(load_config(config_file(tiny_config, folder, features, "train.epochs=1")))
    assert optimizer_steps(run) == 2  # 16 train rows, batch 8
    config = config_file(tiny_config, folder, features, "train.epochs=2", "train.patience=9")
    torchrun(2, "train", "--config", str(config), "--resume")
    return run


def test_torchrun_resumes_a_one_process_run_and_only_rank_0_writes(run_dir):
    from mamer.workflows.evaluation.evaluate import evaluate_run

    assert len(list((run_dir / "tensorboard").iterdir())) == 2  # one event file per run: none from rank 1
    state = trainer_state(run_dir)
    assert state["epoch"] == 2 and state["world_size"] == 2 and len(state["rng"]) == 2
    assert optimizer_steps(run_dir) == 2 + 1  # the second epoch: 8 rows a rank, one step
    assert math.isfinite(state["best"])  # the dev split was scored
    for weights in ("model.safetensors", "last/model.safetensors", "last/heads.safetensors"):
        assert not [key for key in load_file(str(run_dir / weights)) if key.startswith("module.")]
    report = evaluate_run(run_dir, "test")  # loads the checkpoint strictly
    assert list(report["results"]) == ["audio", "text", "audio+text"]


def test_a_two_process_run_resumes_in_one_process(run_dir, tiny_config, features):
    from mamer.config import load_config
    from mamer.workflows.training.loop import train

    before = load_file(str(run_dir / "last/model.safetensors"))
    train(
        load_config(config_file(tiny_config, run_dir.parent, features, "train.epochs=3", "train.patience=9")),
        True,
    )
    state = trainer_state(run_dir)
    assert state["epoch"] == 3 and state["world_size"] == 1 and len(state["rng"]) == 1
    assert optimizer_steps(run_dir) == 3 + 2
    after = load_file(str(run_dir / "last/model.safetensors"))
    assert any(not torch.equal(before[key], after[key]) for key in before)


def test_two_accumulated_batches_make_the_step_of_one_double_batch(tiny_config, features, tmp_path):
    from mamer.data.dataset import collate
    from mamer.workflows.training.loop import optimizer_step
    from mamer.workflows.training.session import seed_everything, start_session

    config = tiny_config(tmp_path, "quickstart", f"data.features={features.parent}", "model.dropout=0",
                         "loss.mask_ratio=0", "loss.contrastive=0", "loss.mae=0", "loss.class_weighted=false",
                         "train.grad_clip=100")  # fmt: skip
    sessions = []
    for _ in range(2):
        seed_everything(0)
        sessions.append(start_session(config, features))
    whole, accumulated = sessions
    items = [whole.loaders.train.dataset[i] for i in range(8)]
    before = [p.detach().clone() for p in whole.params]
    optimizer_step(whole, [collate(items)], step=10)
    optimizer_step(accumulated, [collate(items[:4]), collate(items[4:])], step=10)
    assert any(not torch.equal(p, p0) for p, p0 in zip(whole.params, before, strict=True))  # it stepped
    # The gradients the step used, not the updated weights: Adam scales the float noise of a zero gradient
    # (the attention key bias has one) up to the learning rate.
    for p, q in zip(whole.params, accumulated.params, strict=True):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-7)


def test_a_compiled_model_saves_the_keys_of_the_plain_one(tiny_config, features, tmp_path):
    from mamer.workflows.training.resume import save_last
    from mamer.workflows.training.session import start_session

    config = tiny_config(tmp_path, "quickstart", f"data.features={features.parent}", "train.compile=true")
    compiled = start_session(config, features)
    assert compiled.model._compiled_call_impl is not None  # torch.compile in place
    save_last(compiled, tmp_path)
    plain = start_session(tiny_config(tmp_path, "quickstart", f"data.features={features.parent}"), features)
    assert set(load_file(str(tmp_path / "last/model.safetensors"))) == set(plain.model.state_dict())
    assert set(load_file(str(tmp_path / "last/heads.safetensors"))) == set(plain.heads.state_dict())


@pytest.mark.parametrize(
    "override", ["train.grad_accum_steps=0", "train.grad_accum_steps=1.5", "train.compile=sometimes"]
)
def test_bad_accumulation_or_compile_values_are_rejected(override):
    from mamer.config import load_config

    with pytest.raises(ValueError, match=override.split("=")[0]):
        load_config("quickstart", [override])


def test_torchrun_trains_batches_by_modality_when_ranks_hold_different_modalities(
    partial_manifest, tiny_config, tmp_path
):
    """`train.batching=by_modality` on 2 ranks: in a step one rank may hold text-only rows while the other holds
    audio rows (DDP's unused-parameter path); every rank takes the steps its share of the batches gives."""
    from mamer.config import save_config
    from mamer.data.manifest import read_manifest, splits
    from mamer.data.sampling import ModalityBatches

    manifest = partial_manifest
    train_rows = splits(read_manifest(manifest, strict=True)[0])["train"]
    kinds = [(u.audio is not None, u.text is not None) for u in train_rows]
    shares = [list(ModalityBatches(kinds, 4, seed=0, rank=r, world_size=2)) for r in (0, 1)]
    assert any(kinds[a[0]] != kinds[b[0]] for a, b in zip(*shares, strict=True))  # the case under test occurs

    config = tiny_config(tmp_path, "quickstart", f"data.manifest={manifest}", "train.batching=by_modality",
                         "train.batch_size=4", "train.epochs=1", "train.seed=0")  # fmt: skip
    save_config(config, tmp_path / "run.yaml")
    torchrun(2, "train", "--config", str(tmp_path / "run.yaml"))
    assert optimizer_steps(Path(config.run_dir)) == len(shares[0]) == len(shares[1])
