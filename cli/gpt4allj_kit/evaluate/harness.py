"""Zero-shot common-sense evaluation through lm-evaluation-harness's Python API and its own task definitions.

One evaluated model lands in `<output>/<label>/`: `results.json` (what lm-eval's own writer produces, kept
unchanged), `summary.json` (the kit's per-task metrics as fractions, the evaluation settings as asked and
as applied, task versions and hashes, dataset revisions), `manifest.json`, `samples/<task>.jsonl` (lm-eval's
per-document records) and `lm-eval.log`. The folder
appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from gpt4allj_kit import paths
from gpt4allj_kit.errors import ConfigError, EnvironmentNotReady
from gpt4allj_kit.evaluate.fixtures import read_fixtures_info, wrapper_task_yaml
from gpt4allj_kit.files import (
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    check_writable,
    json_type,
    read_json_object,
    sha256_file,
)
from gpt4allj_kit.manifest import now_iso, write_manifest
from gpt4allj_kit.recipe import EVAL_TASKS
from gpt4allj_kit.redaction import RedactedLog, RedactedStream, redact_data

SUITE_ALIASES: dict[str, tuple[str, ...]] = {"common-sense": EVAL_TASKS}
DTYPES = ("auto", "float32", "bfloat16", "float16")
_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_LABEL = re.compile(r"^[\w.@+-]+$")
_STDERR_SUFFIX = "_stderr"
# A LoRA (peft) adapter folder or repo: no config.json, this file naming the model it adapts (upstream #108).
ADAPTER_CONFIG = "adapter_config.json"
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelSource:
    """One model to evaluate: a local folder, and where it came from when it came from the hub."""

    label: str
    path: Path
    repo_id: str | None = None
    revision: str | None = None
    sha: str | None = None
    # A LoRA adapter: `path` is the adapter folder and `base` the model its adapter_config.json names;
    # lm-eval loads them as `pretrained=<base>,peft=<adapter>`.
    base: ModelSource | None = None

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "label": self.label,
            "path": str(self.path),
            "repo_id": self.repo_id,
            "revision": self.revision,
            "sha": self.sha,
        }
        if self.base is not None:
            record["base"] = self.base.record()
        return record


@dataclass(frozen=True)
class EvalOptions:
    tasks: tuple[str, ...] = EVAL_TASKS
    batch_size: int | Literal["auto"] = "auto"
    limit: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    include_path: Path | None = None
    lock: Path | None = None
    command: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass(frozen=True)
class EvalOutcome:
    """Where one model's results went and what they say (summary.json's content)."""

    label: str
    out_dir: Path
    summary: dict[str, Any]


# --- inputs ------------------------------------------------------------------------------------------


def parse_tasks(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Task names from `common-sense`, `t1,t2` or a list; duplicates dropped, order kept."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in (i.strip() for i in items):
        for name in SUITE_ALIASES.get(item, (item,)):
            if name and name not in names:
                names.append(name)
    if not names:
        raise ConfigError("--tasks is empty: give common-sense or comma-separated lm-eval task names")
    return tuple(names)


def parse_batch_size(value: str | int) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    try:
        size = int(value)
    except ValueError:
        raise ConfigError(f"--batch-size must be 'auto' or a positive integer, not {value!r}") from None
    if size < 1:
        raise ConfigError(f"--batch-size must be 'auto' or a positive integer, not {value!r}")
    return size


def check_limit(limit: int | None) -> int | None:
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be a positive number of documents per task, not {limit}")
    return limit


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    return dtype


def check_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", device):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")
    return device


def resolve_device(device: str) -> str:
    """`auto` → cuda when torch sees a GPU, else cpu; `cuda` without a GPU is an environment error."""
    check_device(device)
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EnvironmentNotReady(f"--device {device}: torch sees no CUDA GPU here; use --device cpu")
    return device


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def _is_adapter_dir(path: Path) -> bool:
    return (path / ADAPTER_CONFIG).is_file() and not _is_model_dir(path)


def _is_evaluable_dir(path: Path) -> bool:
    return _is_model_dir(path) or _is_adapter_dir(path)


def check_model_dir(path: Path) -> str:
    """The model type of the model folder `path`, checked before anything loads it: a one-line ConfigError
    naming its config.json when transformers could not build a model from it (missing, not JSON, no
    known `model_type`), instead of a transformers traceback after minutes of task indexing."""
    file = path / "config.json"
    config = read_json_object(file, kind="model config (config.json)")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type.strip():
        got = (
            "missing"
            if "model_type" not in config
            else "null"
            if model_type is None
            else f"{json_type(model_type)} {model_type!r}"
        )
        raise ConfigError(
            f"{file}: key 'model_type': {got}; a model config names its architecture there (GPT-J: 'gptj')"
        )
    # Imports torch (seconds): only reached by a config that names a type.
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if model_type not in CONFIG_MAPPING_NAMES:
        close = difflib.get_close_matches(model_type, list(CONFIG_MAPPING_NAMES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"{file}: key 'model_type': {model_type!r} is not an architecture this transformers knows{hint}"
        )
    return model_type


def training_run_models(run_dir: Path) -> list[Path]:
    """The checkpoints a training output dir saved: epoch_N/ in epoch order, then final/ (models, or a
    LoRA run's adapters)."""
    epochs = [
        (int(m.group(1)), p)
        for p in run_dir.iterdir()
        if (m := _EPOCH_DIR.match(p.name)) and _is_evaluable_dir(p)
    ]
    found = [p for _, p in sorted(epochs)]
    if _is_evaluable_dir(run_dir / "final"):
        found.append(run_dir / "final")
    return found


def _checked_label(label: str) -> str:
    if not _LABEL.match(label):
        raise ConfigError(f"--label {label!r}: use letters, digits and . _ - @ + only (it names a folder)")
    return label


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or model.count("/") != 1 or (os.sep != "/" and os.sep in model)


def resolve_models(model: str, *, revision: str | None = None, label: str | None = None) -> list[ModelSource]:
    """What `--model` names: a model folder, a LoRA adapter folder (with its base model), a training output
    dir (each epoch, final), or a hub repo (a model's or an adapter's)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if revision:
            raise ConfigError(f"--revision applies to hub repo ids, not to the local folder {model}")
        if _is_evaluable_dir(path):
            return [
                _with_adapter_base(ModelSource(_checked_label(label or path.resolve().name), path.resolve()))
            ]
        checkpoints = training_run_models(path)
        if not checkpoints:
            raise ConfigError(
                f"{model}: neither a model folder (config.json), a LoRA adapter folder ({ADAPTER_CONFIG}) "
                "nor a training output dir (epoch_N/, final/)"
            )
        if label:
            raise ConfigError(
                "--label names one model; a training dir's models are labelled epoch_N and final"
            )
        return [_with_adapter_base(ModelSource(p.name, p.resolve())) for p in checkpoints]
    if path.exists():
        raise ConfigError(f"{model}: a file, not a model folder")
    if _looks_like_path(model) or not _REPO_ID.match(model):
        raise ConfigError(f"{model}: no such model folder (and not a hub repo id like org/name)")
    return [_with_adapter_base(_hub_model(model, revision or "main", label))]


def _with_adapter_base(source: ModelSource) -> ModelSource:
    """`source`, with the base model resolved when it is a LoRA adapter."""
    return replace(source, base=adapter_base(source.path)) if _is_adapter_dir(source.path) else source


def adapter_base(adapter: Path) -> ModelSource:
    """The model a LoRA adapter folder adapts: its adapter_config.json's `base_model_name_or_path`, a local
    folder or a hub repo id (fetched by revision: the config's `revision`, else main)."""
    file = adapter / ADAPTER_CONFIG
    config = read_json_object(file, kind=f"adapter config ({ADAPTER_CONFIG})")
    name, revision = config.get("base_model_name_or_path"), config.get("revision")
    key = f"{file}: key 'base_model_name_or_path'"
    if not isinstance(name, str) or not name.strip():
        got = (
            "missing"
            if "base_model_name_or_path" not in config
            else "null"
            if name is None
            else f"{json_type(name)} {name!r}"
        )
        raise ConfigError(f"{key}: {got}; an adapter names the model it adapts there")
    if revision is not None and not isinstance(revision, str):
        raise ConfigError(f"{file}: key 'revision': expected a string, got {json_type(revision)}")
    local = Path(name).expanduser()
    if local.is_dir():
        base = ModelSource(label=local.resolve().name, path=local.resolve())
    elif _looks_like_path(name) or not _REPO_ID.match(name):
        raise ConfigError(f"{key}: {name}: no such model folder (and not a hub repo id like org/name)")
    else:
        base = _hub_model(name, revision or "main", None)
    if _is_adapter_dir(base.path):
        raise ConfigError(f"{key}: {name} is an adapter itself; the base must be a model (config.json)")
    return base


def check_source(source: ModelSource) -> str:
    """`check_model_dir` of the model lm-eval loads (an adapter's base), after the adapter's own files."""
    if source.base is None:
        return check_model_dir(source.path)
    if not any((source.path / name).is_file() for name in _ADAPTER_WEIGHTS):
        raise ConfigError(f"{source.path}: a LoRA adapter without weights ({' or '.join(_ADAPTER_WEIGHTS)})")
    return check_model_dir(source.base.path)


def lm_eval_model_args(source: ModelSource, dtype: str) -> dict[str, Any]:
    """lm-eval's `hf` model arguments: the model folder, or an adapter's base plus `peft=` the adapter
    (with the adapter's tokenizer when it ships one, as an exported adapter does)."""
    args: dict[str, Any] = {"pretrained": str(source.path), "dtype": dtype, "trust_remote_code": False}
    if source.base is not None:
        args |= {"pretrained": str(source.base.path), "peft": str(source.path)}
        if any((source.path / name).is_file() for name in _TOKENIZER_FILES):
            args["tokenizer"] = str(source.path)
    return args


def _hub_model(repo_id: str, revision: str, label: str | None) -> ModelSource:
    from gpt4allj_kit.fetch.snapshot import fetch_snapshot

    snap = fetch_snapshot(repo_id, repo_type="model", revision=revision)
    default = f"{repo_id.split('/')[-1]}@{revision}"
    return ModelSource(
        label=_checked_label(label or default),
        path=snap.path,
        repo_id=repo_id,
        revision=revision,
        sha=snap.sha,
    )


# --- lm-eval ----------------------------------------------------------------------------------------


def _lock_pins(lock_path: Path, tasks: tuple[str, ...], manager: Any) -> dict[str, dict[str, Any]]:
    """Per task, the fetch lock's dataset entry for the task's dataset repo, when the lock has one."""
    from gpt4allj_kit.fetch.lock import read_lock

    lock = read_lock(lock_path)
    pins: dict[str, dict[str, Any]] = {}
    for task in tasks:
        cfg = _task_config(manager, task)
        matches = [
            a for a in lock.assets if a.repo_type == "dataset" and a.repo_id == cfg.get("dataset_path")
        ]
        if len(matches) > 1:
            revs = ", ".join(a.revision for a in matches)
            raise ConfigError(f"{lock_path}: several revisions of {matches[0].repo_id} ({revs}); keep one")
        if matches:
            pins[task] = {
                "repo_id": matches[0].repo_id,
                "revision": matches[0].revision,
                "sha": matches[0].sha,
            }
    return pins


def _task_config(manager: Any, task: str) -> dict[str, Any]:
    entry = manager.task_index.get(task)
    return dict(entry.cfg or {}) if entry is not None else {}


def _write_pin_wrappers(pins: dict[str, dict[str, Any]], manager: Any, folder: Path) -> None:
    """Wrapper YAMLs that load each pinned task's dataset at the locked commit sha."""
    for task, pin in pins.items():
        entry = manager.task_index[task]
        kwargs = dict(_task_config(manager, task).get("dataset_kwargs") or {})
        kwargs["revision"] = pin["sha"]
        yaml_text = wrapper_task_yaml(Path(entry.yaml_path), task, {"dataset_kwargs": kwargs})
        atomic_write_text(folder / f"{task}.yaml", yaml_text)


def task_manager(include_paths: list[Path]) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(p) for p in include_paths] or None)


