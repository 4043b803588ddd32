"""Typed run configuration: dataclasses loaded from YAML, with `section.key=value` overrides."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from mamer.modality import NORMALISATIONS, TASKS

LAYER_POOLINGS = ("mean", "learned")  # the keys of mamer.encoders.base.LAYER_POOLINGS
CLASS_BALANCES = ("split", "corpus", "corpus_equal")  # loss.class_balance: see session.row_weights


def one_of(option: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise a ValueError naming `option` unless `value` is one of `choices`."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
        raise ValueError(f"{option} must be {listed}, got {value!r}")


@dataclass
class ModelConfig:
    """The shared transformer and its projections (sizes default to CPU-friendly values)."""

    width: int = 128  # width of the shared pre-norm transformer (and of every token)
    depth: int = 3  # transformer layers
    heads: int = 4  # attention heads; must divide the width
    ffn_ratio: float = 4.0  # feed-forward width over the model width
    dropout: float = 0.1  # dropout in the transformer and projections
    # audio frames folded into one token; 0 = from the features' frame rate, to ~12.5/s
    audio_downsample: int = 0
    # learned audio positions: 512 tokens = 41 s at 12.5 tokens/s; longer audio is cut into segments by `predict`
    max_audio_tokens: int = 512
    max_text_tokens: int = 256  # learned text positions
    contrastive_dim: int = 128  # output size of the training-only contrastive ffn heads
    # each audio feature dimension standardised by the train split's mean/std (kept in the model) before the LayerNorm
    audio_standardise: bool = False
    audio_normalise: str = "none"  # audio frames standardised per group first: none, utterance or speaker
    pooling: str = "cls"  # what the head reads: "cls" ([CLS]) or "cls+mean" ([CLS] beside the outputs' mean)
    # the views trained with the supervised loss: a subset of audio, text, audio+text (a dedicated model lists one)
    views: list[str] = field(default_factory=lambda: ["audio", "text", "audio+text"])


@dataclass
class LossConfig:
    """Weights of the three losses; a weight of 0 removes that part (this is how the ablations run)."""

    view_weights: dict[str, float] = field(
        default_factory=lambda: {"audio+text": 1.0, "audio": 1.0, "text": 1.0}
    )  # weight of each view's supervised loss L_S
    contrastive: float = 0.1  # lambda_C, weight of the contrastive loss L_C
    mae: float = 0.1  # lambda_MAE, weight of the masked-autoencoding losses L_MAE (audio + text)
    mae_kind: str = "mse"  # "mse" on per-frame normalised targets, or "cosine"
    mask_ratio: float = 0.15  # fraction of tokens per modality replaced by [MASK] in training
    # which passes see the masked inputs: "all" (every view's supervised pass and the reconstruction, one set of
    # masks) or "mae" (only an extra audio+text pass for the reconstruction; supervised passes unmasked)
    mask_passes: str = "all"
    # what L_C compares: "tokens" (the mean of each unimodal view's output tokens, as the paper) or "cls" (each
    # unimodal view's [CLS] output, the vector the prediction head reads with model.pooling "cls")
    contrastive_pooling: str = "tokens"
    temperature: float = 0.07  # initial InfoNCE temperature (learnable)
    class_weighted: bool = True  # inverse-frequency class weights in the cross-entropy
    # with class_weighted, where class frequencies are counted: over the whole train split ("split"), or within
    # each corpus of a joined manifest ("corpus", the id prefix `emodb/...`: each corpus's classes weigh as in a
    # model of it alone, each corpus keeps its rows' share of the loss; "corpus_equal": each corpus an equal share)
    class_balance: str = "split"


@dataclass
class DataConfig:
    """Where the corpus and its cached features live and which encoders make them."""

    # JSONL/CSV manifest: id, audio, text, label, arousal, valence, dominance, speaker, split
    manifest: str = ""
    # feature cache root (default: <manifest dir>/features): one store per encoder, keyed per utterance, so folds
    # and manifests that share utterances share features; one index folder per manifest
    features: str = ""
    # items per encoder call when extracting features: "auto" = batched on cuda, and on a cpu batched or one at
    # a time, whichever measures faster on the first items (rechecked as it goes); or a fixed number
    extract_batch_size: int | str = "auto"
    # registry name, preset or model folder (`mamer encoders` lists them); "auto" = whisper-base when its
    # weight packages are installed, else the no-download logmel
    audio_encoder: str = "auto"
    text_encoder: str = "auto"  # as audio_encoder: "auto" = minilm when installed, else hashed
    # hidden states used, e.g. [2, 3]; empty = encoder default
    audio_layers: list[int] = field(default_factory=list)
    text_layers: list[int] = field(default_factory=list)  # as audio_layers; -1 = the last
    # "mean": the chosen hidden states averaged in the cache; "learned": cached side by side and mixed by
    # learned softmax weights in the model (no layers given = all of them; the cache grows with their number)
    audio_layer_pooling: str = "mean"
    text_layer_pooling: str = "mean"  # as audio_layer_pooling
    task: str = "categorical"  # "categorical", "dimensional" (arousal/valence/dominance) or "both"
    labels: list[str] = field(default_factory=list)  # class order; empty = sorted labels of the train split
    # per corpus of a joined manifest (the id prefix, `ravdess/...`): classes whose rows of that corpus train an
    # output of their own, a part of the class (`happiness@ravdess`) whose probability is added to the class's
    # wherever the model answers or is scored (a part's rows count as their class's in the class weights); for a
    # corpus rendering a class unlike the others (e.g. {ravdess: [happiness]}: RAVDESS's acted happy clips; docs)
    class_parts: dict[str, list[str]] = field(default_factory=dict)
    train_split: str = "train"  # manifest split trained on
    # manifest split early stopping and selection read; a list joins several (e.g. [dev, dev_emodb, dev_ravdess])
    dev_split: str | list[str] = "dev"
    test_split: str = "test"  # manifest split `mamer evaluate` scores by default

    @property
    def dev_splits(self) -> list[str]:
        """`dev_split` as a list."""
        return [self.dev_split] if isinstance(self.dev_split, str) else list(self.dev_split)


@dataclass
class TrainConfig:
    """The optimiser, its schedule, early stopping and where training runs."""

    seed: int = 0  # seeds weights, shuffling, dropout and masks
    epochs: int = 30  # most epochs
    batch_size: int = 32  # per rank under torchrun
    lr: float = 5e-4  # AdamW peak learning rate: linear warm-up, then cosine to 0 over the run
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_steps: int = 50  # optimizer steps of linear warm-up
    grad_clip: float = 1.0  # gradient norm clip
    # epochs without dev improvement before stopping; the dev score is the mean, over the trained views with dev
    # rows, of macro-F1 (categorical), mean CCC (dimensional) or their mean (both)
    patience: int = 8
    # "split": the dev score over all dev rows at once; "corpus": each corpus of a joined manifest (id prefix
    # `emodb/...`) scored on its own, the dev score their mean (69 EmoDB clips weigh as 4,946 GoEmotions rows)
    select_by: str = "split"
    num_workers: int = 0  # DataLoader worker processes
    device: str = "auto"  # "auto" = cuda when available, else cpu
    precision: str = "auto"  # "auto" = bf16 autocast on cuda, fp32 on cpu; or "fp32" / "bf16"
    progress: bool = True  # show a progress bar
    grad_accum_steps: int = 1  # batches per optimizer step (their mean loss); per rank under torchrun
    compile: bool = False  # torch.compile the shared model (in place: checkpoints keep their plain keys)
    # learning rate of the learned layer weights (data.*_layer_pooling=learned), without weight decay: a few
    # hundred steps at `lr` would leave them where they start
    layer_mix_lr: float = 0.05
    # each training row that has audio is drawn this many times an epoch (1 = once): for partially paired data
    # whose audio rows are few, e.g. EmoDB beside MELD's text-only rows; class weights count the repeats
    audio_oversample: int = 1
    # per corpus of a joined manifest (the id prefix, `emodb/...`): its training rows are drawn this many times an
    # epoch, in place of audio_oversample; e.g. {emodb: 12} draws EmoDB's few clips more often than RAVDESS's
    corpus_oversample: dict[str, int] = field(default_factory=dict)
    # with model.audio_normalise speaker: share of train clips standardised as if alone, drawn anew each time
    lone_share: float = 0.0
    # "mixed": batches drawn from all rows at random; "by_modality": each batch holds rows with the same
    # modalities (audio+text, audio, text), so text-only rows of partially paired data skip the audio passes
    batching: str = "mixed"
    # with batching=by_modality: the size of batches whose rows have audio (0 = batch_size); smaller ones give the
    # audio rows as many optimizer steps as mixed batches would (mamer-base: 16 instead of 64)
    audio_batch_size: int = 0
    # fine-tune from a trained model: a built-in name (mamer-base), a run or release folder, or a hub id; the run
    # takes its architecture and encoders, copies its weights, and gets a new head if the labels differ
    init_from: str = ""
    # with init_from: learning rate of the copied weights, relative to `lr`; 1 = the whole model at `lr`, which
    # beat 0.1 on EmoDB at every data size tried (benchmarks/finetune_emodb.py, docs/mamer-base.md)
    init_lr_scale: float = 1.0


@dataclass
class ExperimentConfig:
    """`mamer experiment`: which systems to train on the same features, how often, and what to score.

    A system is this run config with a set of `section.key=value` overrides: a standard name (`SYSTEMS` in
    mamer/workflows/experiments/experiment.py: unified, audio_only, text_only, multimodal_only, no_contrastive, no_mae) or one defined
    in `custom`. With `folds` > 0 every fold (`fold_manifest`) is one run per system and seed; `data.manifest`
    stays the manifest `mamer train` uses on its own. A custom system may name its own `data.manifest` per fold,
    "{fold}" standing for k (e.g. a dedicated model trained on one part of a joined manifest).
    """

    systems: list[str] = field(default_factory=lambda: ["unified"])  # standard or custom system names
    custom: dict[str, list[str]] = field(default_factory=dict)  # system name -> overrides
    seeds: list[int] = field(default_factory=lambda: [0])  # every system is trained once per seed (and fold)
    folds: int = 0  # K > 0: every fold is a run per system and seed
    fold_manifest: str = ""  # with folds > 0: the manifest of fold k, "{fold}" standing for k
    corpus: str = ""  # "quickstart": synthesise the quickstart corpus at data.manifest if it is missing
    # splits scored (a joint corpus: one each)
    test_splits: list[str] = field(default_factory=lambda: ["test"])
    metrics: list[str] = field(default_factory=list)  # table columns; empty = the task's headline metrics
    # fractions of audio frames / text tokens dropped at random at test time for the robustness curves
    robustness: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 0.9])
    out: str = ""  # output folder; default: the run_dir's parent / <name>_experiment


@dataclass
class RunConfig:
    """One training run: its name and folder, and the model, loss, data and training sections."""

    name: str = "unified"  # run name (reports, experiment systems)
    run_dir: str = "runs/unified"  # output folder: checkpoint, config, reports, TensorBoard
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if self.data.task not in TASKS:
            raise ValueError(f"data.task must be one of {TASKS}, got {self.data.task!r}")
        for key in ("audio_layers", "text_layers"):
            layers = getattr(self.data, key)
            if not isinstance(layers, list) or not all(type(i) is int for i in layers):
                raise ValueError(
                    f"data.{key} must be a list of layer numbers, e.g. [2, 3] or [-1]; got {layers!r}"
                )
        size = self.data.extract_batch_size
        if size != "auto" and (type(size) is not int or size < 1):
            raise ValueError(f"data.extract_batch_size must be 'auto' or an integer >= 1, got {size!r}")
        for key in ("audio_layer_pooling", "text_layer_pooling"):
            one_of(f"data.{key}", getattr(self.data, key), LAYER_POOLINGS)
        parts = self.data.class_parts
        if not isinstance(parts, dict) or not all(
            isinstance(c, str) and isinstance(v, list) and all(isinstance(k, str) for k in v)
            for c, v in parts.items()
        ):
            raise ValueError(f"data.class_parts must map corpus names to lists of classes, got {parts!r}")
        unknown = set(self.model.views) - {"audio", "text", "audio+text"}
        if unknown or not self.model.views:
            raise ValueError(
                f"model.views must be a non-empty subset of audio, text, audio+text; got {self.model.views}"
            )
        if not 0.0 <= self.loss.mask_ratio < 1.0:
            raise ValueError(f"loss.mask_ratio must be in [0, 1), got {self.loss.mask_ratio}")
        one_of("loss.mask_passes", self.loss.mask_passes, ("all", "mae"))
        one_of("loss.contrastive_pooling", self.loss.contrastive_pooling, ("tokens", "cls"))
        one_of("model.pooling", self.model.pooling, ("cls", "cls+mean"))
        one_of("model.audio_normalise", self.model.audio_normalise, NORMALISATIONS)
        one_of("loss.class_balance", self.loss.class_balance, CLASS_BALANCES)
        one_of("loss.mae_kind", self.loss.mae_kind, ("mse", "cosine"))
        one_of("train.select_by", self.train.select_by, ("split", "corpus"))
        dev = self.data.dev_split
        if not (
            isinstance(dev, str) or (isinstance(dev, list) and dev and all(isinstance(d, str) for d in dev))
        ):
            raise ValueError(f"data.dev_split must be a split name or a non-empty list of them, got {dev!r}")
        if not isinstance(self.train.audio_batch_size, int) or self.train.audio_batch_size < 0:
            raise ValueError(
                f"train.audio_batch_size must be an integer >= 0, got {self.train.audio_batch_size!r}"
            )
        one_of("train.batching", self.train.batching, ("mixed", "by_modality"))
        one_of("train.precision", self.train.precision, ("auto", "fp32", "bf16"))
        counts = {
            "grad_accum_steps": self.train.grad_accum_steps,
            "audio_oversample": self.train.audio_oversample,
        }
        if not isinstance(self.train.corpus_oversample, dict):
            raise ValueError(
                f"train.corpus_oversample must map corpus names to counts, got {self.train.corpus_oversample!r}"
            )
        counts.update({f"corpus_oversample.{k}": v for k, v in self.train.corpus_oversample.items()})
        for key, value in counts.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"train.{key} must be an integer >= 1, got {value!r}")
        if not isinstance(self.train.compile, bool):
            raise ValueError(f"train.compile must be true or false, got {self.train.compile!r}")
        if self.model.audio_downsample < 0:
            raise ValueError(
                f"model.audio_downsample must be >= 0 (0 = automatic), got {self.model.audio_downsample}"
            )
        for key in ("width", "depth", "heads", "max_audio_tokens", "max_text_tokens", "contrastive_dim"):
            value = getattr(self.model, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model.{key} must be an integer >= 1, got {value!r}")
        if self.model.width % self.model.heads:
            raise ValueError(
                f"model.width ({self.model.width}) must be divisible by model.heads ({self.model.heads})"
            )


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from a dict, rejecting unknown keys with the key's full name."""
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown config key {where}{key!r}; known: {sorted(known)}")
        sub = _SECTIONS.get(key) if cls is RunConfig else None
        if sub:
            value = _build(sub, value or {}, f"{key}.")
        elif known[key].type == "float":
            value = _number(value, f"{where}{key}")
        kwargs[key] = value
    return cls(**kwargs)


