"""Can this machine run a profile? The doctor collects the facts and judges each profile against them.

`collect()` gathers `MachineFacts` (software, GPUs, DeepSpeed ops, disk, hub, lock drift) without building
or downloading anything; `readiness(profile, facts)` compares them with the profile's `requirements` and
says what blocks a run and what a difference implies. Stages call `preflight(profile)` before long work:
the same judgement, raised as one line when the run cannot go ahead. The facts hold only whether a token
is set, never its value.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gpt4allj_kit import __version__, paths
from gpt4allj_kit.config import Profile, TrainConfig, load_profile, load_train_config
from gpt4allj_kit.data import available_cores
from gpt4allj_kit.errors import ConfigError, EnvironmentNotReady
from gpt4allj_kit.fetch.cache import hub_cache_dir
from gpt4allj_kit.fetch.endpoint import token_source
from gpt4allj_kit.files import sha256_file
from gpt4allj_kit.manifest import hardware, now_iso, write_manifest
from gpt4allj_kit.recipe import REFERENCE_GLOBAL_BATCH

# GPT-J-6B's parameter count (model card of EleutherAI/gpt-j-6B), for the ZeRO-2 memory estimate.
GPTJ_6B_PARAMS = 6_053_381_344
# DeepSpeed builds its optimizer from the JSON's "AdamW" as FusedAdam, JIT-compiled at first use.
DEEPSPEED_OPTIMIZER_OP = "fused_adam"
_LOCK_LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;(?P<marker>[^\\]*))?"
)


class Gpu(BaseModel):
    index: int
    name: str
    memory_gb: float = Field(description="total memory in GB (10^9 bytes, as vendors label cards)")
    capability: str
    bf16: bool


class Disk(BaseModel):
    label: str
    path: str
    probed: str | None = Field(description="the nearest existing folder whose filesystem was measured")
    free_gb: float | None
    total_gb: float | None


class OpStatus(BaseModel):
    installed: bool
    compatible: bool


class DeepSpeedInfo(BaseModel):
    version: str | None
    accelerator: str | None = None
    ops: dict[str, OpStatus] = Field(default_factory=dict)
    ninja: str | None = Field(None, description="the ninja that JIT builds would use, if any")
    error: str | None = None


class Drift(BaseModel):
    name: str
    locked: str
    installed: str | None


class LockCheck(BaseModel):
    path: str
    sha256: str | None
    locked: int = Field(description="how many packages the lock pins for this platform")
    drift: list[Drift] = Field(default_factory=list)


class Hub(BaseModel):
    endpoint: str
    offline: bool
    token_set: bool
    token_source: str | None = Field(None, description="where the token comes from (never its value)")
    wandb_key_set: bool


class MachineFacts(BaseModel):
    """What the doctor found on this machine."""

    kit_version: str
    python: str
    platform: str
    cpu_cores: int = Field(description="the cores this process may run on (its CPU affinity)")
    memory_gb: float
    torch: str | None
    torch_cuda: str | None
    cuda_available: bool
    driver: str | None = Field(None, description="NVIDIA driver version from nvidia-smi")
    smi_gpus: int | None = Field(None, description="GPUs nvidia-smi lists (None without nvidia-smi)")
    gpus: list[Gpu] = Field(default_factory=list)
    cuda_visible_devices: str | None = Field(None, description="CUDA_VISIBLE_DEVICES, when set")
    bf16: bool
    nccl: bool
    nccl_version: str | None
    gloo: bool
    triton: bool
    deepspeed: DeepSpeedInfo
    disk: list[Disk] = Field(default_factory=list)
    hub: Hub
    lock: LockCheck


class Readiness(BaseModel):
    """Whether this machine can run one profile, what blocks it and what differs."""

    profile: str
    can_run: bool
    reasons: list[str] = Field(default_factory=list, description="what blocks the run")
    notes: list[str] = Field(
        default_factory=list, description="what differs or deserves a look, not blocking"
    )


class Diagnosis(BaseModel):
    # The JSON keys of `doctor --json` ("report", "verdicts") are kept for its readers.
    report: MachineFacts
    verdicts: list[Readiness]


# --- collecting ---------------------------------------------------------------------------------------


def known_profiles() -> list[str]:
    return sorted(p.stem for p in paths.profile_path("x").parent.glob("*.yaml"))


def _nvidia_smi() -> tuple[str | None, int | None]:
    """The driver version and how many GPUs nvidia-smi lists; (None, None) without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None, 0
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return (lines[0] if lines else None), len(lines)


