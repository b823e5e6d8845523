"""What a training run directory says about itself, and the facts rules are written against.

A run directory is a `reproduce` run (its `train/`) or a training's output dir. What it holds, by when:
`train_config.yaml` (what the launch read) from the start, `trace.jsonl` from the first step (a launch
record per start or resume, then a line per optimizer step), `manifest.json` at the end. Facts come from
the freshest source that has them, so a running training is checked as far as it got.

Facts (`run.`):
- `config.<key>`: the run's resolved training config (train_config.yaml, else the manifest's)
- `num_processes`, `gradient_accumulation_steps`, `mixed_precision`, `zero_stage` (null without DeepSpeed),
  `distributed_type`: what accelerate ran (the trace's launch records, else the manifest)
- `optimizer.name|betas|eps|weight_decay`: the optimizer that ran (AdamW whatever its implementation)
- `data_rows`, `train_rows`, `steps_per_epoch`, `total_steps`: the loaded data and the loop's counts
- `kit_version`, `lock_sha256`: the kit and its package lock (requirements/lock.txt) that trained
`recipe.`: `config.<key>` (the recipe profile's resolved training config, at the run's revision),
`num_processes`, `mixed_precision`, `zero_stage`, `optimizer.name|betas|eps`. `kit.`: `version`,
`lock_sha256` of the verifying kit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt4allj_kit import paths
from gpt4allj_kit.config import TrainConfig, load_profile, load_train_config, validate
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import read_json_object
from gpt4allj_kit.trace.layout import Layout
from gpt4allj_kit.trace.records import LaunchRecord, Trace, read_trace
from gpt4allj_kit.verify.rules import Changed, RuleSet, UnknownFact

CONFIG_FILE = "train_config.yaml"


@dataclass(frozen=True)
class TrainingRun:
    """A training's directory as read: each part None when it does not hold it (yet)."""

    path: Path  # what was asked for
    train_dir: Path
    kind: str  # "reproduce run" or "training"
    config: TrainConfig | None
    manifest: dict[str, Any] | None
    trace: Trace | None
    lock: Path | None
    profile: str | None  # a reproduce run's profile

    @property
    def finished(self) -> bool:
        """The loop writes the manifest last: a run with one has ended normally."""
        return self.manifest is not None

    @property
    def launches(self) -> list[LaunchRecord]:
        return self.trace.launches if self.trace else []

    @property
    def launch(self) -> LaunchRecord | None:
        return self.launches[-1] if self.launches else None

    @property
    def revision(self) -> str | None:
        return self.config.revision if self.config else None


def _training_dir(path: Path) -> tuple[Path, str, str | None]:
    if not path.exists():
        raise ConfigError(f"{path}: no such directory")
    if not path.is_dir():
        raise ConfigError(f"{path}: is a file, not a run directory")
    if (path / paths.RUN_STATE).is_file():
        state = read_json_object(path / paths.RUN_STATE, kind="run state file")
        train = path / paths.TRAIN_DIR
        if not train.is_dir():
            raise ConfigError(f"{path}: this reproduce run holds no training (no {paths.TRAIN_DIR}/)")
        profile = state.get("profile")
        return train, "reproduce run", profile if isinstance(profile, str) else None
    return path, "training", None


def holds_training(path: Path) -> bool:
    """Whether `path` (a reproduce run or training dir) holds a training that `read_training` reads."""
    train = path / paths.TRAIN_DIR if (path / paths.RUN_STATE).is_file() else path
    if (train / CONFIG_FILE).exists() or (train / paths.TRACE).exists():
        return True
    return _is_train_manifest(train / paths.MANIFEST)


def _is_train_manifest(file: Path) -> bool:
    if not file.is_file():
        return False
    try:
        return read_json_object(file).get("stage") == "train"
    except ConfigError:
        return False


