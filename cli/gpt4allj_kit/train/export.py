"""A saved training state (`RUN_DIR/step_N/`) as a plain Hugging Face model folder people can load.

The kit's training saves resumable states with accelerate's `save_state`; those are not model folders
(upstream issue #723: DeepSpeed `step_N` checkpoints could not be used after training). `export` reads one
and writes `save_pretrained` safetensors shards, config.json, the tokenizer and a manifest. Two layouts:

- **DDP** (and a single process): `step_N/model.safetensors`, the unwrapped model's full state dict.
- **DeepSpeed ZeRO-2**: `step_N/pytorch_model/` (the engine's `save_checkpoint`): `mp_rank_00_model_states.pt`
  holds the module's weights in the dtype the forward used (bf16 under bf16 mixed precision); the fp32
  master weights are partitioned across the ranks' `*_optim_states.pt`, consolidated here by DeepSpeed's own
  `deepspeed.utils.zero_to_fp32`.

The architecture and tokenizer come from the run's resolved config (`RUN_DIR/train_config.yaml`), found as
the training found them (`train.sources`). A LoRA run (`lora: true`) exports its adapter folder, or with
`merge` the base model with the adapter merged in. Everything is read and checked before the output folder
is written, and that folder appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gpt4allj_kit import paths
from gpt4allj_kit.config import TrainConfig, load_train_config
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.files import atomic_dir, check_writable, read_json_object, sha256_file
from gpt4allj_kit.train import checkpoint, sources
from gpt4allj_kit.train.launch import CONFIG_FILE

# What --dtype takes, and the torch dtype each names.
DTYPES = {"bf16": "bfloat16", "fp32": "float32"}
# Shards of at most this size (transformers 4's default): every file stays within common upload limits.
MAX_SHARD_SIZE = "5GB"
# accelerate's names for what `save_state` writes (accelerate.utils.constants: SAFE_WEIGHTS_NAME, MODEL_NAME).
DDP_WEIGHTS = "model.safetensors"
DEEPSPEED_TAG = "pytorch_model"
DEEPSPEED_MODEL_STATES = "mp_rank_00_model_states.pt"
DEEPSPEED_OPTIM_STATES = "*_optim_states.pt"

Kind = Literal["ddp", "deepspeed"]
KIND_NAMES = {"ddp": "DDP", "deepspeed": "DeepSpeed ZeRO-2"}


@dataclass(frozen=True)
class SavedState:
    """One `step_N/` as export reads it: its layout, its run's config and where training stood."""

    step_dir: Path
    run_dir: Path
    kind: Kind
    config: TrainConfig
    trainer_state: checkpoint.TrainerState

    @property
    def weights(self) -> Path:
        """The file (DDP) or folder (DeepSpeed) holding the model."""
        return self.step_dir / (DDP_WEIGHTS if self.kind == "ddp" else DEEPSPEED_TAG)


@dataclass(frozen=True)
class Weights:
    """A full state dict of the trained model (a LoRA run's: base and adapter) and where it came from."""

    tensors: dict[str, Any]
    dtype: str  # the torch dtype of `tensors`
    held: str  # the torch dtype the training held the model in
    origin: str  # in words, for the manifest and the command's output


@dataclass(frozen=True)
class ExportResult:
    """What `export_state` wrote."""

    output: Path
    source: Path
    kind: Kind
    form: Literal["full", "lora-adapter", "lora-merged"]
    dtype: str
    origin: str
    step: int
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256 (the manifest apart)


# --- what the step dir is -------------------------------------------------------------------------------


def read_saved_state(step_dir: Path) -> SavedState:
    """The state in `step_dir`, its layout recognised and its run's config read; one-line ConfigError when
    it is not a state the kit's training wrote."""
    where = f"export {step_dir}"
    if not step_dir.is_dir():
        raise ConfigError(f"{where}: no such folder (give a saved training state: RUN_DIR/step_N)")
    if not (step_dir / checkpoint.STATE_FILE).is_file():
        raise ConfigError(
            f"{where}: not a saved training state (no {checkpoint.STATE_FILE}); give RUN_DIR/step_N"
        )
    run_dir = step_dir.resolve().parent
    config_file = run_dir / CONFIG_FILE
    if not config_file.is_file():
        raise ConfigError(
            f"{config_file}: missing; export reads the run's resolved config beside its step_N/ folders"
        )
    return SavedState(
        step_dir=step_dir,
        run_dir=run_dir,
        kind=_layout(step_dir),
        config=load_train_config(config_file),
        trainer_state=_trainer_state(step_dir),
    )


