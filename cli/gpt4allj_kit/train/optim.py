"""AdamW and the warmup-then-constant learning rate of the recipe, with or without DeepSpeed.

When the DeepSpeed JSON defines `optimizer` / `scheduler`, DeepSpeed builds them (accelerate's `DummyOptim` /
`DummyScheduler` only carry lr, weight decay and warmup into the JSON's "auto" values), exactly as upstream.
Without DeepSpeed (or without those JSON sections) the kit builds the exact torch equivalent: AdamW with the
JSON's betas/eps and a `LambdaLR` that reproduces DeepSpeed's linear `WarmupLR` step for step.

torch is imported where it runs: the CLI plans (and refuses bad input) without loading it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where optimizers are built: the CLI plans a launch without it
    import torch

GRADIENT_CLIPPING = 1.0
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def warmup_constant_lr(scheduler_steps: int, *, lr: float, min_lr: float, warmup_steps: int) -> float:
    """The learning rate after `scheduler_steps` scheduler steps, as DeepSpeed's linear WarmupLR gives it.

    WarmupLR starts at iteration -1 (lr = min_lr) and its k-th step sets iteration k-1, so the first two
    optimizer steps both run at min_lr and the full lr is reached after warmup_steps + 1 steps. It also
    warms up over at least 2 steps (`max(2, warmup_num_steps)`), which is mirrored too.
    """
    if scheduler_steps <= 0:
        return min_lr
    iteration = scheduler_steps - 1
    warmup = max(2, warmup_steps)
    gamma = iteration / warmup if iteration < warmup else 1.0
    return min_lr + (lr - min_lr) * gamma


def uses_deepspeed_optimizer(ds_config: dict[str, Any] | None) -> bool:
    return bool(ds_config and "optimizer" in ds_config)


def uses_deepspeed_scheduler(ds_config: dict[str, Any] | None) -> bool:
    return bool(ds_config and "scheduler" in ds_config)


def fill_weight_decay(ds_config: dict[str, Any] | None) -> None:
    """Lets the config's weight_decay reach DeepSpeed's optimizer (upstream's JSON silently dropped it).

    accelerate fills only "auto" values, and the recipe's JSON has no weight_decay, so DeepSpeed used its
    optimizer's default whatever the YAML said. Marking it "auto" makes `DummyOptim(weight_decay=...)` count.
    With the recipe's 0.0 the result is what upstream ran (FusedAdam's default is 0.0 too).
    """
    if uses_deepspeed_optimizer(ds_config):
        params = ds_config["optimizer"].setdefault("params", {})  # type: ignore[index]
        params.setdefault("weight_decay", "auto")


def use_torch_adam_on_cpu(ds_config: dict[str, Any] | None) -> bool:
    """On a CPU, DeepSpeed's Adam runs as torch's AdamW instead of its JIT-built FusedAdam.

    The update is the same AdamW; the build takes 2.5 to 8 minutes of g++ on a small shared CPU machine,
    which the smoke profile and the tests cannot afford. GPUs keep the recipe's FusedAdam. Returns whether
    the config was changed (the manifest records the optimizer class that ran).
    """
    import torch

    if torch.cuda.is_available() or not uses_deepspeed_optimizer(ds_config):
        return False
    optimizer = ds_config["optimizer"]  # type: ignore[index]
    if str(optimizer.get("type", "")).lower() not in ("adam", "adamw"):
        return False
    params = optimizer.setdefault("params", {})
    changed = "torch_adam" not in params
    params.setdefault("torch_adam", True)
    return changed


def adam_settings(ds_config: dict[str, Any] | None) -> tuple[tuple[float, float], float]:
    """Betas and eps: the DeepSpeed JSON's when it has them (the recipe's), else the same defaults."""
    params = ((ds_config or {}).get("optimizer") or {}).get("params") or {}
    betas = tuple(params.get("betas", ADAM_BETAS))
    eps = params.get("eps", ADAM_EPS)
    return (float(betas[0]), float(betas[1])), float(eps)


def build_optimizer(
    parameters: Any, *, lr: float, weight_decay: float, ds_config: dict[str, Any] | None
) -> torch.optim.Optimizer:
    """DeepSpeed's AdamW (through DummyOptim) when the JSON asks for it, else torch AdamW alike."""
    if uses_deepspeed_optimizer(ds_config):
        from accelerate.utils import DummyOptim

        return DummyOptim(parameters, lr=lr, weight_decay=weight_decay)
    import torch

    betas, eps = adam_settings(ds_config)
    return torch.optim.AdamW(parameters, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    lr: float,
    min_lr: float,
    warmup_steps: int,
    ds_config: dict[str, Any] | None,
) -> Any:
    """DeepSpeed's WarmupLR (through DummyScheduler) or the LambdaLR that reproduces it exactly."""
    if uses_deepspeed_scheduler(ds_config):
        from accelerate.utils import DummyScheduler

        # As upstream: WarmupLR ignores total_num_steps; warmup_num_steps fills the JSON's "auto".
        return DummyScheduler(optimizer, total_num_steps=warmup_steps, warmup_num_steps=warmup_steps)

    import torch

    def factor(steps: int) -> float:
        return warmup_constant_lr(steps, lr=lr, min_lr=min_lr, warmup_steps=warmup_steps) / lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def describe_optimizer(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer that actually runs (its class and first param group), for the manifest."""
    inner = getattr(optimizer, "optimizer", optimizer)
    group = inner.param_groups[0] if getattr(inner, "param_groups", None) else {}
    keys = ("lr", "betas", "eps", "weight_decay")
    return {
        "class": f"{type(inner).__module__}.{type(inner).__name__}",
        **{k: (list(group[k]) if isinstance(group.get(k), tuple) else group.get(k)) for k in keys},
    }
