"""Peak dense bf16 FLOP/s per device, as data (configs/hardware/peak_flops.yaml), for the burn-in's MFU.

A device is named as torch names it (`torch.cuda.get_device_name`); the table's first pattern found in
that name gives its peak, or none (MFU "unknown", the name said).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gpt4allj_kit import paths
from gpt4allj_kit.config import load_yaml, validate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DevicePeak(_Strict):
    name: str
    pattern: str
    tflops: float = Field(gt=0)
    source: str = Field(min_length=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression ({exc})") from None
        return value

    @property
    def flops(self) -> float:
        return self.tflops * 1e12

    def matches(self, device_name: str) -> bool:
        return re.search(self.pattern, device_name, re.IGNORECASE) is not None


class PeakTable(_Strict):
    devices: list[DevicePeak] = Field(min_length=1)

    def lookup(self, device_name: str) -> DevicePeak | None:
        """The first entry whose pattern is found in `device_name`; None for a device not in the table."""
        return next((d for d in self.devices if d.matches(device_name)), None)


def load_peak_table(path: Path | None = None) -> PeakTable:
    """The validated table (default: the kit's); a bad file is a one-line ConfigError naming it."""
    path = path or paths.peak_flops_table()
    return validate(PeakTable, load_yaml(path), str(path))