def _layout(step_dir: Path) -> Kind:
    if (step_dir / DDP_WEIGHTS).is_file():
        return "ddp"
    if (step_dir / DEEPSPEED_TAG).is_dir():
        return "deepspeed"
    raise ConfigError(
        f"export {step_dir}: a state of an unknown kind: neither {DDP_WEIGHTS} (DDP) nor {DEEPSPEED_TAG}/ "
        "(DeepSpeed ZeRO-2) is in it"
    )


def _trainer_state(step_dir: Path) -> checkpoint.TrainerState:
    data = read_json_object(step_dir / checkpoint.STATE_FILE, kind="training state")
    fields = checkpoint.TrainerState.__dataclass_fields__
    try:
        return checkpoint.TrainerState(**{k: v for k, v in data.items() if k in fields})
    except TypeError as exc:
        raise ConfigError(f"{step_dir / checkpoint.STATE_FILE}: {exc}") from None


def check_output(output: Path) -> None:
    """The output is a new (or empty) folder this user can create: never a folder of someone's files."""
    if output.is_dir() and any(output.iterdir()):
        raise ConfigError(f"--output {output}: exists and is not empty; export writes a new folder")
    check_writable(output, "--output", directory=True)


def check_dtype(dtype: str | None) -> str | None:
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: expected {' or '.join(DTYPES)}")
    return dtype


def resolve_dtype(dtype: str | None, held: str) -> str:
    """The torch dtype to write: `--dtype`, else the dtype the training held the model in (`held`)."""
    if check_dtype(dtype) is None:
        return held if held in DTYPES.values() else "float32"
    return DTYPES[dtype]


# --- reading the weights -----------------------------------------------------------------------------------


def _unreadable(file: Path, exc: BaseException) -> ConfigError:
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return ConfigError(
        f"{file}: cannot be read ({detail}): a torn or partial file, or not one the training wrote; "
        "export another step_N/"
    )


def ddp_weights(state: SavedState) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(state.weights)
    except (SafetensorError, OSError) as exc:
        raise _unreadable(state.weights, exc) from None


def _torch_file(file: Path) -> Path:
    """`file`, checked to be a whole torch archive (a zip): a torn one is named here, not by torch."""
    if not file.is_file():
        raise ConfigError(f"{file}: missing; the DeepSpeed state is incomplete, export another step_N/")
    if not zipfile.is_zipfile(file):
        raise ConfigError(f"{file}: not a whole torch file: a torn or partial file; export another step_N/")
    return file


def deepspeed_module(state: SavedState) -> tuple[dict[str, Any], int]:
    """The engine's module weights (the dtype the forward used) and the data-parallel world size, after
    checking that every rank's optimizer partition is there and whole."""
    import torch

    file = _torch_file(state.weights / DEEPSPEED_MODEL_STATES)
    try:
        # Tensors and plain containers only (it holds no code to run).
        saved = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        module, world = saved["module"], int(saved["dp_world_size"])
    except (RuntimeError, EOFError, ValueError, KeyError, TypeError, OSError, pickle.UnpicklingError) as exc:
        raise _unreadable(file, exc) from None
    partitions = sorted(state.weights.glob(DEEPSPEED_OPTIM_STATES))
    if len(partitions) != world:
        raise ConfigError(
            f"{state.weights}: {len(partitions)} optimizer partitions ({DEEPSPEED_OPTIM_STATES}) for the "
            f"{world} processes that trained: the state is incomplete, export another step_N/"
        )
    for partition in partitions:
        _torch_file(partition)
    return dict(module), world