def check_tasks_known(tasks: tuple[str, ...], manager: Any) -> None:
    known = set(manager.all_subtasks)
    for task in tasks:
        if task not in known:
            close = difflib.get_close_matches(task, sorted(known | set(EVAL_TASKS)), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown task {task!r}{hint}; common-sense = {','.join(EVAL_TASKS)}")


@contextlib.contextmanager
def lm_eval_logging_to(log_file: Path) -> Iterator[None]:
    """lm-eval's log records, warnings and progress bars go to `log_file` instead of the terminal."""
    names = ("lm_eval", "transformers", "datasets", "accelerate", "huggingface_hub")
    loggers = [logging.getLogger(n) for n in names]
    saved = [(lg, lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a", encoding="utf-8") as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(RedactedLog("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
        for lg in loggers:
            lg.handlers = [handler]
            lg.propagate = False
            lg.setLevel(logging.INFO)
        try:
            # tqdm and warnings write to sys.stderr at call time; the CLI's own output stays on stdout.
            with contextlib.redirect_stderr(RedactedStream(fh)), _child_stderr_to(fh):
                yield
        finally:
            for lg, handlers, propagate, level in saved:
                lg.handlers = handlers
                lg.propagate = propagate
                lg.setLevel(level)


@contextlib.contextmanager
def _child_stderr_to(fh: Any) -> Iterator[None]:
    """fd 2 pointed at `fh`: lm-eval runs `git describe`, whose complaints would reach the user."""
    fh.flush()
    saved = os.dup(2)
    try:
        os.dup2(fh.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _is_main_process() -> bool:
    # Under `accelerate launch` lm-eval runs data-parallel; only rank 0 gets results back and writes them.
    return int(os.environ.get("RANK", "0")) == 0 and int(os.environ.get("LOCAL_RANK", "0")) == 0


def run_lm_eval(
    source: ModelSource,
    options: EvalOptions,
    manager: Any,
    device: str,
    tracker_dir: Path,
) -> dict[str, Any] | None:
    """lm-eval's results for `source`, written by lm-eval's own EvaluationTracker into `tracker_dir`.

    The call mirrors what the `lm_eval` command line does (same defaults, seeds, sample logging), so its
    numbers and task hashes equal the command line's on the same model, tasks and data.
    """
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tracker = EvaluationTracker(output_path=str(tracker_dir))
    model_args = lm_eval_model_args(source, options.dtype)
    results = simple_evaluate(
        model="hf",
        model_args=model_args,
        tasks=list(options.tasks),
        batch_size=options.batch_size,
        device=device,
        limit=options.limit,
        log_samples=True,
        evaluation_tracker=tracker,
        task_manager=manager,
    )
    if results is None:
        return None
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    return results


# --- outputs ----------------------------------------------------------------------------------------


def task_metrics(task_results: dict[str, Any]) -> dict[str, float | None]:
    """`{"acc": .., "acc_stderr": .., "acc_norm": ..}` from lm-eval's `"acc,none"` keys (filter `none`)."""
    metrics: dict[str, float | None] = {}
    for key, value in task_results.items():
        name, _, filt = key.partition(",")
        if filt != "none":
            continue
        metrics[name] = value if isinstance(value, int | float) else None
    return metrics


def dataset_revisions(
    results: dict[str, Any], pins: dict[str, dict[str, Any]], include_path: Path | None
) -> dict[str, dict[str, Any]]:
    """Which data each task read: the lock's commit, local files (with sha256), or the hub default branch."""
    revisions: dict[str, dict[str, Any]] = {}
    for task, cfg in results["configs"].items():
        kwargs = cfg.get("dataset_kwargs") or {}
        record: dict[str, Any] = {
            "dataset_path": cfg.get("dataset_path"),
            "dataset_name": cfg.get("dataset_name"),
        }
        if cfg.get("dataset_path") == "json" and "data_files" in kwargs:
            files = kwargs["data_files"]
            files = files if isinstance(files, dict) else {"train": files}
            record["source"] = "local-files"
            record["data_files"] = {
                split: {"path": str(p), "sha256": sha256_file(Path(p)) if Path(p).is_file() else None}
                for split, p in files.items()
            }
            record["fixtures"] = read_fixtures_info(include_path) if include_path else None
        elif task in pins:
            record |= {"source": "lock", **pins[task]}
        else:
            record["source"] = "task-config"
            # The built-in definitions pin no revision: the hub's default branch at download time is used.
            record["revision"] = kwargs.get("revision")
        revisions[task] = record
    return revisions


def eval_settings(results: dict[str, Any], options: EvalOptions, device: str) -> dict[str, Any]:
    """The settings that can move the numbers, as asked and as lm-eval applied them: the batch size asked
    for and the sizes lm-eval's `auto` detection chose ([] for a fixed size), the dtype asked for and the one
    the loaded weights had, the device, lm-eval's version and each task's version."""
    config = results.get("config") or {}
    model_dtype = config.get("model_dtype")
    return {
        "batch_size": options.batch_size,
        "batch_sizes_detected": [int(b) for b in config.get("batch_sizes") or []],
        "dtype": options.dtype,
        "model_dtype": str(model_dtype) if model_dtype else None,
        "device": device,
        "lm_eval_version": results.get("lm_eval_version"),
        "task_versions": results.get("versions", {}),
    }


def build_summary(
    source: ModelSource,
    results: dict[str, Any],
    revisions: dict[str, dict[str, Any]],
    options: EvalOptions,
    device: str,
) -> dict[str, Any]:
    return {
        "kind": "gpt4allj-kit eval summary",
        "model": source.repo_id or str(source.path),
        "revision": source.revision,
        "sha": source.sha,
        "label": source.label,
        "suite": "common-sense" if set(options.tasks) == set(EVAL_TASKS) else "custom",
        "tasks": {task: task_metrics(results["results"][task]) for task in options.tasks},
        "n_samples": {task: results.get("n-samples", {}).get(task) for task in options.tasks},
        "limit": options.limit,
        "num_fewshot": results.get("n-shot", {}),
        **eval_settings(results, options, device),
        "task_hashes": results.get("task_hashes", {}),
        "task_datasets": revisions,
        "fixtures": str(options.include_path) if options.include_path else None,
        # A LoRA adapter: "model" is the adapter, evaluated on this base model.
        **({"base_model": source.base.record()} if source.base is not None else {}),
    }


def _collect_tracker_files(tracker_dir: Path, out: Path) -> Path:
    """Moves lm-eval's results_<date>.json to `out/results.json` byte for byte, samples to `out/samples/`."""
    found = sorted(tracker_dir.rglob("results_*.json"))
    if len(found) != 1:
        raise RuntimeError(f"lm-eval wrote {len(found)} results files under {tracker_dir}, expected 1")
    shutil.move(str(found[0]), out / paths.RESULTS)
    samples_dir = out / "samples"
    samples_dir.mkdir()
    for sample in sorted(tracker_dir.rglob("samples_*.jsonl")):
        task = re.sub(r"^samples_(.+)_\d{4}-\d\d-\d\dT[\d.-]+$", r"\1", sample.stem)
        shutil.move(str(sample), samples_dir / f"{task}.jsonl")
    return out / paths.RESULTS


def evaluate_model(
    source: ModelSource,
    options: EvalOptions,
    output: Path,
    *,
    manager: Any,
    pins: dict[str, dict[str, Any]],
    device: str,
) -> EvalOutcome | None:
    """Evaluates one model into `output/<label>/`; None on a non-main data-parallel rank."""
    started = now_iso()
    target = output / source.label
    if not _is_main_process():
        with tempfile.TemporaryDirectory() as tmp, lm_eval_logging_to(Path(tmp) / "lm-eval.log"):
            run_lm_eval(source, options, manager, device, Path(tmp))
        return None
    with atomic_dir(target) as out:
        tracker_dir = out / ".lm-eval"
        with lm_eval_logging_to(out / "lm-eval.log"):
            results = run_lm_eval(source, options, manager, device, tracker_dir)
        assert results is not None  # rank 0 always gets results back
        results_file = _collect_tracker_files(tracker_dir, out)
        shutil.rmtree(tracker_dir)
        revisions = dataset_revisions(results, pins, options.include_path)
        summary = build_summary(source, results, revisions, options, device)
        atomic_write_json(out / paths.SUMMARY, redact_data(summary))
        write_manifest(
            out / paths.MANIFEST,
            stage="eval",
            command=options.command,
            config={
                "tasks": list(options.tasks),
                "batch_size": options.batch_size,
                "limit": options.limit,
                "device": device,
                "dtype": options.dtype,
                "include_path": options.include_path,
                "lock": options.lock,
                "trust_remote_code": False,
            },
            started=started,
            model=source.record(),
            lm_eval_version=results.get("lm_eval_version"),
            settings=eval_settings(results, options, device),
            task_hashes=results.get("task_hashes", {}),
            task_datasets=revisions,
            task_versions=results.get("versions", {}),
            results_sha256=sha256_file(results_file),
        )
    return EvalOutcome(label=source.label, out_dir=target, summary=summary)


def _check_hub_endpoint() -> None:
    """lm-eval reads task datasets from the hub through `datasets`, outside the kit's fetch: the endpoint's
    rule (no token in clear over plain http) is checked before it starts, as the fetch does."""
    from gpt4allj_kit.fetch.cache import offline_mode
    from gpt4allj_kit.fetch.endpoint import check_endpoint

    if not offline_mode():
        check_endpoint()


def evaluate(
    sources: list[ModelSource],
    options: EvalOptions,
    output: Path,
    *,
    progress: Progress | None = None,
) -> list[EvalOutcome]:
    """Evaluates every model in `sources` on `options.tasks`; each model's results in `output/<label>/`."""
    say = progress or (lambda _msg: None)
    labels = [s.label for s in sources]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"two models would share one output folder: labels {labels}")
    if options.include_path is not None and not options.include_path.is_dir():
        raise ConfigError(f"--fixtures {options.include_path}: no such folder")
    if options.lock is not None and not options.lock.exists():
        raise ConfigError(f"--lock {options.lock}: no such file")
    # Everything a user can get wrong is checked before lm-eval indexes its tasks and loads a model.
    check_writable(output, directory=True)
    if options.lock is not None:
        from gpt4allj_kit.fetch.lock import read_lock

        read_lock(options.lock)
    for source in sources:
        check_source(source)
    device = resolve_device(options.device)
    _check_hub_endpoint()
    say("indexing lm-eval tasks")
    with tempfile.TemporaryDirectory(prefix="gpt4allj-kit-tasks-") as pin_dir:
        with lm_eval_logging_to(output / "lm-eval-tasks.log"):
            manager = task_manager([options.include_path] if options.include_path else [])
        check_tasks_known(options.tasks, manager)
        pins = _lock_pins(options.lock, options.tasks, manager) if options.lock else {}
        if pins:
            _write_pin_wrappers(pins, manager, Path(pin_dir))
            # Local fixtures (later in the list) still win over lock pins for the tasks they cover.
            paths = [Path(pin_dir)] + ([options.include_path] if options.include_path else [])
            with lm_eval_logging_to(output / "lm-eval-tasks.log"):
                manager = task_manager(paths)
        outcomes = []
        for i, source in enumerate(sources, 1):
            say(f"evaluating {source.label} ({i}/{len(sources)}) on {len(options.tasks)} tasks")
            outcome = evaluate_model(source, options, output, manager=manager, pins=pins, device=device)
            if outcome is not None:
                outcomes.append(outcome)
    return outcomes


def read_summary(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
