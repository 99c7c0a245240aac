"""Lesion measurements on masks with known lesions: spheres and an ellipsoid placed in physical space on an
anisotropic grid in each test orientation, so volume, diameter and centroid have known true values."""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import asdict

import numpy as np
import pytest

from monai_pipeline.inference.lesions import Lesion, measure_lesions, scan_summary, write_lesion_csv
from monai_pipeline.io.geometry import Geometry

SIZE = (100, 100, 24)  # (x, y, z)
SPACING = (0.7, 0.7, 2.5)
ORIGIN = (-20.0, 35.5, -150.0)
# Centres on voxel centres in-plane and half-way between slices, so each voxelised shape is symmetric about its
# centre (its centroid is exact) and the slices sample it by the midpoint rule (its volume is within 3.2%).
CENTRES = {"r12": (25, 25, 11.5), "r8": (74, 25, 11.5), "r5": (25, 74, 11.5), "ellipsoid": (74, 74, 11.5)}
RADII = {"r12": 12.0, "r8": 8.0, "r5": 5.0}
LONG_AXIS = np.array([np.cos(np.radians(30.0)), np.sin(np.radians(30.0)), 0.0])  # in the patient's axial plane
SEMI_AXES = (12.0, 6.0, 6.0)  # a 2:1 ellipsoid, long along LONG_AXIS


def _geometry(direction) -> Geometry:
    return Geometry(size=SIZE, spacing=SPACING, origin=ORIGIN, direction=tuple(direction))


def _physical(geometry: Geometry, index_xyz) -> np.ndarray:
    """The LPS position of a (continuous) index, as SimpleITK computes it."""
    image = geometry.reference_image()
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint([float(i) for i in index_xyz]))


