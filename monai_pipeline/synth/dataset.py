"""Write a synthetic liver-tumour dataset in the LiTS or the Medical Segmentation Decathlon (Task03_Liver) layout."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from monai_pipeline.errors import InputError
from monai_pipeline.io.writer import atomic_path, write_image
from monai_pipeline.synth.anatomy import sample_anatomy
from monai_pipeline.synth.contrast import PHASES, check_phase
from monai_pipeline.synth.phantom import FIELDS_OF_VIEW, default_thickness, make_phantom

__all__ = ["FOV_MIX", "LAYOUTS", "PHANTOMS_JSON", "case_grid", "case_settings", "write_synthetic_dataset"]

FOV_MIX: dict[str, float] = {"abdomen": 0.8, "partial-liver": 0.1, "chest": 0.05, "pelvis": 0.05}
"""The default share of each field of view in a dataset."""
PHANTOMS_JSON = "phantoms.json"
"""Written beside a dataset: per case its seed, contrast phase, field of view, slice thickness, noise and lesion
kinds."""

LAYOUTS: tuple[str, ...] = ("lits", "msd")
"""``lits``: ``volume-<i>.nii.gz`` and ``segmentation-<i>.nii.gz`` side by side; ``msd``: ``imagesTr/liver_<i>.nii.gz``,
``labelsTr/liver_<i>.nii.gz`` and ``dataset.json``."""

_ORIENTATIONS = ("LPS", "RAS", "LAI", "oblique")
_IN_PLANE_MM = 2.2  # in-plane spacing of a case is 0.7-1.0 times this unless given


def case_grid(
    seed: int, case: int, size: Sequence[int] | None = None, spacing: Sequence[float] | None = None
) -> tuple[tuple[int, int, int], tuple[float, float, float], str | tuple[float, ...]]:
    """The size, spacing and orientation of case ``case`` of the dataset drawn with ``seed``.

    Orientations cycle through LPS, RAS, LAI and an oblique grid (LPS turned 10-20 degrees about z and 2-5 about
    x). A spacing not given is anisotropic: in-plane 0.7-1.0 x 2.2 mm, between slices 2-3.5 x in-plane. A size
    not given covers a 340-420 mm wide, 200-280 mm long field of view; given a size but no spacing, the in-plane
    spacing is chosen for that field of view instead.
    """
    rng = np.random.default_rng([seed, case, 2])
    width, length = rng.uniform(340, 420), rng.uniform(200, 280)
    if spacing is None:
        in_plane = width / max(size[:2]) if size is not None else _IN_PLANE_MM * rng.uniform(0.7, 1.0)
        spacing = (in_plane, in_plane, in_plane * rng.uniform(2.0, 3.5))
    if size is None:
        size = (round(width / spacing[0]), round(width / spacing[1]), round(length / spacing[2]))
    orientation: str | tuple[float, ...] = _ORIENTATIONS[case % len(_ORIENTATIONS)]
    if orientation == "oblique":
        turn = rng.uniform(10, 20) * rng.choice([-1, 1]), rng.uniform(2, 5) * rng.choice([-1, 1])
        orientation = tuple(Rotation.from_euler("ZX", turn, degrees=True).as_matrix().ravel().tolist())
    return tuple(int(n) for n in size), tuple(float(d) for d in spacing), orientation


def case_settings(
    seed: int, case: int, fov_mix: Mapping[str, float] | str | None = None, phase: str | None = None
) -> tuple[int, str, str]:
    """The phantom seed, contrast phase and field of view of case ``case`` of the dataset drawn with ``seed``.

    Args:
        seed: chooses the dataset.
        case: the case number.
        fov_mix: the share of each field of view (:data:`~monai_pipeline.synth.phantom.FIELDS_OF_VIEW`), or the name
            of one for all cases; default :data:`FOV_MIX`.
        phase: the contrast phase of every case; default: drawn per case, a third each.

    Raises:
        ValueError: for an unknown phase or field of view, or shares that are negative or sum to 0.
    """
    mix = _check_mix(FOV_MIX if fov_mix is None else fov_mix)
    rng = np.random.default_rng([seed, case, 3])
    drawn_phase = PHASES[int(rng.integers(len(PHASES)))]
    names, shares = list(mix), np.array(list(mix.values()), dtype=float)
    fov = names[int(rng.choice(len(names), p=shares / shares.sum()))]
    case_seed = int(np.random.SeedSequence([seed, case]).generate_state(1)[0])
    return case_seed, drawn_phase if phase is None else check_phase(phase), fov


def _check_mix(mix: Mapping[str, float] | str) -> dict[str, float]:
    """``mix`` as a mapping of field of view to share, checked."""
    if isinstance(mix, str):
        mix = {mix: 1.0}
    unknown = sorted(set(mix) - set(FIELDS_OF_VIEW))
    if unknown:
        raise ValueError(f"unknown field(s) of view {unknown}; expected some of {', '.join(FIELDS_OF_VIEW)}.")
    shares = [float(v) for v in mix.values()]
    if not shares or any(not np.isfinite(v) or v < 0 for v in shares) or sum(shares) <= 0:
        raise ValueError(f"field of view shares must be non-negative with a positive sum, got {dict(mix)}.")
    return {name: float(v) for name, v in mix.items()}


def write_synthetic_dataset(
    out_dir: str | os.PathLike[str],
    cases: int,
    *,
    seed: int = 0,
    layout: str = "lits",
    size: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    progress: bool = True,
    phase: str | None = None,
    fov_mix: Mapping[str, float] | str | None = None,
) -> list[Path]:
    """Write ``cases`` synthetic CT scans (int16 HU) with liver and tumour labels (uint8 0/1/2).

    Case ``i`` is the phantom of a seed drawn from (``seed``, ``i``) on the grid of :func:`case_grid`, in the phase
    and field of view of :func:`case_settings`, so a dataset is the same for the same arguments whatever the number
    of cases. Chest and pelvis cases have no liver in their label. Files are written atomically, and
    ``phantoms.json`` records each case's settings.

    Args:
        out_dir: the dataset folder; made when missing, files already in it are overwritten.
        cases: how many cases, numbered from 0.
        seed: chooses the whole dataset.
        layout: ``"lits"`` or ``"msd"`` (see :data:`LAYOUTS`).
        size: voxels (x, y, z) of every case; default: per case, to cover the field of view.
        spacing: voxel size in mm of every case; default: per case, anisotropic.
        progress: show a progress bar over the cases.
        phase: contrast phase of every case (``non-contrast``, ``arterial``, ``portal-venous``); default: mixed.
        fov_mix: share of each field of view, or one field of view's name for all cases; default :data:`FOV_MIX`
            (``"abdomen"`` gives whole livers only).

    Returns:
        The files written: image and label of each case in turn, then ``dataset.json`` for the MSD layout, then
        ``phantoms.json``.

    Raises:
        ValueError: for a bad number of cases, seed, layout, size, spacing, phase or field of view mix.
        InputError: when ``out_dir`` is a file.
    """
    if isinstance(cases, bool) or int(cases) != cases or cases < 1:
        raise ValueError(f"cases must be a positive whole number, got {cases!r}.")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed!r}.")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}.")
    for name, value in (("size", size), ("spacing", spacing)):
        if value is not None and (len(value) != 3 or not all(v > 0 for v in value)):
            raise ValueError(f"{name} must be three positive numbers, got {tuple(value)}.")
    settings = [case_settings(seed, case, fov_mix, phase) for case in range(int(cases))]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "exists and is not a folder")
    written: list[Path] = []
    records = []
    for case in tqdm(range(int(cases)), desc="synthetic cases", unit="case", disable=not progress):
        case_size, case_spacing, orientation = case_grid(seed, case, size, spacing)
        case_seed, case_phase, fov = settings[case]
        ct, label = make_phantom(
            case_seed, size=case_size, spacing=case_spacing, orientation=orientation, phase=case_phase, fov=fov
        )
        if layout == "lits":
            image_path, label_path = out_dir / f"volume-{case}.nii.gz", out_dir / f"segmentation-{case}.nii.gz"
        else:
            image_path, label_path = (
                out_dir / "imagesTr" / f"liver_{case}.nii.gz",
                out_dir / "labelsTr" / f"liver_{case}.nii.gz",
            )
        written += [write_image(ct, image_path), write_image(label, label_path)]
        records.append(_record(image_path.relative_to(out_dir), case_seed, case_phase, fov, case_spacing))
    if layout == "msd":
        written.append(_write_dataset_json(out_dir, int(cases)))
    path = out_dir / PHANTOMS_JSON
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"phantoms": records}, indent=2) + "\n")
    return [*written, path]


def _record(image: Path, seed: int, phase: str, fov: str, spacing: Sequence[float]) -> dict:
    """What ``phantoms.json`` says of one case; its lesion kinds are the patient's (a partial liver may miss some)."""
    anatomy = sample_anatomy(seed, phase)
    return {
        "image": image.as_posix(),
        "seed": seed,
        "phase": phase,
        "fov": fov,
        "thickness_mm": round(default_thickness(spacing), 2),
        "noise_hu": round(anatomy.noise_sigma, 1),
        "lesion_kinds": sorted({lesion.kind for lesion in anatomy.tumours}) if fov not in ("chest", "pelvis") else [],
    }


def _write_dataset_json(out_dir: Path, cases: int) -> Path:
    """The MSD ``dataset.json`` listing the training cases, written atomically."""
    description = {
        "name": "SyntheticLiver",
        "description": "Synthetic LiTS-like liver and liver-tumour CT phantoms (monai_pipeline.synth)",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "liver", "2": "cancer"},
        "numTraining": cases,
        "numTest": 0,
        "training": [
            {"image": f"./imagesTr/liver_{i}.nii.gz", "label": f"./labelsTr/liver_{i}.nii.gz"} for i in range(cases)
        ],
        "test": [],
    }
    path = out_dir / "dataset.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(description, indent=2) + "\n")
    return path