def _gpus() -> list[Gpu]:
    gpus = []
    for index, gpu in enumerate(hardware()["gpus"]):
        major = int(str(gpu["capability"]).split(".")[0])
        gpus.append(
            Gpu(
                index=index,
                name=gpu["name"],
                memory_gb=round(gpu["memory_bytes"] / 1e9, 1),
                capability=gpu["capability"],
                # bf16 arithmetic needs compute capability 8.0 (Ampere) or newer.
                bf16=major >= 8,
            )
        )
    return gpus


def _deepspeed() -> DeepSpeedInfo:
    """Version, accelerator and op status as `ds_report` shows them, without building any op."""
    try:
        version = metadata.version("deepspeed")
    except metadata.PackageNotFoundError:
        return DeepSpeedInfo(version=None, error="deepspeed is not installed")
    ninja = shutil.which("ninja")
    # DeepSpeed logs and prints on import and while probing; keep stdout clean for --json.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            from deepspeed.accelerator import get_accelerator
            from deepspeed.git_version_info import accelerator_name, installed_ops
            from deepspeed.ops.op_builder.all_ops import ALL_OPS
            from deepspeed.ops.op_builder.builder import probe_is_compatible

            accelerator = get_accelerator()._name
            ops = {
                name: OpStatus(
                    # A prebuilt op only counts on the accelerator it was built for (as ds_report says).
                    installed=bool(installed_ops.get(name)) and accelerator_name == accelerator,
                    compatible=bool(probe_is_compatible(builder, False)),
                )
                for name, builder in ALL_OPS.items()
            }
        except Exception as exc:  # a broken install is a finding to report, not a crash of the doctor
            return DeepSpeedInfo(version=version, ninja=ninja, error=f"{type(exc).__name__}: {exc}")
    return DeepSpeedInfo(version=version, accelerator=accelerator, ops=ops, ninja=ninja)


def _disk(label: str, path: Path) -> Disk:
    probed = path.absolute()
    while not probed.exists() and probed != probed.parent:
        probed = probed.parent
    try:
        usage = shutil.disk_usage(probed)
    except OSError:
        return Disk(label=label, path=str(path), probed=None, free_gb=None, total_gb=None)
    return Disk(
        label=label,
        path=str(path),
        probed=str(probed),
        free_gb=round(usage.free / 1e9, 1),
        total_gb=round(usage.total / 1e9, 1),
    )


def _hub() -> Hub:
    from huggingface_hub import constants

    source = token_source()
    return Hub(
        endpoint=constants.ENDPOINT,
        offline=bool(constants.HF_HUB_OFFLINE),
        token_set=source is not None,
        token_source=source,
        wandb_key_set=bool(os.environ.get("WANDB_API_KEY")),
    )


def locked_versions(lock: Path) -> dict[str, str]:
    """`{canonical name: version}` of every lock line whose environment marker applies here."""
    from packaging.markers import Marker
    from packaging.utils import canonicalize_name

    pinned: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _LOCK_LINE.match(line)
        if match is None:
            continue
        marker = (match["marker"] or "").strip()
        if marker and not Marker(marker).evaluate():
            continue
        pinned[canonicalize_name(match["name"])] = match["version"]
    return pinned


