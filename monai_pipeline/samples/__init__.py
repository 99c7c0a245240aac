"""Samples shipped with the package: a real CT (its folder holds its licence and says where it comes from) and a
model trained on phantoms only (its folder says how it was trained and how to reproduce it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["PHANTOM_MODEL", "Sample", "phantom_model", "resolve_model", "totalseg_example_ct"]

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sample:
    """A real scan and a reference liver mask on its grid."""

    name: str
    scan: Path
    liver: Path
    source: str


def totalseg_example_ct() -> Sample:
    """The TotalSegmentator example CT (abdomen and pelvis, 3 mm, Apache-2.0) and TotalSegmentator's liver on it."""
    folder = _HERE / "totalseg_example_ct"
    return Sample(
        name="totalseg_example_ct",
        scan=folder / "example_ct.nii.gz",
        liver=folder / "liver_totalsegmentator.nii.gz",
        source="TotalSegmentator test files (Apache-2.0), liver by TotalSegmentator --fast",
    )


PHANTOM_MODEL = "phantom"
"""The name that ``infer --model`` and ``train --pretrained`` accept for :func:`phantom_model`."""


def phantom_model() -> Path:
    """The shipped phantom model: a trained run folder (``model.pt``, ``run.json``, ``preprocessing.json``).

    The bundle's CPU network (``configs/cpu.json``, 3 mm) trained on 160 phantoms only, never on a real scan, for
    4.2 minutes on one GPU (``benchmarks/bench_gpu.py``); its ``README.md`` gives the command and its liver Dice on
    real CT. Pass the folder to ``infer`` as the model, or its ``model.pt`` to ``train`` as pretrained weights.
    """
    return _HERE / "phantom_model"


def resolve_model(value: str) -> str:
    """``value`` itself, or for :data:`PHANTOM_MODEL` the shipped phantom model's run folder."""
    return str(phantom_model()) if value == PHANTOM_MODEL else value