def read_training(path: Path) -> TrainingRun:
    """The training in `path` (a reproduce run dir or a training output dir); a one-line ConfigError when
    it holds none or a part of it is damaged (naming the file)."""
    path = path.expanduser()
    train_dir, kind, profile = _training_dir(path)
    config_file, manifest_file, trace_file = (
        train_dir / CONFIG_FILE,
        train_dir / paths.MANIFEST,
        train_dir / paths.TRACE,
    )
    if not any(f.exists() for f in (config_file, manifest_file, trace_file)):
        raise ConfigError(
            f"{path}: not a training directory (no {paths.TRACE}, {CONFIG_FILE} or {paths.MANIFEST})"
        )
    manifest = read_json_object(manifest_file, kind="manifest") if manifest_file.exists() else None
    if manifest is not None and manifest.get("stage") != "train":
        raise ConfigError(
            f"{manifest_file}: key 'stage': {manifest.get('stage')!r}, not a training's manifest"
        )
    config = _config(config_file, manifest)
    trace = read_trace(trace_file) if trace_file.exists() else None
    return TrainingRun(path, train_dir, kind, config, manifest, trace, _lock(path, config, manifest), profile)


def _config(file: Path, manifest: dict[str, Any] | None) -> TrainConfig | None:
    if file.exists():
        return load_train_config(file)
    if manifest is not None and isinstance(manifest.get("config"), dict):
        return validate(TrainConfig, manifest["config"], f"{file.parent / paths.MANIFEST} (key 'config')")
    return None


def _lock(path: Path, config: TrainConfig | None, manifest: dict[str, Any] | None) -> Path | None:
    """The asset lock the run used: its config's `asset_lock`, the manifest's, or the run dir's."""
    recorded = (manifest or {}).get("fetch_lock")
    candidates = [
        config.asset_lock if config and config.asset_lock else None,
        recorded.get("path") if isinstance(recorded, dict) else None,
        str(path / paths.LOCK_NAME),
    ]
    return next((Path(c) for c in candidates if isinstance(c, str) and Path(c).is_file()), None)


# --- facts ---------------------------------------------------------------------------------------------


def _from_launches(run: TrainingRun, key: str) -> Any:
    """A launch-record setting; `Changed` when launches disagree; absent: UnknownFact."""
    seen = [(r.step, r.model_dump()[key]) for r in run.launches if key in r.model_dump()]
    if not seen:
        raise UnknownFact(f"run.{key}")
    values = [v for _, v in seen]
    if all(v == values[0] for v in values):
        return values[0]
    changes = [seen[0]] + [seen[i] for i in range(1, len(seen)) if seen[i][1] != seen[i - 1][1]]
    return Changed(tuple(changes))


def _setting(run: TrainingRun, key: str, manifest_keys: tuple[str, ...]) -> Any:
    try:
        return _from_launches(run, key)
    except UnknownFact:
        value: Any = run.manifest
        for part in manifest_keys:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None and not (key == "zero_stage" and run.manifest is not None):
            return UnknownFact(f"run.{key}", "no trace launch record and no manifest")
        return value


def optimizer_name(kind: str | None, class_path: str | None) -> str | None:
    """AdamW whatever implementation ran it (torch's, DeepSpeed's FusedAdam in AdamW mode)."""
    name = kind or (class_path or "").rsplit(".", 1)[-1] or None
    return "AdamW" if name and name.lower() == "adamw" else name


def _optimizer(run: TrainingRun) -> dict[str, Any] | UnknownFact:
    described = None
    if run.launch is not None:
        described = run.launch.model_dump().get("optimizer")
    if described is None and run.manifest is not None and isinstance(run.manifest.get("optimizer"), dict):
        ds_optimizer = (run.manifest.get("deepspeed") or {}).get("optimizer") or {}
        described = {**run.manifest["optimizer"], "type": ds_optimizer.get("type")}
    if not isinstance(described, dict):
        return UnknownFact("run.optimizer", "no trace launch record and no manifest")
    return {
        "name": optimizer_name(described.get("type"), described.get("class")),
        "betas": described.get("betas"),
        "eps": described.get("eps"),
        "weight_decay": described.get("weight_decay"),
    }


