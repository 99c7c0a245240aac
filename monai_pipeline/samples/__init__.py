"""Real CT samples shipped with the package (each folder holds its licence and says where it comes from)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Sample", "totalseg_example_ct"]

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