def deepspeed_fp32(state: SavedState) -> dict[str, Any]:
    """The fp32 master weights, consolidated across the ranks by DeepSpeed's own utility."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    # It prints its progress: a library says nothing, its failure is the one line below.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            return dict(get_fp32_state_dict_from_zero_checkpoint(str(state.step_dir), tag=DEEPSPEED_TAG))
        except (RuntimeError, EOFError, ValueError, KeyError, OSError) as exc:
            raise _unreadable(state.weights, exc) from None


def _dtype_name(tensors: dict[str, Any]) -> str:
    floating = [t.dtype for t in tensors.values() if t.is_floating_point()]
    return str(floating[0]).removeprefix("torch.") if floating else "float32"


def read_weights(state: SavedState, dtype: str | None) -> Weights:
    """The state's full weights in the dtype asked for (`bf16`, `fp32`, None: what the training held).

    DeepSpeed: bf16 is the module's own bf16 weights (what the forward used, equal to the fp32 master
    weights rounded); fp32 is the master weights; a module held in another dtype is cast from the master.
    DDP holds one copy: it is cast when another dtype is asked.
    """
    import torch

    if state.kind == "ddp":
        tensors = ddp_weights(state)
        held = _dtype_name(tensors)
        target = resolve_dtype(dtype, held)
        origin = f"the model's weights ({held})" + _cast_note(held, target)
        return Weights(_cast(tensors, getattr(torch, target)), target, held, origin)
    module, world = deepspeed_module(state)
    held = _dtype_name(module)
    target = resolve_dtype(dtype, held)
    if target == held == "bfloat16":
        origin = "the DeepSpeed engine's bf16 module weights (what the forward used)"
        return Weights(module, target, held, origin)
    master = deepspeed_fp32(state)
    origin = f"the fp32 master weights of {world} ranks, consolidated by deepspeed.utils.zero_to_fp32"
    return Weights(
        _cast(master, getattr(torch, target)), target, held, origin + _cast_note("float32", target)
    )


def _cast_note(held: str, target: str) -> str:
    return "" if target == held else f", cast to {target}"


def _cast(tensors: dict[str, Any], dtype: Any) -> dict[str, Any]:
    return {k: t.to(dtype) if t.is_floating_point() else t for k, t in tensors.items()}


# --- the model ---------------------------------------------------------------------------------------------


def _asset(name: str, key: str, config: TrainConfig) -> tuple[Path, dict[str, Any]]:
    """A model or tokenizer folder of the run, as the training found it: the local path, the snapshot an
    earlier fetch cached (through the run's lock), else fetched by revision."""
    found = sources.cached_source(name, config.model_revision, "model", key=key, config=config)
    return found or sources.resolve_source(name, config.model_revision, key=key)


def build_model(state: SavedState, weights: Weights, base: Path) -> Any:
    """The run's model (a LoRA run's: the peft model) holding `weights`, built without initialising any.

    The architecture is the base model's config.json; no base weights are read. Non-persistent buffers
    (GPT-J's rotary table) stay unmaterialised: `save_pretrained` never writes them.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from gpt4allj_kit.train.loop import lora_config

    architecture = sources.model_config(base, state.config)
    with warnings.catch_warnings():
        # peft 0.21 calls a transformers 5 API that warns of its own deprecation: nothing for the user.
        warnings.simplefilter("ignore", FutureWarning)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(
                architecture, trust_remote_code=state.config.trust_remote_code
            )
        if state.config.lora:
            from peft import get_peft_model

            model = get_peft_model(model, lora_config())
    _check_fits(state, weights, model)
    model.load_state_dict(weights.tensors, strict=True, assign=True)
    return model.eval()


def _check_fits(state: SavedState, weights: Weights, model: Any) -> None:
    """The saved tensors are the run's model's, name for name and shape for shape."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in weights.tensors.items()}
    run = f"{state.config.model_name}" + (" with LoRA" if state.config.lora else "")
    what = f"{state.weights}: does not hold the run's model ({run})"
    if missing := sorted(expected.keys() - saved.keys()):
        raise ConfigError(f"{what}: {len(missing)} weights missing, e.g. {missing[0]}")
    if extra := sorted(saved.keys() - expected.keys()):
        raise ConfigError(f"{what}: {len(extra)} unknown weights, e.g. {extra[0]}")
    if wrong := sorted(k for k in expected if expected[k] != saved[k]):
        name = wrong[0]
        raise ConfigError(
            f"{what}: {name} has shape {list(saved[name])}, the model's is {list(expected[name])}"
        )


def _merged(model: Any, weights: Weights, dtype: str | None) -> tuple[Any, str, str]:
    """The base model with the LoRA adapter merged in, from fp32 `weights` (one rounding, at the end),
    then cast to `dtype` (default: what the training held)."""
    import torch

    target = resolve_dtype(dtype, weights.held)
    merged = model.merge_and_unload().to(getattr(torch, target))
    return merged, target, f"{weights.origin}; LoRA merged in float32" + _cast_note("float32", target)


def _base_reference(provenance: dict[str, Any]) -> tuple[str, str | None]:
    """What an adapter names as its base: the local folder, or the hub repo at the run's commit sha."""
    if provenance.get("source") == "hub":
        return str(provenance["repo_id"]), str(provenance["sha"])
    return str(provenance["path"]), None


# --- the export ------------------------------------------------------------------------------------------


def export_state(
    step_dir: Path,
    output: Path,
    *,
    dtype: str | None = None,
    merge: bool = False,
    command: list[str] | None = None,
    max_shard_size: str = MAX_SHARD_SIZE,
) -> ExportResult:
    """Writes `output`: the model of the state in `step_dir` as a Hugging Face folder (a LoRA run's adapter,
    or with `merge` the merged model), its tokenizer and `manifest.json`. Checked before anything is
    written; one-line ConfigError (exit 2) or EnvironmentNotReady (exit 3) otherwise."""
    check_dtype(dtype)
    state = read_saved_state(step_dir)
    if merge and not state.config.lora:
        raise ConfigError(
            f"--merge: {step_dir} is a full-weight run (lora is false in {state.run_dir / CONFIG_FILE}); "
            "its export is the whole model already"
        )
    check_output(output)
    # The step dir's own files first (a torn shard is its problem), then what the run was built from.
    weights = read_weights(state, "fp32" if merge else dtype)
    base, base_source = _asset(state.config.model_name, "model_name", state.config)
    tokenizer_dir, tokenizer_source = _asset(state.config.tokenizer_name, "tokenizer_name", state.config)
    tokenizer = sources.load_tokenizer(tokenizer_dir, state.config)
    model = build_model(state, weights, base)
    form: Literal["full", "lora-adapter", "lora-merged"] = "full"
    written, origin = weights.dtype, weights.origin
    if merge:
        form, (model, written, origin) = "lora-merged", _merged(model, weights, dtype)
    elif state.config.lora:
        form = "lora-adapter"
        adapter = model.peft_config["default"]
        adapter.base_model_name_or_path, adapter.revision = _base_reference(base_source)
    with atomic_dir(output) as tmp:
        if form == "lora-adapter":
            # The kit never resizes the vocabulary: peft need not ask the base's repo whether it did.
            model.save_pretrained(tmp, safe_serialization=True, save_embedding_layers=False)
        else:
            model.save_pretrained(tmp, safe_serialization=True, max_shard_size=max_shard_size)
        tokenizer.save_pretrained(tmp)
        files = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        result = ExportResult(
            output=output,
            source=step_dir,
            kind=state.kind,
            form=form,
            dtype=written,
            origin=origin,
            step=state.trainer_state.step,
            files=files,
        )
        _write_manifest(tmp, result, state, command, {"model": base_source, "tokenizer": tokenizer_source})
    return result


def _write_manifest(
    folder: Path,
    result: ExportResult,
    state: SavedState,
    command: list[str] | None,
    assets: dict[str, Any],
) -> None:
    from dataclasses import asdict

    from gpt4allj_kit import manifest
    from gpt4allj_kit.train.loop import fetch_lock

    config_file = state.run_dir / CONFIG_FILE
    manifest.write_manifest(
        folder / paths.MANIFEST,
        stage="export",
        command=command or ["gpt4allj-kit", "export", str(state.step_dir)],
        config=state.config,
        source={
            "step_dir": str(state.step_dir.resolve()),
            "kind": KIND_NAMES[state.kind],
            "trainer_state": asdict(state.trainer_state),
            "train_config": {"path": str(config_file), "sha256": sha256_file(config_file)},
            "run_manifest": _run_manifest(state.run_dir),
        },
        form=result.form,
        dtype=result.dtype,
        weights_from=result.origin,
        assets=assets,
        fetch_lock=fetch_lock(state.config),
        files=result.files,
    )


def _run_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The training's own manifest (written when it ended): its hash, kit version and commit."""
    file = run_dir / paths.MANIFEST
    if not file.is_file():
        return None  # a running or stopped training has none yet
    try:
        data = read_json_object(file, kind="run manifest")
    except ConfigError:
        return {"path": str(file), "sha256": sha256_file(file), "readable": False}
    environment = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    return {
        "path": str(file),
        "sha256": sha256_file(file),
        "kit_version": environment.get("kit_version"),
        "git": environment.get("git"),
    }