def run_facts(run: TrainingRun) -> dict[str, Any]:
    zero = _setting(run, "zero_stage", ("deepspeed", "zero_optimization", "stage"))
    launch = run.launch
    steps = (run.manifest or {}).get("steps") or {}
    data = ((run.manifest or {}).get("assets") or {}).get("data") or {}
    env = (run.manifest or {}).get("environment") or {}
    extra = launch.model_dump() if launch is not None else {}
    return {
        "config": run.config.model_dump(mode="json") if run.config else UnknownFact("run.config"),
        "num_processes": _setting(run, "num_processes", ("accelerate", "num_processes")),
        "gradient_accumulation_steps": _setting(
            run, "gradient_accumulation_steps", ("accelerate", "gradient_accumulation_steps")
        ),
        "mixed_precision": _setting(run, "mixed_precision", ("accelerate", "mixed_precision")),
        "distributed_type": _setting(run, "distributed_type", ("accelerate", "distributed_type")),
        "zero_stage": zero,
        "optimizer": _optimizer(run),
        "data_rows": _first(launch.data_rows if launch else None, data.get("rows"), "run.data_rows"),
        "train_rows": _first(launch.train_rows if launch else None, None, "run.train_rows"),
        "steps_per_epoch": _first(
            launch.steps_per_epoch if launch else None, steps.get("steps_per_epoch"), "run.steps_per_epoch"
        ),
        "total_steps": _first(
            launch.total_steps if launch else None, steps.get("total_steps"), "run.total_steps"
        ),
        "kit_version": _first(env.get("kit_version"), extra.get("kit_version"), "run.kit_version"),
        "lock_sha256": _first(env.get("lock_sha256"), extra.get("lock_sha256"), "run.lock_sha256"),
    }


def _first(a: Any, b: Any, name: str) -> Any:
    if a is not None:
        return a
    if b is not None:
        return b
    return UnknownFact(name, "no trace launch record and no manifest records it")


@dataclass(frozen=True)
class Recipe:
    """A recipe's resolved config and launch, at a revision."""

    rules: RuleSet
    config: TrainConfig
    num_processes: int | None
    mixed_precision: str
    zero_stage: int | None
    optimizer: dict[str, Any]

    @property
    def layout(self) -> Layout | None:
        if self.num_processes is None:
            return None
        return Layout(self.num_processes, self.config.batch_size, self.config.gradient_accumulation_steps)

    def facts(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "num_processes": self.num_processes
            if self.num_processes is not None
            else UnknownFact("recipe.num_processes", "the profile says 'auto'"),
            "mixed_precision": self.mixed_precision,
            "zero_stage": self.zero_stage,
            "optimizer": self.optimizer,
        }


def resolve_recipe(rules: RuleSet, revision: str | None) -> Recipe:
    """The recipe of `rules` (its profile's train section over its training config, its launch and
    DeepSpeed JSON) at the run's data `revision`."""
    from gpt4allj_kit.train import launch, optim

    profile = load_profile(rules.profile)
    base = dict(profile.train)
    if revision is not None:
        base["revision"] = revision
    config = load_train_config(profile.train_config, base_overrides=base, base_source=rules.source)
    ds_config = launch.load_deepspeed_config(profile.launch)
    betas, eps = optim.adam_settings(ds_config)
    kind = (
        (ds_config or {}).get("optimizer", {}).get("type")
        if optim.uses_deepspeed_optimizer(ds_config)
        else None
    )
    zero = (
        (ds_config or {}).get("zero_optimization", {}).get("stage") if profile.launch.use_deepspeed else None
    )
    processes = profile.launch.num_processes
    return Recipe(
        rules=rules,
        config=config,
        num_processes=processes if isinstance(processes, int) else None,
        mixed_precision=profile.launch.mixed_precision,
        zero_stage=zero,
        optimizer={"name": optimizer_name(kind, "torch.optim.AdamW"), "betas": list(betas), "eps": eps},
    )


def kit_facts() -> dict[str, Any]:
    from gpt4allj_kit import __version__, manifest

    return {"version": __version__, "lock_sha256": manifest.lock_sha256()}


def is_tiny(run: TrainingRun) -> bool:
    """Whether the run trained the kit's tiny generated GPT-J (the smoke world), not a real model."""
    if run.profile is not None:
        return _profile_assets(run.profile) == "tiny"
    if run.config is None:
        return False
    model = Path(run.config.model_name)
    return (model.parent / "ASSETS.json").is_file() or model.parent.name.startswith("tiny-v")


def _profile_assets(name: str) -> str | None:
    try:
        return load_profile(name).assets
    except ConfigError:
        return None
