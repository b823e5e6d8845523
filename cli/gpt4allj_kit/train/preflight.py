"""Can this machine run the launch as planned? Checked before any model is loaded.

The doctor judges a profile; the plan may differ from the profile (another GPU count, more accumulation,
--set overrides), so the profile is first adjusted to what will actually run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpt4allj_kit.config import Profile, merged
from gpt4allj_kit.errors import EnvironmentNotReady

if TYPE_CHECKING:
    from gpt4allj_kit.doctor import Verdict
    from gpt4allj_kit.train.launch import LaunchPlan


def planned_profile(plan: LaunchPlan) -> Profile:
    """The plan's profile with the GPU count, config file and overrides that will actually run."""
    profile = plan.profile
    gpus = 0 if plan.launch.cpu else plan.hyper.num_processes
    train = merged(profile.train, plan.config.model_dump(exclude_unset=False))
    return profile.model_copy(
        update={
            "train_config": str(plan.config_path),
            "train": train,
            "launch": plan.launch.model_copy(update={"num_processes": plan.hyper.num_processes}),
            "requirements": profile.requirements.model_copy(update={"gpus": gpus}),
        }
    )


def check(plan: LaunchPlan, *, force: bool = False) -> Verdict:
    """The doctor's verdict on the planned run; one-line EnvironmentNotReady (exit 3) when it cannot run."""
    from gpt4allj_kit import doctor

    verdict = doctor.verdict(planned_profile(plan))
    if not verdict.can_run and not force:
        raise EnvironmentNotReady(
            f"preflight: this machine cannot run profile '{plan.profile.name}' as planned: "
            f"{'; '.join(verdict.reasons)} (see `gpt4allj-kit doctor`; --force to try anyway)"
        )
    return verdict
