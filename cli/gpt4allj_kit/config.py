"""Configs as validated data: the training recipe, the launch, the evaluation and the profiles.

Every loader turns a bad file or override into one `ConfigError` line naming the file, the key and the
problem (with a "did you mean" hint for unknown keys), so the CLI never shows a traceback for it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gpt4allj_kit import paths
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import read_text
from gpt4allj_kit.recipe import DEFAULT_REVISION
from gpt4allj_kit.redaction import refuse_secrets

# Upstream ships "# CHANGE" (read by YAML as null); users often leave "CHANGE", "<path>" or "TODO".
# The value upstream's config carries for `eval_steps`, a key its train.py never read.
UPSTREAM_EVAL_STEPS = 105
_PLACEHOLDER = re.compile(r"^\s*(#\s*)?(change(\s*me)?|todo|fixme|xxx|<[^>]*>|\.\.\.)\s*$", re.IGNORECASE)


def is_placeholder(value: object) -> bool:
    return value is None or (isinstance(value, str) and bool(_PLACEHOLDER.match(value)))


def _required_text(value: object) -> object:
    if is_placeholder(value):
        raise ValueError("required value is missing (null or a placeholder like '# CHANGE')")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError(f"empty ({value!r}): give a value")
    return value


# A name, path or revision: an empty or blank one would only fail later, far from the config.
Text = Annotated[str, AfterValidator(_not_blank)]
# Seeds feed numpy and torch, which take 0 <= seed < 2**32.
Seed = Annotated[int, Field(ge=0, lt=2**32)]
# How a micro-batch's rows become what the model computes (batching.py): faithful pads every row to
# max_length (upstream); the others compute the same loss on fewer padding cells.
Padding = Literal["faithful", "dynamic", "bucketed", "packed"]
PADDING_MODES: tuple[str, ...] = get_args(Padding)
Count = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    # Every float of a config is a rate, a size or a threshold: NaN and infinities are never meant.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TrainConfig(_Strict):
    """configs/train/finetune_gptj.yaml: the upstream keys with their meaning, plus the kit's."""

    # model / tokenizer
    model_name: Text
    tokenizer_name: Text
    gradient_checkpointing: bool = True
    # Upstream pushed every epoch to the hub as `<save_name>-epoch_N`; the kit never uploads (see validator).
    save_name: str | None = None

    # dataset
    streaming: bool = False
    num_proc: int = Field(64, ge=1)
    dataset_path: Text
    max_length: int = Field(1024, ge=8)
    batch_size: int = Field(32, ge=1)

    # train dynamics
    lr: float = Field(2.0e-5, gt=0)
    min_lr: float = Field(0.0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    eval_every: int = Field(500, ge=1)
    # Upstream's train.py never read it: every evaluation covered the whole validation split (see validator).
    eval_steps: int | None = UPSTREAM_EVAL_STEPS
    save_every: int = Field(500, ge=1)
    # Every N optimizer steps, each parameter's gradient norm goes to metrics.jsonl; null: never.
    log_grads_every: int | None = Field(100, ge=1)
    output_dir: Text
    # A saved `step_N/` state (or "latest", the newest in output_dir) to resume from: what --resume gives.
    checkpoint: Text | None = None
    lora: bool = False
    warmup_steps: int = Field(500, ge=0)
    num_epochs: int = Field(2, ge=1)

    # logging
    wandb: bool = False
    wandb_entity: Text | None = None
    wandb_project_name: Text | None = None
    seed: Seed = 42

    # kit additions
    revision: Text = DEFAULT_REVISION
    model_revision: Text = "main"
    padding: Padding = "faithful"
    trust_remote_code: bool = False
    tensorboard: bool = False
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    # The fetch lock whose shas the run manifest records (default: the checkout's, when it has one).
    asset_lock: Text | None = None
    # The reference commit did not shuffle (order = train_test_split's permutation); true reshuffles each
    # epoch with a sampler seeded by `seed`, so resumed runs see the same order.
    shuffle: bool = False

    @field_validator("model_name", "tokenizer_name", "dataset_path", "output_dir", mode="before")
    @classmethod
    def _required(cls, value: object) -> object:
        return _required_text(value)

    @field_validator("checkpoint", "wandb_entity", "wandb_project_name", mode="before")
    @classmethod
    def _placeholder_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and is_placeholder(value):
            raise ValueError(f"placeholder {value!r}: give a real value or null")
        return value

    @field_validator("save_name", mode="before")
    @classmethod
    def _no_hub_push(cls, value: object) -> object:
        if is_placeholder(value):
            return None  # upstream's "# CHANGE": no push asked for
        raise ValueError(
            "the kit never pushes to the hub (upstream pushed each epoch to <save_name>-epoch_N): set it to "
            "null and upload a checkpoint yourself, e.g. `hf upload REPO OUTPUT_DIR/epoch_1`"
        )

    @field_validator("eval_steps", mode="before")
    @classmethod
    def _eval_steps_is_upstream_only(cls, value: object) -> object:
        if value is None or value == UPSTREAM_EVAL_STEPS:
            return value
        raise ValueError(
            f"upstream's train.py never read it (every evaluation covers the whole validation split, here "
            f"as there), so only its upstream value {UPSTREAM_EVAL_STEPS} or null is accepted; use "
            "eval_every to evaluate less often"
        )

    @model_validator(mode="after")
    def _wandb_needs_project(self) -> TrainConfig:
        if self.wandb and self.wandb_project_name is None:
            raise ValueError("wandb is true but wandb_project_name is missing: set it, or set wandb: false")
        return self


class LaunchConfig(_Strict):
    """How `accelerate launch` is called; the documented command is the `full` profile's launch."""

    num_processes: Count | Literal["auto"] = "auto"
    num_machines: int = Field(1, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"
    dynamo_backend: Literal["no", "inductor", "eager", "aot_eager"] = "inductor"
    use_deepspeed: bool = True
    deepspeed_config_file: Text = "configs/deepspeed/ds_config_gptj.json"
    deepspeed_multinode_launcher: Text = "standard"
    cpu: bool = False


class Requirements(_Strict):
    """What a machine needs to run a profile as published; the doctor checks these."""

    gpus: int = Field(0, ge=0)
    min_gpu_memory_gb: float = Field(0, ge=0)
    bf16: bool = False
    min_free_disk_gb: float = Field(1, ge=0)
    min_cpu_cores: int = Field(1, ge=1)
    min_memory_gb: float = Field(1, ge=0)


class EvalConfig(_Strict):
    tasks: str | list[str] = "common-sense"
    limit: int | None = Field(None, ge=1)
    batch_size: Count | Literal["auto"] = "auto"
    device: Literal["auto", "cuda", "cpu"] = "auto"
    fixtures: bool = False


class Profile(_Strict):
    """configs/profiles/NAME.yaml: one way to run the whole pipeline."""

    name: Text
    description: str
    assets: Literal["hub", "tiny"] = "hub"
    seed: Seed = 0
    train_config: Text = "configs/train/finetune_gptj.yaml"
    train: dict[str, Any] = Field(default_factory=dict)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    requirements: Requirements = Field(default_factory=Requirements)
    # What evaluating alone needs (`reproduce --skip-train`); None: the same as `requirements`.
    eval_requirements: Requirements | None = None


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping, or a one-line ConfigError saying why the file cannot be one."""
    text = read_text(path, str(path), "config file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def _did_you_mean(key: str, model: type[BaseModel]) -> str:
    close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _owner_model(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel]:
    """The nested model that holds the last key of `loc`, for "did you mean" hints."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            break
    return model


def _one_line(error: dict[str, Any], model: type[BaseModel], prefix: str = "") -> str:
    loc = tuple(error.get("loc", ()))
    key = prefix + ".".join(str(p) for p in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"key '{key}': unknown key{_did_you_mean(str(loc[-1]), _owner_model(model, loc))}"
    if error["type"] == "missing":
        return f"key '{key}': required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if "input" in error and error["type"] not in ("value_error", "assertion_error") and loc:
        message += f" (got {error['input']!r})"
    return f"key '{key}': {message}"


# Which layer of a merged config a top-level key came from: (what to name, prefix of the key there).
Layers = Callable[[str], tuple[str, str]]


def validate[M: BaseModel](
    model: type[M], data: dict[str, Any], source: str, *, layers: Layers | None = None
) -> M:
    """`model` built from `data`, or a one-line ConfigError naming `source` (or, for merged data, the
    layer the faulty key came from), the key and the problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        loc = errors[0].get("loc", ())
        prefix = ""
        if layers is not None and loc:
            source, prefix = layers(str(loc[0]))
        others = ", ".join(".".join(str(p) for p in e.get("loc", ())) or "(top level)" for e in errors[1:])
        more = (
            f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''}: {others})"
            if others
            else ""
        )
        raise ConfigError(f"{source}: {_one_line(errors[0], model, prefix)}{more}") from None


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`--set key=value` items as a nested mapping; values are read as YAML scalars (1e-5, true, null)."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and raw.strip()[:1] not in ("'", '"'):
            # YAML would fold a line break to a space and drop a ` #...` tail: a path or name is kept as
            # typed, so what runs (or is refused) is what the user wrote.
            value = raw
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is not a section")
        node[leaf] = value
    return result


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied key by key, nested mappings merged rather than replaced."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else paths.project_root() / p


def load_train_config(
    path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    *,
    base_overrides: dict[str, Any] | None = None,
    base_source: str = "the profile's train section",
) -> TrainConfig:
    """The validated training config: the file, then `base_overrides` (a profile's, named `base_source`
    in errors), then `--set`. A bad value is blamed on the layer it came from."""
    file = _resolve(path) if path else paths.default_train_config()
    data = load_yaml(file)
    if base_overrides:
        data = merged(data, base_overrides)
    sets = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    if sets:
        unknown = [k for k in sets if k not in TrainConfig.model_fields]
        if unknown:
            raise ConfigError(f"--set {unknown[0]}: unknown key{_did_you_mean(unknown[0], TrainConfig)}")
        data = merged(data, sets)

    def layers(key: str) -> tuple[str, str]:
        if key in sets:
            return "--set overrides", ""
        if base_overrides and key in base_overrides:
            return base_source, "train."
        return str(file), ""

    config = validate(TrainConfig, data, str(file), layers=layers)
    # The config is written beside the run and read back by the training processes: masking a secret would
    # change what runs, so a value holding one stops here (naming the key, never the value).
    refuse_secrets(config, str(file) + (" with --set overrides" if sets else ""))
    return config


def train_config_changes(path: str | Path, config: TrainConfig) -> dict[str, Any]:
    """The keys whose value in `config` differs from what the file at `path` says (or defaults to)."""
    written = load_yaml(_resolve(path))
    changes = {}
    for key, value in config.model_dump(mode="json").items():
        default = TrainConfig.model_fields[key].get_default(call_default_factory=True)
        if written.get(key, default) != value:
            changes[key] = value
    return changes


def train_config_yaml(config: TrainConfig, header: str = "") -> str:
    """`config` as YAML that `load_train_config` reads back to an equal config; `header` becomes comments."""
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def profile_file(name_or_path: str) -> Path:
    """The file of a profile given by name (configs/profiles/NAME.yaml) or by path."""
    candidate = Path(name_or_path)
    file = candidate if candidate.suffix in (".yaml", ".yml") else paths.profile_path(name_or_path)
    if not file.exists() and candidate.suffix not in (".yaml", ".yml"):
        known = sorted(p.stem for p in paths.profile_path("x").parent.glob("*.yaml"))
        raise ConfigError(f"unknown profile '{name_or_path}' (known: {', '.join(known)})")
    return file


def load_profile(name_or_path: str) -> Profile:
    """A profile by name (configs/profiles/NAME.yaml) or by path."""
    file = profile_file(name_or_path)
    profile = validate(Profile, load_yaml(_resolve(file)), str(file))
    unknown = [k for k in profile.train if k not in TrainConfig.model_fields]
    if unknown:
        raise ConfigError(
            f"{file}: key 'train.{unknown[0]}': unknown key{_did_you_mean(unknown[0], TrainConfig)}"
        )
    return profile
