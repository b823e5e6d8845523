"""The doctor on this CPU machine (through the real CLI) and its readiness on described machines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpt4allj_kit import doctor, paths
from gpt4allj_kit.config import Profile, load_profile, load_train_config
from gpt4allj_kit.doctor import Disk, Gpu, MachineFacts, OpStatus
from gpt4allj_kit.errors import EnvironmentNotReady
from gpt4allj_kit.fetch.cache import hub_cache_dir
from packaging.utils import canonicalize_name

SECRET = "secretvalue"
LOCKED = paths.locked_python()
assert LOCKED, "no .python-version in the checkout"
LOCKED_PYTHON = ".".join(map(str, LOCKED))


def test_smoke_runs_here_and_the_token_is_never_printed(kit_cli) -> None:
    result = kit_cli("doctor", "--profile", "smoke", env={"HF_TOKEN": SECRET, "WANDB_API_KEY": SECRET + "2"})
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert SECRET not in output and "Traceback" not in output
    assert "set (environment variable HF_TOKEN)" in " ".join(result.stdout.split())
    assert "profile smoke: can run" in result.stdout and "profile full: cannot run" in result.stdout


def test_full_cannot_run_here_and_says_why_in_json(kit_cli) -> None:
    result = kit_cli("doctor", "--profile", "full", "--json", env={"HF_TOKEN": SECRET})
    assert result.returncode == 3, result.stderr
    assert SECRET not in result.stdout + result.stderr
    data = json.loads(result.stdout)
    verdicts = {v["profile"]: v for v in data["verdicts"]}
    assert verdicts["smoke"]["can_run"] is True
    assert verdicts["full"]["can_run"] is False
    assert any("GPU" in reason and "8" in reason for reason in verdicts["full"]["reasons"])
    report = data["report"]
    assert report["hub"]["token_set"] is True and report["cuda_available"] is False
    assert report["lock"]["sha256"] and report["deepspeed"]["version"]
    assert {d["label"] for d in report["disk"]} >= {"hub cache", "output (full)", "output (smoke)"}


def test_unknown_profile_is_a_usage_error(kit_cli) -> None:
    result = kit_cli("doctor", "--profile", "nope")
    assert result.returncode == 2 and "unknown profile 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


# --- readiness on described machines ------------------------------------------------------------------

FULL_OUTPUT = load_train_config(
    load_profile("full").train_config, base_overrides=load_profile("full").train
).output_dir


def _machine(
    gpus: int = 8, memory_gb: float = 85.1, capability: str = "8.0", **changes: object
) -> MachineFacts:
    """A described machine: by default the published one (8 x A100 80GB, plenty of disk)."""
    disks = [
        Disk(label=label, path=str(path), probed="/", free_gb=1000.0, total_gb=2000.0)
        for label, path in (
            ("hub cache", hub_cache_dir()),
            ("output (full)", Path(FULL_OUTPUT)),
        )
    ]
    facts = MachineFacts(
        kit_version="0", python=f"{LOCKED_PYTHON}.7", platform="Linux", cpu_cores=64, memory_gb=1000.0,
        torch="2.14.1", torch_cuda="13.0", cuda_available=gpus > 0, driver="580.1", smi_gpus=gpus,
        gpus=[
            Gpu(index=i, name="NVIDIA A100-SXM4-80GB", memory_gb=memory_gb, capability=capability,
                bf16=int(capability.split(".")[0]) >= 8)
            for i in range(gpus)
        ],
        bf16=gpus > 0, nccl=True, nccl_version="2.30.7", gloo=True, triton=True,
        deepspeed=doctor.DeepSpeedInfo(
            version="0.19.8", accelerator="cuda", ninja="/usr/bin/ninja",
            ops={"fused_adam": OpStatus(installed=False, compatible=True)},
        ),
        disk=disks,
        hub=doctor.Hub(endpoint="https://hf.co", offline=False, token_set=False, wandb_key_set=False),
        lock=doctor.LockCheck(path="lock.txt", sha256="0" * 64, locked=143),
    )  # fmt: skip
    return facts.model_copy(update=changes)


FOUR_OF_EIGHT = (
    "4 GPUs visible, full needs 8, one per process: pass --num-processes 4 (--keep-global-batch keeps the "
    "global batch 256)"
)


@pytest.fixture(scope="module")
def full():  # type: ignore[no-untyped-def]
    return load_profile("full")


def test_the_published_machine_runs_full(full) -> None:  # type: ignore[no-untyped-def]
    result = doctor.readiness(full, _machine())
    assert result.can_run and not result.reasons, result
    assert doctor.preflight(full, _machine()).can_run


def test_fewer_gpus_says_which_accumulation_keeps_256(full) -> None:  # type: ignore[no-untyped-def]
    result = doctor.readiness(full, _machine(gpus=4))
    assert not result.can_run
    assert result.reasons == [FOUR_OF_EIGHT]
    assert any("not 256" in n and "gradient_accumulation_steps=2" in n for n in result.notes)
    three = doctor.readiness(full, _machine(gpus=3))
    assert any("256 is not divisible by 3" in n for n in three.notes)


def test_smaller_gpus_say_the_6b_model_will_not_fit(full) -> None:  # type: ignore[no-untyped-def]
    result = doctor.readiness(full, _machine(memory_gb=42.4))
    assert not result.can_run
    assert any("GPU memory below 80 GB" in r and "42.4 GB" in r for r in result.reasons)
    note = next(n for n in result.notes if "ZeRO-2" in n)
    assert "will not fit" in note and "--set batch_size=16 --set gradient_accumulation_steps=2" in note
    # 2 bytes/param replicated + 14 bytes/param over 8 GPUs for 6.05B parameters.
    assert f"{doctor.zero2_model_states_gb(doctor.GPTJ_6B_PARAMS, 8):.1f} GB" in note
    assert doctor.zero2_model_states_gb(1_000_000_000, 1) == pytest.approx(16.0)


def test_no_bf16_before_ampere(full) -> None:  # type: ignore[no-untyped-def]
    result = doctor.readiness(full, _machine(capability="7.0"))
    assert any("no bf16" in r for r in result.reasons)
    assert any("fp16" in n for n in result.notes)


def test_gpus_that_torch_cannot_see_point_at_the_driver(full) -> None:  # type: ignore[no-untyped-def]
    report = _machine(gpus=0).model_copy(update={"smi_gpus": 8, "driver": "470.1"})
    result = doctor.readiness(full, report)
    assert any("nvidia-smi lists 8" in r and "470.1" in r for r in result.reasons)
    with pytest.raises(EnvironmentNotReady, match=r"cannot run profile 'full'.*no CUDA GPU") as refused:
        doctor.preflight(full, report)
    assert refused.value.readiness == result  # the whole judgement travels with the one-line refusal


def test_forced_preflight_returns_the_blocking_reasons(full) -> None:  # type: ignore[no-untyped-def]
    forced = doctor.preflight(full, _machine(gpus=4), force=True)
    assert not forced.can_run and forced.reasons == [FOUR_OF_EIGHT]


def test_unbuildable_deepspeed_optimizer_blocks(full) -> None:  # type: ignore[no-untyped-def]
    deepspeed = doctor.DeepSpeedInfo(
        version="0.19.8", accelerator="cuda", ninja=None,
        ops={"fused_adam": OpStatus(installed=False, compatible=False)},
    )  # fmt: skip
    result = doctor.readiness(full, _machine(deepspeed=deepspeed))
    assert any("fused_adam" in r for r in result.reasons)
    assert any("ninja" in n for n in result.notes)


def test_drift_and_small_disk(full) -> None:  # type: ignore[no-untyped-def]
    lock = doctor.LockCheck(
        path="lock.txt", sha256="0" * 64, locked=143,
        drift=[doctor.Drift(name="transformers", locked="5.24.0", installed="5.0.0")],
    )  # fmt: skip
    drifted = doctor.readiness(full, _machine(lock=lock))
    assert drifted.can_run and any("transformers 5.0.0 (lock 5.24.0)" in n for n in drifted.notes)
    small = [d.model_copy(update={"free_gb": 50.0}) for d in _machine().disk]
    result = doctor.readiness(full, _machine(disk=small))
    assert any("50 GB free" in r and "needs 200 GB" in r for r in result.reasons)


def test_smoke_needs_no_gpu() -> None:
    smoke = load_profile("smoke")
    report = _machine(gpus=0, cpu_cores=2, memory_gb=8.0)
    assert doctor.readiness(smoke, report).can_run
    assert not doctor.readiness(smoke, report.model_copy(update={"gloo": False})).can_run


def _with_processes(profile: Profile, processes: int) -> Profile:
    """The profile as `train --num-processes N` plans it (launch.planned_profile)."""
    gpus = 0 if profile.launch.cpu else processes
    return profile.model_copy(
        update={
            "launch": profile.launch.model_copy(update={"num_processes": processes}),
            "requirements": profile.requirements.model_copy(update={"gpus": gpus}),
        }
    )


def test_more_cpu_processes_than_cores_are_refused_with_what_to_pass() -> None:
    smoke = load_profile("smoke")
    two_cores = _machine(gpus=0, cpu_cores=2, memory_gb=8.0)
    assert doctor.readiness(_with_processes(smoke, 2), two_cores).can_run
    result = doctor.readiness(_with_processes(smoke, 4), two_cores)
    assert result.reasons == [
        "4 CPU processes but 2 usable CPU cores: each gloo process needs a core of its own, or every step "
        "waits for one that is not running; pass --num-processes 2 (with --set gradient_accumulation_steps=2 "
        "to keep the global batch)"
    ]
    three = doctor.readiness(_with_processes(smoke, 3), two_cores)
    assert three.reasons[0].endswith("pass --num-processes 2")  # 3 is no multiple of 2: no accumulation
    with pytest.raises(EnvironmentNotReady, match=r"cannot run profile 'smoke': 4 CPU processes") as refused:
        doctor.preflight(_with_processes(smoke, 4), two_cores)
    assert refused.value.exit_code == 3 and "\n" not in refused.value.message
    assert not doctor.preflight(_with_processes(smoke, 4), two_cores, force=True).can_run  # --force goes on


def test_more_gpu_processes_than_visible_gpus_are_refused_with_what_to_pass(full) -> None:  # type: ignore[no-untyped-def]
    two_visible = _machine(gpus=2, cuda_visible_devices="0,3")
    result = doctor.readiness(_with_processes(full, 8), two_visible)
    assert result.reasons == [
        "2 GPUs visible (CUDA_VISIBLE_DEVICES=0,3), full needs 8, one per process: pass --num-processes 2 "
        "(--keep-global-batch keeps the global batch 256)"
    ]
    assert doctor.readiness(_with_processes(full, 2), two_visible).can_run
    with pytest.raises(EnvironmentNotReady, match=r"--num-processes 2"):
        doctor.preflight(_with_processes(full, 3), two_visible)
    # The CPU core rule is for CPU launches only: 8 GPU processes on 4 cores are judged by min_cpu_cores.
    assert doctor.readiness(_with_processes(full, 8), _machine(cpu_cores=8)).can_run


def test_lock_drift_reads_pins_and_markers(tmp_path: Path) -> None:
    from importlib import metadata

    lock = tmp_path / "lock.txt"
    lock.write_text(
        f"pytest=={metadata.version('pytest')} \\\n    --hash=sha256:{'a' * 64}\n"
        "pyyaml==0.0.1 \\\n    --hash=sha256:" + "b" * 64 + "\n    # via gpt4allj-kit\n"
        "surely-not-installed-pkg==1.0 \\\n    --hash=sha256:" + "c" * 64 + "\n"
        'winonly==1.0 ; sys_platform == "win32" \\\n    --hash=sha256:' + "d" * 64 + "\n"
    )
    check = doctor.lock_drift(lock)
    assert check.locked == 3
    assert [(d.name, d.locked, d.installed) for d in check.drift] == [
        ("pyyaml", "0.0.1", metadata.version("pyyaml")),
        ("surely-not-installed-pkg", "1.0", None),
    ]


def test_lock_drift_ignores_the_copies_setuptools_vendors() -> None:
    import importlib.metadata

    import setuptools  # noqa: F401  (puts setuptools/_vendor, with its own .dist-info folders, on sys.path)

    vendored = [d for d in importlib.metadata.distributions() if "_vendor" in str(d.locate_file(""))]
    assert vendored, "setuptools no longer vendors distributions: this test checks nothing"
    check = doctor.lock_drift()
    assert check.drift == [], check.drift
    installed = doctor.installed_versions()
    shadowed = [d.metadata["Name"] for d in vendored if canonicalize_name(d.metadata["Name"]) in installed]
    assert shadowed, "no vendored copy shares a name with an installed distribution: this checks nothing"
    for name in shadowed:  # the installed distribution of that name wins, as it does for imports
        assert installed[canonicalize_name(name)] == importlib.metadata.version(name), name


def test_a_python_other_than_the_locked_minor_is_noted() -> None:
    full = load_profile("full")
    assert not [n for n in doctor.readiness(full, _machine()).notes if "the lock is for Python" in n]
    other = _machine().model_copy(update={"python": f"{LOCKED[0]}.{LOCKED[1] - 1}.9"})
    notes = [n for n in doctor.readiness(full, other).notes if "the lock is for Python" in n]
    assert notes == [f"Python {LOCKED[0]}.{LOCKED[1] - 1}.9: the lock is for Python {LOCKED_PYTHON}"]
