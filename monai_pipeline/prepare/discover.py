"""Find the cases of a LiTS download or an MSD Task03_Liver folder."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from monai_pipeline.errors import InputError
from monai_pipeline.io.folders import folder_entries, usable

__all__ = ["RawCase", "find_cases"]

_LITS_VOLUME = re.compile(r"^volume-(\d+)\.nii(\.gz)?$", re.IGNORECASE)
_LITS_TEST_VOLUME = re.compile(r"^test-volume-(\d+)\.nii(\.gz)?$", re.IGNORECASE)
_LITS_LABEL = re.compile(r"^segmentation-(\d+)\.nii(\.gz)?$", re.IGNORECASE)
_NIFTI = re.compile(r"^(?!\.)(.+)\.nii(\.gz)?$", re.IGNORECASE)


@dataclass(frozen=True)
class RawCase:
    """One scan of the raw dataset.

    Attributes:
        name: the case name used for every prepared file (``liver_<N>`` as nnU-Net and the MSD name LiTS cases).
        image: the CT file.
        label: its label file, or ``None`` for an unlabelled (test) scan.
    """

    name: str
    image: Path
    label: Path | None

    @property
    def split(self) -> str:
        """``"training"`` for labelled cases, ``"test"`` otherwise."""
        return "training" if self.label is not None else "test"


def find_cases(data_dir: str | os.PathLike[str]) -> list[RawCase]:
    """Every case under ``data_dir``, sorted by name.

    The MSD layout is recognised by ``dataset.json`` beside ``imagesTr/``; otherwise LiTS files
    (``volume-<N>.nii[.gz]`` with ``segmentation-<N>.nii[.gz]``, and ``test-volume-<N>.nii[.gz]``) are searched for
    anywhere below ``data_dir``, as the LiTS download spreads them over several batch folders.

    Raises:
        InputError: the folder is missing or holds no case, a LiTS volume has no segmentation, a segmentation has
            no volume, or a case number appears twice.
    """
    root = Path(data_dir)
    if not root.exists():
        raise InputError(root, "no such folder")
    if not root.is_dir():
        raise InputError(root, "not a folder (expected the LiTS download or an MSD Task03_Liver folder)")
    msd_root = _find_msd_root(root)
    cases = _msd_cases(msd_root) if msd_root is not None else _lits_cases(root)
    if not any(case.label is not None for case in cases):
        raise InputError(
            root,
            "no labelled cases found: expected LiTS volume-<N>.nii[.gz] with segmentation-<N>.nii[.gz], "
            "or an MSD folder with dataset.json, imagesTr/ and labelsTr/",
        )
    return sorted(cases, key=lambda case: _natural_key(case.name))


def _find_msd_root(root: Path) -> Path | None:
    for candidate in (root, *sorted(p.parent for p in root.glob("*/dataset.json"))):
        if (candidate / "dataset.json").is_file() and (candidate / "imagesTr").is_dir():
            return candidate
    return None


def _msd_cases(root: Path) -> list[RawCase]:
    manifest = root / "dataset.json"
    try:
        listing = json.loads(manifest.read_text())
    except (OSError, ValueError) as err:
        raise InputError(manifest, f"not a readable dataset.json: {err}") from err
    cases: list[RawCase] = []
    for entry in listing.get("training", []):
        image, label = root / entry["image"], root / entry["label"]
        for path in (image, label):
            if not path.is_file():
                raise InputError(path, f"listed in {manifest.name} but missing")
        cases.append(RawCase(_msd_name(image), image, label))
    listed = {case.image.name for case in cases}
    for image in folder_entries(root / "imagesTr"):
        match = _NIFTI.match(image.name)
        if match and image.name not in listed:
            label = root / "labelsTr" / image.name
            cases.append(RawCase(match.group(1), image, label if label.is_file() else None))
    images_ts = root / "imagesTs"
    if images_ts.is_dir():
        for image in folder_entries(images_ts):
            match = _NIFTI.match(image.name)
            if match:
                cases.append(RawCase(match.group(1), image, None))
    seen: dict[str, Path] = {}
    for case in cases:
        if case.name in seen:
            raise InputError(case.image, f"case {case.name} appears twice (also {seen[case.name]})")
        seen[case.name] = case.image
    return cases


def _msd_name(image: Path) -> str:
    match = _NIFTI.match(image.name)
    return match.group(1) if match else image.name


def _lits_cases(root: Path) -> list[RawCase]:
    volumes: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    tests: dict[str, Path] = {}
    for path in usable(sorted(root.rglob("*"))):
        if ".nii" not in path.name or not path.is_file() or path.name.startswith("."):
            continue
        for pattern, found, prefix in (
            (_LITS_VOLUME, volumes, ""),
            (_LITS_LABEL, labels, ""),
            (_LITS_TEST_VOLUME, tests, "test_"),
        ):
            match = pattern.match(path.name)
            if match:
                key = f"{prefix}{int(match.group(1))}"
                if key in found:
                    raise InputError(path, f"case {key} appears twice (also {found[key]})")
                found[key] = path
    for key, label in labels.items():
        if key not in volumes:
            raise InputError(label, f"segmentation without its volume-{key}.nii[.gz]")
    cases = []
    for key, volume in volumes.items():
        if key not in labels:
            raise InputError(volume, f"volume without its segmentation-{key}.nii[.gz]")
        cases.append(RawCase(f"liver_{key}", volume, labels[key]))
    cases += [RawCase(f"liver_{key}", volume, None) for key, volume in tests.items()]
    return cases


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