def _voxel_centres(geometry: Geometry) -> np.ndarray:
    """(z, y, x, 3) LPS positions of every voxel centre."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.size[::-1]], indexing="ij")[::-1], axis=-1)
    direction = np.asarray(geometry.direction).reshape(3, 3)
    return np.asarray(geometry.origin) + (index * np.asarray(geometry.spacing)) @ direction.T


@functools.cache
def _shapes(geometry: Geometry) -> dict[str, np.ndarray]:
    """Boolean masks (z, y, x) of the three spheres and the ellipsoid, placed in physical space (do not modify)."""
    points = _voxel_centres(geometry)
    masks = {}
    for name, radius in RADII.items():
        masks[name] = np.linalg.norm(points - _physical(geometry, CENTRES[name]), axis=-1) <= radius
    offset = points - _physical(geometry, CENTRES["ellipsoid"])
    short = np.cross([0.0, 0.0, 1.0], LONG_AXIS)
    axes = np.stack([LONG_AXIS, short, [0.0, 0.0, 1.0]])
    masks["ellipsoid"] = (((offset @ axes.T) / np.asarray(SEMI_AXES)) ** 2).sum(-1) <= 1.0
    return masks


@pytest.fixture
def known(orientation):
    geometry = _geometry(orientation.direction)
    shapes = _shapes(geometry)
    labels = np.zeros(geometry.shape, dtype=np.uint8)
    labels[15:20, 40:60, 40:60] = 1  # some liver, which is not a lesion
    for mask in shapes.values():
        labels[mask] = 2
    return geometry, shapes, labels


def _by_volume(lesions: list[Lesion], shapes: dict[str, np.ndarray]) -> dict[str, Lesion]:
    """The lesion of each shape, matched by voxel count."""
    counts = {int(mask.sum()): name for name, mask in shapes.items()}
    assert len(counts) == len(shapes)
    return {counts[lesion.voxels]: lesion for lesion in lesions}


def test_lesions_are_counted_and_sorted_largest_first(known):
    geometry, shapes, labels = known
    lesions = measure_lesions(labels, geometry)
    assert len(lesions) == 4
    assert [lesion.lesion_id for lesion in lesions] == [1, 2, 3, 4]
    assert [lesion.voxels for lesion in lesions] == sorted((int(m.sum()) for m in shapes.values()), reverse=True)
    assert list(_by_volume(lesions, shapes)) == ["r12", "r8", "ellipsoid", "r5"]


def test_volume_is_close_to_the_true_volume(known):
    geometry, shapes, labels = known
    lesions = _by_volume(measure_lesions(labels, geometry), shapes)
    voxel_ml = math.prod(SPACING) / 1000
    for name, radius in RADII.items():
        assert lesions[name].volume_ml == pytest.approx(4 / 3 * math.pi * radius**3 / 1000, rel=0.05), name
        assert lesions[name].volume_ml == pytest.approx(lesions[name].voxels * voxel_ml, abs=1e-4)
    assert lesions["ellipsoid"].volume_ml == pytest.approx(4 / 3 * math.pi * math.prod(SEMI_AXES) / 1000, rel=0.05)


def test_longest_axial_diameter_is_edge_to_edge(known):
    geometry, shapes, labels = known
    lesions = _by_volume(measure_lesions(labels, geometry), shapes)
    tolerance = 1.5 * SPACING[0]
    for name, radius in RADII.items():
        assert abs(lesions[name].longest_axial_diameter_mm - 2 * radius) <= tolerance, (name, lesions[name])
    assert abs(lesions["ellipsoid"].longest_axial_diameter_mm - 2 * SEMI_AXES[0]) <= tolerance
    summary = scan_summary(labels, geometry, list(lesions.values()))
    assert summary["largest_lesion_diameter_mm"] == max(lesion.longest_axial_diameter_mm for lesion in lesions.values())


def test_centroid_in_lps_and_ras(known):
    geometry, shapes, labels = known
    lesions = _by_volume(measure_lesions(labels, geometry), shapes)
    for name, lesion in lesions.items():
        lps = np.array([lesion.centroid_lps_x_mm, lesion.centroid_lps_y_mm, lesion.centroid_lps_z_mm])
        ras = np.array([lesion.centroid_ras_x_mm, lesion.centroid_ras_y_mm, lesion.centroid_ras_z_mm])
        assert np.linalg.norm(lps - _physical(geometry, CENTRES[name])) <= 0.5 * min(SPACING), name
        np.testing.assert_array_equal(ras, lps * [-1, -1, 1])


def test_centroid_follows_the_geometry_not_the_array(known):
    # The same array under another direction puts the lesion elsewhere in the patient.
    geometry, shapes, labels = known
    flipped = Geometry(geometry.size, geometry.spacing, geometry.origin, tuple(-np.asarray(geometry.direction)))
    here = _by_volume(measure_lesions(labels, geometry), shapes)["r8"]
    there = _by_volume(measure_lesions(labels, flipped), shapes)["r8"]
    centre = np.asarray(geometry.origin)
    for axis in "xyz":
        a, b = getattr(here, f"centroid_lps_{axis}_mm"), getattr(there, f"centroid_lps_{axis}_mm")
        assert a - centre["xyz".index(axis)] == pytest.approx(centre["xyz".index(axis)] - b, abs=0.02)


def test_probability_and_hu_statistics(known):
    geometry, shapes, labels = known
    rng = np.random.default_rng(7)
    probability = rng.uniform(0.5, 0.9, size=labels.shape).astype(np.float32)
    hu = rng.normal(30.0, 15.0, size=labels.shape).astype(np.float32)
    probability[tuple(np.argwhere(shapes["r5"])[0])] = 0.99
    lesions = _by_volume(measure_lesions(labels, geometry, probability, hu), shapes)
    for name, mask in shapes.items():
        assert lesions[name].mean_probability == pytest.approx(float(probability[mask].mean()), abs=1e-4)
        assert lesions[name].max_probability == pytest.approx(float(probability[mask].max()), abs=1e-4)
        assert lesions[name].mean_hu == pytest.approx(float(hu[mask].mean()), abs=0.05)
    assert lesions["r5"].max_probability == pytest.approx(0.99, abs=1e-4)
    without = measure_lesions(labels, geometry)
    assert all(x.mean_probability is None and x.max_probability is None and x.mean_hu is None for x in without)


def test_lesions_touching_at_a_corner_are_one_lesion():
    geometry = _geometry(np.eye(3).ravel())
    labels = np.zeros(geometry.shape, dtype=np.uint8)
    labels[5:8, 10:13, 10:13] = 2
    labels[8:11, 13:16, 13:16] = 2  # shares only the corner of voxel (7, 12, 12) with (8, 13, 13)
    labels[5:8, 10:13, 30:33] = 2
    labels[5:8, 10:13, 34:37] = 2  # one voxel of gap: separate
    lesions = measure_lesions(labels, geometry)
    assert [lesion.voxels for lesion in lesions] == [54, 27, 27]


def test_empty_mask_has_no_lesions():
    geometry = _geometry(np.eye(3).ravel())
    labels = np.zeros(geometry.shape, dtype=np.uint8)
    labels[3:6, 3:6, 3:6] = 1
    assert measure_lesions(labels, geometry) == []
    assert scan_summary(labels, geometry, [])["lesions"] == 0


def test_scan_summary_counts_tumour_as_liver():
    geometry = _geometry(np.eye(3).ravel())
    labels = np.zeros(geometry.shape, dtype=np.uint8)
    labels[2:12, 10:60, 10:60] = 1  # 25 000 voxels
    labels[5:9, 20:30, 20:30] = 2  # 400 of them tumour
    voxel_ml = math.prod(SPACING) / 1000
    lesions = measure_lesions(labels, geometry)
    summary = scan_summary(labels, geometry, lesions)
    assert summary["liver_volume_ml"] == pytest.approx(25_000 * voxel_ml, abs=1e-3)
    assert summary["tumour_volume_ml"] == pytest.approx(400 * voxel_ml, abs=1e-3)
    assert summary["tumour_burden"] == pytest.approx(400 / 25_000, abs=1e-5)
    assert summary["lesions"] == 1
    assert summary["largest_lesion_diameter_mm"] == lesions[0].longest_axial_diameter_mm
    empty = scan_summary(np.zeros_like(labels), geometry, [])
    assert empty == {
        "liver_volume_ml": 0.0,
        "tumour_volume_ml": 0.0,
        "tumour_burden": 0.0,
        "lesions": 0,
        "largest_lesion_diameter_mm": 0.0,
    }


def test_lesion_csv_without_lesions_has_the_header(tmp_path):
    path = write_lesion_csv([], tmp_path / "case_lesions.csv")
    assert path == tmp_path / "case_lesions.csv"
    assert path.read_text().strip() == ",".join(Lesion.__dataclass_fields__)
    assert [p.name for p in tmp_path.iterdir()] == ["case_lesions.csv"]


def test_lesion_csv_rows_round_trip(known, tmp_path):
    geometry, _, labels = known
    lesions = measure_lesions(labels, geometry)
    path = write_lesion_csv(lesions, tmp_path / "case_lesions.csv")
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [list(row) for row in rows] == [list(Lesion.__dataclass_fields__)] * len(lesions)
    for row, lesion in zip(rows, lesions):
        assert {key: str(value) if value is not None else "" for key, value in asdict(lesion).items()} == row
    assert [p.name for p in tmp_path.iterdir()] == ["case_lesions.csv"]


def test_lesion_csv_is_written_atomically(tmp_path):
    path = write_lesion_csv([], tmp_path / "case_lesions.csv")
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_lesion_csv([object()], path)  # fails half-way, after the header
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["case_lesions.csv"]


def test_single_voxel_lesions_measure_the_voxel_diagonal():
    labels = np.zeros(SIZE[::-1], dtype=np.uint8)
    labels[5, 10, 10] = labels[5, 40, 40] = 2  # two specks
    labels[12, 60:63, 60] = 2  # a 3-voxel line along y: 3 x 0.7 by 0.7 mm
    lesions = measure_lesions(labels, _geometry((1, 0, 0, 0, 1, 0, 0, 0, 1)))
    assert [lesion.voxels for lesion in lesions] == [3, 1, 1]
    assert lesions[1].longest_axial_diameter_mm == lesions[2].longest_axial_diameter_mm == round(0.7 * math.sqrt(2), 2)
    assert lesions[0].longest_axial_diameter_mm == round(math.hypot(2.1, 0.7), 2)