def _number(value: Any, key: str) -> float:
    """A float option's value as a float: YAML reads `1e-4` (no dot, no exponent sign) as a string."""
    if not isinstance(value, bool) and isinstance(value, int | float | str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"{key} must be a number (e.g. 1.0e-4), got {value!r}")


_SECTIONS = {"model": ModelConfig, "loss": LossConfig, "data": DataConfig, "train": TrainConfig}


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings (value parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value")
        dotted, value = item.split("=", 1)
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return raw


BUILTIN_CONFIGS = Path(__file__).parent / "configs"


def builtin_configs() -> list[str]:
    return sorted(p.stem for p in BUILTIN_CONFIGS.glob("*.yaml"))


def resolve_config_path(name: str | Path, relative_to: Path | None = None) -> Path:
    """A config file path, or the name of one shipped with the package (e.g. `quickstart`)."""
    for candidate in (
        Path(name),
        (relative_to or Path.cwd()) / name,
        BUILTIN_CONFIGS / f"{name}.yaml",
        BUILTIN_CONFIGS / str(name),
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"config {name!r} not found: not a file, nor a built-in config ({builtin_configs()})"
    )


# per-name dict options a derived config replaces, not merges into: a single-corpus config that says {} means none
REPLACED_WHOLE = ("view_weights", "class_parts", "corpus_oversample")


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        both_dicts = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both_dicts and key not in REPLACED_WHOLE else value
    return merged


def read_config_file(name: str | Path, relative_to: Path | None = None) -> dict[str, Any]:
    """YAML as a dict; a top-level `base: other.yaml` is read first and this file's keys override it."""
    path = resolve_config_path(name, relative_to)
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping of sections")
    base = raw.pop("base", None)
    return _merge(read_config_file(base, path.parent), raw) if base else raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (a path or a built-in name; or start from defaults), apply overrides, validate.

    A file's `experiment` section, if any, is for `load_experiment`: a run does not read it."""
    return load_experiment(path, overrides)[0]


def load_experiment(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> tuple[RunConfig, ExperimentConfig]:
    """The run config a YAML file describes and its `experiment` section, overrides applied to either."""
    raw = read_config_file(path) if path is not None else {}
    raw = apply_overrides(raw, overrides or [])
    experiment = _build(ExperimentConfig, raw.pop("experiment", None) or {}, "experiment.")
    config = _build(RunConfig, raw, "")
    config.validate()
    return config, experiment


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    return asdict(config)


def differing_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys (`loss.mae`) whose values differ between two config dicts; a key in one only counts."""
    keys = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            keys += differing_keys(x, y, f"{prefix}{key}.")
        elif x != y:
            keys.append(prefix + key)
    return keys


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """A run config from its dict form; the `experiment` section that runs saved before 0.2 carried is dropped."""
    raw = {k: v for k, v in json.loads(json.dumps(raw)).items() if k != "experiment"}
    return _build(RunConfig, raw, "")


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