def installed_versions() -> dict[str, str]:
    """`{canonical name: version}` of the distributions installed in this environment's site-packages.

    Only the installation directories count: setuptools puts its vendored copies (packaging, wheel,
    more-itertools ...) on `sys.path` once imported, and their `.dist-info` folders are not installed
    distributions. Where a name appears twice, the first one on the path wins, as it does for imports.
    """
    import sysconfig

    from packaging.utils import canonicalize_name

    site_dirs = list(dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib")))
    versions: dict[str, str] = {}
    for dist in metadata.distributions(path=site_dirs):
        versions.setdefault(canonicalize_name(dist.metadata["Name"]), dist.version)
    return versions


def lock_drift(lock: Path | None = None) -> LockCheck:
    """The installed version of every locked package that differs from the lock (absent ones too)."""
    from packaging.version import InvalidVersion, Version

    lock = lock or paths.lock_path()
    if not lock.exists():
        return LockCheck(path=str(lock), sha256=None, locked=0)
    installed = installed_versions()
    drift = []
    for name, locked in sorted(locked_versions(lock).items()):
        have = installed.get(name)
        try:
            same = have is not None and Version(have) == Version(locked)
        except InvalidVersion:
            same = have == locked
        if not same:
            drift.append(Drift(name=name, locked=locked, installed=have))
    return LockCheck(path=str(lock), sha256=sha256_file(lock), locked=len(locked_versions(lock)), drift=drift)


def _output_dir(profile: Profile) -> Path:
    return Path(load_train_config(profile.train_config, base_overrides=profile.train).output_dir)


def _disks(profiles: list[Profile]) -> list[Disk]:
    disks = [_disk("hub cache", hub_cache_dir()), _disk("kit cache", paths.kit_cache_dir())]
    for profile in profiles:
        with contextlib.suppress(ConfigError):  # readiness() reports a broken train config
            disks.append(_disk(f"output ({profile.name})", _output_dir(profile)))
    return disks


def collect(profiles: list[Profile] | None = None) -> MachineFacts:
    """Everything the readiness checks need about this machine; also measures each profile's output dir."""
    import psutil

    try:
        import torch
    except ImportError:
        torch = None  # type: ignore[assignment]
    driver, smi_gpus = _nvidia_smi()
    cuda = bool(torch is not None and torch.cuda.is_available())
    gpus = _gpus() if cuda else []
    nccl_version = None
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_nccl_available():
        with contextlib.suppress(Exception):
            nccl_version = ".".join(str(p) for p in torch.cuda.nccl.version())
    distributed = torch is not None and torch.distributed.is_available()
    return MachineFacts(
        kit_version=__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_cores=available_cores(),
        memory_gb=round(psutil.virtual_memory().total / 1e9, 1),
        torch=torch.__version__ if torch is not None else None,
        torch_cuda=torch.version.cuda if torch is not None else None,
        cuda_available=cuda,
        driver=driver,
        smi_gpus=smi_gpus,
        gpus=gpus,
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        nccl=bool(distributed and torch.distributed.is_nccl_available()),
        nccl_version=nccl_version,
        gloo=bool(distributed and torch.distributed.is_gloo_available()),
        triton=_has_module("triton"),
        deepspeed=_deepspeed(),
        disk=_disks(profiles or []),
        hub=_hub(),
        lock=lock_drift(),
    )


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# --- judging ------------------------------------------------------------------------------------------


def _batch_split(target: int, per_device: int, gpus: int) -> tuple[int, int] | None:
    """(per-device batch <= `per_device`, accumulation) with batch x gpus x accumulation == target."""
    for batch in range(per_device, 0, -1):
        if target % (batch * gpus) == 0:
            return batch, target // (batch * gpus)
    return None


def _fewer_gpus_note(target: int, per_device: int, have: int, need: int) -> str:
    head = (
        f"with {have} GPU{'s' if have != 1 else ''} instead of {need}, the global batch is "
        f"{per_device} x {have} x accumulation, not {target}"
    )
    split = _batch_split(target, per_device, have)
    if split is None:
        return f"{head}; {target} is not divisible by {have} GPUs, so no setting keeps it exactly"
    batch, accum = split
    if batch == per_device:
        return (
            f"{head}: keep {target} with gradient_accumulation_steps={accum} "
            f"(--set gradient_accumulation_steps={accum}); the optimizer steps stay the same, each takes "
            f"{accum}x longer"
        )
    return (
        f"{head}: keep {target} with batch_size={batch} and gradient_accumulation_steps={accum} "
        f"(--set batch_size={batch} --set gradient_accumulation_steps={accum})"
    )


def _fewer_gpus_reason(profile: Profile, facts: MachineFacts) -> str:
    """Fewer visible GPUs than processes: accelerate gives process N the GPU `cuda:N`, so a process
    without one fails at start-up (upstream's commonest crash); say what to pass instead."""
    have, need = len(facts.gpus), profile.requirements.gpus
    visible = f" (CUDA_VISIBLE_DEVICES={facts.cuda_visible_devices})" if facts.cuda_visible_devices else ""
    return (
        f"{have} GPU{'s' if have != 1 else ''} visible{visible}, {profile.name} needs {need}, one per "
        f"process: pass --num-processes {have} (--keep-global-batch keeps the global batch "
        f"{REFERENCE_GLOBAL_BATCH})"
    )


def _cpu_process_findings(profile: Profile, facts: MachineFacts, config: TrainConfig) -> list[str]:
    """More CPU (gloo) processes than usable cores: refused.

    Each process computes its share of every step and all of them meet in each all-reduce; with more
    processes than cores they take turns on the same cores, so every step waits for a descheduled one.
    The run is slower than with one process per core and computes nothing more (gradient accumulation
    gives the same global batch with fewer processes).
    """
    launch = profile.launch
    processes = launch.num_processes if isinstance(launch.num_processes, int) else 1
    cores = facts.cpu_cores
    if not launch.cpu or processes <= cores:
        return []
    keep = ""
    if processes % cores == 0:
        accumulation = config.gradient_accumulation_steps * processes // cores
        keep = f" (with --set gradient_accumulation_steps={accumulation} to keep the global batch)"
    return [
        f"{processes} CPU processes but {cores} usable CPU core{'s' if cores != 1 else ''}: each gloo "
        f"process needs a core of its own, or every step waits for one that is not running; pass "
        f"--num-processes {cores}{keep}"
    ]


def zero2_model_states_gb(params: int, gpus: int) -> float:
    """Per-GPU memory of ZeRO-2 model states with bf16 mixed precision, before activations.

    bf16 weights are replicated (2 bytes/param); bf16 gradients (2) and the fp32 master weights and
    AdamW moments (12) are partitioned over the GPUs.
    """
    return (2 * params + 14 * params / max(gpus, 1)) / 1e9


def _memory_note(small: list[Gpu], need_gb: float, per_device: int, target: int, gpus: int) -> str:
    states = zero2_model_states_gb(GPTJ_6B_PARAMS, gpus)
    worst = min(g.memory_gb for g in small)
    batch = max(1, per_device * int(worst) // int(need_gb)) if need_gb else per_device
    split = _batch_split(target, batch, gpus)
    advice = (
        f"; fewer sequences per GPU may fit: --set batch_size={split[0]} "
        f"--set gradient_accumulation_steps={split[1]} keeps the global batch at {target}"
        if split
        else ""
    )
    return (
        f"with {worst:g} GB GPUs the 6B model under ZeRO-2 will not fit as published: its model states "
        f"alone take about {states:.1f} GB per GPU on {gpus} GPUs, and {per_device} sequences of "
        f"activations per GPU filled the rest of {need_gb:g} GB{advice}; ZeRO-3 or offload would also fit "
        "but is not the published recipe"
    )


def _gpu_findings(profile: Profile, facts: MachineFacts, batch: int) -> tuple[list[str], list[str]]:
    req = profile.requirements
    reasons: list[str] = []
    notes: list[str] = []
    target = REFERENCE_GLOBAL_BATCH  # what the advice on fewer or smaller GPUs keeps
    if not facts.cuda_available:
        hint = ""
        if facts.smi_gpus:
            hint = (
                f" (nvidia-smi lists {facts.smi_gpus} with driver {facts.driver}, but torch built for "
                f"CUDA {facts.torch_cuda} sees none: the driver may be too old for it, or "
                "CUDA_VISIBLE_DEVICES hides them)"
            )
        reasons.append(f"no CUDA GPU visible to torch{hint}; {profile.name} needs {req.gpus} GPUs")
        return reasons, notes
    have = len(facts.gpus)
    if have < req.gpus:
        reasons.append(_fewer_gpus_reason(profile, facts))
        notes.append(_fewer_gpus_note(target, batch, have, req.gpus))
    elif have > req.gpus:
        notes.append(f"{have} GPUs visible; the launch uses {req.gpus} (num_processes), the rest stay idle")
    small = [g for g in facts.gpus if g.memory_gb < req.min_gpu_memory_gb]
    if small:
        listed = ", ".join(f"GPU {g.index} {g.name} {g.memory_gb:g} GB" for g in small)
        reasons.append(f"GPU memory below {req.min_gpu_memory_gb:g} GB: {listed}")
        notes.append(_memory_note(small, req.min_gpu_memory_gb, batch, target, min(have, req.gpus)))
    if req.bf16 and not all(g.bf16 for g in facts.gpus):
        old = ", ".join(f"GPU {g.index} {g.name} (sm {g.capability})" for g in facts.gpus if not g.bf16)
        reasons.append(f"no bf16 on {old}: bf16 needs compute capability 8.0+")
        notes.append("fp16 instead of bf16 adds loss scaling and changes the numerics: not the published run")
    if req.gpus > 1 and not facts.nccl:
        reasons.append("torch has no NCCL: multi-GPU training needs it")
    return reasons, notes


def _software_findings(profile: Profile, facts: MachineFacts) -> tuple[list[str], list[str]]:
    launch = profile.launch
    reasons: list[str] = []
    notes: list[str] = []
    if facts.torch is None:
        reasons.append("torch is not installed (run scripts/install.sh)")
    if launch.use_deepspeed:
        ds = facts.deepspeed
        if ds.version is None or ds.error:
            reasons.append(f"DeepSpeed is unusable: {ds.error}")
        else:
            op = ds.ops.get(DEEPSPEED_OPTIMIZER_OP)
            if op is not None and not (op.installed or op.compatible):
                reasons.append(
                    f"DeepSpeed op {DEEPSPEED_OPTIMIZER_OP} (the AdamW of the DeepSpeed config) is neither "
                    "prebuilt nor buildable here (a CUDA toolkit matching torch's CUDA is needed)"
                )
            if op is not None and not op.installed and ds.ninja is None:
                notes.append(
                    f"DeepSpeed JIT-builds {DEEPSPEED_OPTIMIZER_OP} at first use and needs ninja on PATH "
                    "(not found; activate the venv or install ninja)"
                )
    processes = launch.num_processes if isinstance(launch.num_processes, int) else 1
    if launch.cpu and processes > 1 and not facts.gloo:
        reasons.append("torch has no gloo backend: multi-process CPU training needs it")
    if not launch.cpu and launch.dynamo_backend == "inductor" and not facts.triton:
        reasons.append("dynamo backend inductor on GPU needs triton, which is not installed")
    if facts.lock.drift:
        listed = ", ".join(f"{d.name} {d.installed or 'missing'} (lock {d.locked})" for d in facts.lock.drift)
        notes.append(f"{len(facts.lock.drift)} packages differ from the lock: {listed}; results may differ")
    locked = paths.locked_python()
    if locked and tuple(int(p) for p in facts.python.split(".")[:2]) != locked:
        notes.append(f"Python {facts.python}: the lock is for Python {'.'.join(map(str, locked))}")
    return reasons, notes


def _machine_findings(profile: Profile, facts: MachineFacts) -> list[str]:
    req = profile.requirements
    reasons = []
    if facts.cpu_cores < req.min_cpu_cores:
        reasons.append(f"{facts.cpu_cores} CPU cores, {profile.name} needs {req.min_cpu_cores}")
    if facts.memory_gb < req.min_memory_gb:
        reasons.append(f"{facts.memory_gb:g} GB of memory, {profile.name} needs {req.min_memory_gb:g} GB")
    return reasons


def _disk_findings(profile: Profile, facts: MachineFacts, output_dir: Path) -> list[str]:
    need = profile.requirements.min_free_disk_gb
    assets_dir = hub_cache_dir() if profile.assets == "hub" else paths.kit_cache_dir()
    reasons = []
    for label, path in ((f"output ({profile.name})", output_dir), ("assets cache", assets_dir)):
        disk = next((d for d in facts.disk if d.path == str(path)), None) or _disk(label, path)
        if disk.free_gb is None:
            reasons.append(f"cannot measure free disk at {path}")
        elif disk.free_gb < need:
            reasons.append(f"{disk.free_gb:g} GB free at {disk.probed}, {profile.name} needs {need:g} GB")
    return sorted(set(reasons), key=reasons.index)


def readiness(profile: Profile, facts: MachineFacts | None = None) -> Readiness:
    """Whether this machine (as `facts` describe it) can run `profile`, why not, and what differs."""
    facts = facts or collect([profile])
    try:
        config = load_train_config(profile.train_config, base_overrides=profile.train)
    except ConfigError as exc:
        return Readiness(profile=profile.name, can_run=False, reasons=[f"training config: {exc.message}"])
    reasons, notes = _software_findings(profile, facts)
    reasons += _machine_findings(profile, facts)
    reasons += _cpu_process_findings(profile, facts, config)
    if profile.requirements.gpus > 0:
        gpu_reasons, gpu_notes = _gpu_findings(profile, facts, config.batch_size)
        reasons += gpu_reasons
        notes += gpu_notes
    reasons += _disk_findings(profile, facts, Path(config.output_dir))
    return Readiness(profile=profile.name, can_run=not reasons, reasons=reasons, notes=notes)


class NotReady(EnvironmentNotReady):
    """The preflight's refusal, one line; `readiness` keeps the whole judgement for the caller's records."""

    def __init__(self, readiness: Readiness) -> None:
        super().__init__(
            f"preflight: this machine cannot run profile '{readiness.profile}': "
            f"{'; '.join(readiness.reasons)} (see `gpt4allj-kit doctor`; --force tries anyway)"
        )
        self.readiness = readiness


def preflight(profile: Profile, facts: MachineFacts | None = None, *, force: bool = False) -> Readiness:
    """`readiness(profile)` before long work: `NotReady` (exit 3) when the machine cannot run it, unless
    `force` (then the blocking reasons are in the result, for the caller to show)."""
    result = readiness(profile, facts)
    if not result.can_run and not force:
        raise NotReady(result)
    return result


def recorded_preflight(profile: Profile, out_dir: Path, *, force: bool, command: str) -> Readiness:
    """`preflight(profile)` with its proof: `out_dir/manifest.json` holds the machine's facts and the
    readiness whatever the verdict, so a refused run still shows why."""
    started = now_iso()
    facts = collect([profile])
    judged = readiness(profile, facts)
    write_manifest(
        out_dir / paths.MANIFEST,
        stage="doctor",
        command=command,
        config={"profile": profile.name, "force": force},
        started=started,
        machine=facts,
        readiness=judged,
    )
    return preflight(profile, facts, force=force)


def diagnose(asked: str = "all") -> tuple[Diagnosis, list[str]]:
    """The machine's facts with the readiness of every known profile (and `asked` if it is a file), and
    the names of the profiles whose readiness decides the exit code."""
    names = known_profiles()
    extra = [] if asked == "all" or asked in names else [asked]
    profiles = [load_profile(name) for name in [*names, *extra]]
    facts = collect(profiles)
    verdicts = [readiness(p, facts) for p in profiles]
    deciding = [v.profile for v in verdicts] if asked == "all" else [profiles[-1].name if extra else asked]
    return Diagnosis(report=facts, verdicts=verdicts), deciding


def summary(diagnosis: Diagnosis) -> dict[str, Any]:
    """The one-glance facts the CLI shows first."""
    r = diagnosis.report
    return {
        "gpt4allj-kit": r.kit_version,
        "python": r.python,
        "platform": r.platform,
        "cpu cores / memory": f"{r.cpu_cores} / {r.memory_gb:g} GB",
        "torch (CUDA build)": f"{r.torch} ({r.torch_cuda or 'cpu'})",
        "CUDA available": r.cuda_available,
        "NVIDIA driver": r.driver or ("nvidia-smi not found" if r.smi_gpus is None else "unknown"),
        "GPUs": len(r.gpus),
        "bf16": r.bf16,
        "NCCL": f"{r.nccl} ({r.nccl_version})" if r.nccl_version else r.nccl,
        "gloo": r.gloo,
        "DeepSpeed": r.deepspeed.version or "not installed",
        "DeepSpeed accelerator": r.deepspeed.accelerator,
        "ninja": r.deepspeed.ninja or "not found",
        "hub endpoint": r.hub.endpoint + (" (offline)" if r.hub.offline else ""),
        "hub token": f"set ({r.hub.token_source})" if r.hub.token_set else "not set",
        "W&B key": "set" if r.hub.wandb_key_set else "not set",
        "lock": f"{r.lock.path} sha256 {(r.lock.sha256 or 'missing')[:12]}, {r.lock.locked} packages",
    }
