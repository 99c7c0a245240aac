"""Post-processing of predicted masks: one liver, tumours only in or at the liver, no specks; each step alone and
all together, on an anisotropic grid so that distances in mm and voxels differ per axis."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from monai_pipeline.inference.postprocess import PostprocessConfig, largest_foreground, liver_region, postprocess
from monai_pipeline.inference.quality import NO_LIVER_ML
from monai_pipeline.io.geometry import Geometry

SPACING = (0.8, 0.8, 2.0)  # (x, y, z) mm
GEOMETRY = Geometry(
    size=(120, 110, 60), spacing=SPACING, origin=(10.0, -20.0, 300.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)
)
ONLY_KEEP_LARGEST = PostprocessConfig(keep_largest_liver=True, tumour_in_liver=False, min_lesion_ml=0.0, min_liver_ml=0)
ONLY_IN_LIVER = PostprocessConfig(keep_largest_liver=False, tumour_in_liver=True, min_lesion_ml=0.0, min_liver_ml=0)
ONLY_MIN_SIZE = PostprocessConfig(keep_largest_liver=False, tumour_in_liver=False, min_lesion_ml=0.05, min_liver_ml=0)
ONLY_MIN_LIVER = PostprocessConfig(keep_largest_liver=False, tumour_in_liver=False, min_lesion_ml=0.0)


def _ball(centre_mm, radius_mm) -> np.ndarray:
    """A ball (z, y, x) on GEOMETRY's grid, centre in mm from voxel (0, 0, 0) along (x, y, z)."""
    axes = [np.arange(n) * s for n, s in zip(GEOMETRY.size, SPACING)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    cx, cy, cz = centre_mm
    return (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= radius_mm**2


LIVER_CENTRE, LIVER_RADIUS = (45.0, 44.0, 60.0), 40.0


def _liver() -> np.ndarray:
    labels = np.zeros(GEOMETRY.shape, dtype=np.uint8)
    labels[_ball(LIVER_CENTRE, LIVER_RADIUS)] = 1
    return labels


def _components(mask: np.ndarray) -> int:
    from scipy import ndimage

    return ndimage.label(mask, structure=np.ones((3, 3, 3)))[1]


def test_keep_largest_liver_removes_a_detached_blob_with_its_tumour():
    labels = _liver()
    labels[_ball((45.0, 44.0, 55.0), 8.0)] = 2  # a tumour in the liver: kept
    other = _ball((88.0, 78.0, 20.0), 6.0)
    labels[other] = 1
    labels[_ball((88.0, 78.0, 20.0), 3.0)] = 2  # a tumour in the detached blob: goes with it
    out = postprocess(labels, GEOMETRY, ONLY_KEEP_LARGEST)
    assert not out[other].any()
    expected = labels.copy()
    expected[other] = 0
    np.testing.assert_array_equal(out, expected)


def test_keep_largest_liver_counts_tumour_as_liver():
    # a liver blob that is mostly tumour is larger than a liver-only blob and wins
    labels = np.zeros(GEOMETRY.shape, dtype=np.uint8)
    big, small = _ball((30.0, 40.0, 60.0), 20.0), _ball((80.0, 40.0, 60.0), 12.0)
    labels[big] = 1
    labels[_ball((30.0, 40.0, 60.0), 18.0)] = 2
    labels[small] = 1
    out = postprocess(labels, GEOMETRY, ONLY_KEEP_LARGEST)
    np.testing.assert_array_equal(out[big], labels[big])
    assert not out[small].any()


def test_liver_parts_touching_at_a_corner_are_one_liver():
    labels = np.zeros(GEOMETRY.shape, dtype=np.uint8)
    labels[10:20, 10:20, 10:20] = 1
    labels[20:25, 20:25, 20:25] = 1  # touches the first block only at a corner
    out = postprocess(labels, GEOMETRY, ONLY_KEEP_LARGEST)
    np.testing.assert_array_equal(out, labels)


def test_tumour_far_from_the_liver_is_dropped():
    labels = _liver()
    far = _ball((90.0, 80.0, 10.0), 4.0)  # 36 mm from the liver
    labels[far] = 2
    out = postprocess(labels, GEOMETRY, ONLY_IN_LIVER)
    assert not out[far].any()
    np.testing.assert_array_equal(out[~far], labels[~far])


def test_large_tumour_filling_most_of_the_liver_is_kept():
    labels = _liver()
    big = _ball(LIVER_CENTRE, 30.0)
    labels[big] = 2
    out = postprocess(labels, GEOMETRY, PostprocessConfig())
    np.testing.assert_array_equal(out, labels)


def test_tumour_on_the_liver_rim_is_kept():
    labels = _liver()
    rim = _ball((LIVER_CENTRE[0] + LIVER_RADIUS, LIVER_CENTRE[1], LIVER_CENTRE[2]), 6.0)  # half outside
    labels[rim] = 2
    assert np.count_nonzero(rim & ~_ball(LIVER_CENTRE, LIVER_RADIUS)) > 100
    np.testing.assert_array_equal(postprocess(labels, GEOMETRY, PostprocessConfig()), labels)


@pytest.mark.parametrize(
    ("axis", "gap_mm", "kept"),
    [("x", 8.0, True), ("x", 12.0, False), ("z", 8.0, True), ("z", 12.0, False)],
)
def test_tumour_near_the_liver_is_kept_within_the_margin_in_mm(axis, gap_mm, kept):
    # The liver is a box; a small tumour box lies gap_mm (voxel centre to voxel centre) beyond it along one axis.
    # With 0.8 mm in-plane and 2 mm slices, a margin counted in voxels or on swapped axes would get one of these wrong.
    labels = np.zeros(GEOMETRY.shape, dtype=np.uint8)
    labels[10:30, 20:60, 20:60] = 1  # liver: z 10..29, x 20..59
    if axis == "x":
        start = 59 + round(gap_mm / SPACING[0])
        tumour = (slice(15, 20), slice(30, 40), slice(start, start + 5))
    else:
        start = 29 + round(gap_mm / SPACING[2])
        tumour = (slice(start, start + 3), slice(30, 40), slice(30, 40))
    labels[tumour] = 2
    out = postprocess(labels, GEOMETRY, ONLY_IN_LIVER)
    assert bool(out[tumour].all()) is kept and bool(out[tumour].any()) is kept
    assert PostprocessConfig().liver_margin_mm == 10.0


def test_tiny_tumours_become_liver_and_big_ones_stay():
    labels = _liver()
    voxel_ml = float(np.prod(SPACING)) / 1000  # 0.00128 mL
    tiny = np.zeros_like(labels, dtype=bool)
    tiny[30, 50, 50:52] = True  # 2 voxels, 0.0026 mL
    small = np.zeros_like(labels, dtype=bool)
    small[25:28, 40:44, 40:44] = True  # 48 voxels, 0.061 mL: just above 0.05 mL
    big = _ball((45.0, 44.0, 80.0), 6.0)
    labels[tiny | small | big] = 2
    assert 48 * voxel_ml > 0.05 > 2 * voxel_ml
    out = postprocess(labels, GEOMETRY, ONLY_MIN_SIZE)
    assert (out[tiny] == 1).all()
    assert (out[small] == 2).all() and (out[big] == 2).all()
    np.testing.assert_array_equal(out[~tiny], labels[~tiny])


def test_all_steps_together():
    labels = _liver()
    labels[_ball((45.0, 44.0, 55.0), 8.0)] = 2  # kept
    labels[30, 50, 70] = 2  # speck, 12 mm from the tumour: liver
    labels[_ball((90.0, 80.0, 10.0), 4.0)] = 1  # detached liver: gone
    labels[_ball((10.0, 80.0, 110.0), 4.0)] = 2  # detached tumour: gone
    out = postprocess(labels, GEOMETRY)
    expected = _liver()
    expected[_ball((45.0, 44.0, 55.0), 8.0)] = 2
    np.testing.assert_array_equal(out, expected)
    assert _components(out >= 1) == 1


def test_off_changes_nothing():
    rng = np.random.default_rng(3)
    labels = rng.choice(np.array([0, 1, 2], dtype=np.uint8), size=GEOMETRY.shape, p=[0.9, 0.07, 0.03])
    out = postprocess(labels, GEOMETRY, PostprocessConfig.off())
    np.testing.assert_array_equal(out, labels)
    assert out is not labels and out.dtype == np.uint8


@pytest.mark.parametrize("config", [PostprocessConfig(), PostprocessConfig.off()], ids=["default", "off"])
def test_empty_mask_stays_empty(config):
    out = postprocess(np.zeros(GEOMETRY.shape, dtype=np.uint8), GEOMETRY, config)
    assert out.shape == GEOMETRY.shape and out.dtype == np.uint8 and not out.any()


def test_only_tumour_no_liver():
    # with no liver voxel at all, no tumour is "in the liver"
    labels = np.zeros(GEOMETRY.shape, dtype=np.uint8)
    labels[_ball(LIVER_CENTRE, 10.0)] = 2
    assert not postprocess(labels, GEOMETRY, ONLY_IN_LIVER).any()


def test_input_array_is_not_modified():
    labels = _liver()
    labels[_ball((90.0, 80.0, 10.0), 4.0)] = 2
    labels[30, 50, 50] = 2
    before = labels.copy()
    out = postprocess(labels, GEOMETRY)
    np.testing.assert_array_equal(labels, before)
    assert not np.shares_memory(out, labels)


def test_default_is_every_step_on():
    config = PostprocessConfig()
    assert config.keep_largest_liver and config.tumour_in_liver and config.min_lesion_ml == 0.05
    assert config.min_liver_ml == NO_LIVER_ML
    off = PostprocessConfig.off()
    assert not off.keep_largest_liver and not off.tumour_in_liver and off.min_lesion_ml == 0.0
    assert off.min_liver_ml == 0.0


def test_a_liver_below_the_minimum_is_emptied():
    labels = np.zeros(GEOMETRY.shape, dtype=np.uint8)
    labels[_ball(LIVER_CENTRE, 10.0)] = 1  # 4.2 mL
    labels[_ball(LIVER_CENTRE, 3.0)] = 2
    assert not postprocess(labels, GEOMETRY, ONLY_MIN_LIVER).any()
    np.testing.assert_array_equal(postprocess(labels, GEOMETRY, PostprocessConfig.off()), labels)
    liver = _liver()  # 268 mL
    np.testing.assert_array_equal(postprocess(liver, GEOMETRY, ONLY_MIN_LIVER), liver)


def test_liver_region_on_the_networks_grid_empties_a_small_liver():
    voxel_ml = float(np.prod(SPACING)) / 1000.0
    labels = np.zeros(GEOMETRY.shape, dtype=np.uint8)
    labels[_ball(LIVER_CENTRE, 10.0)] = 1
    region, kept, volume = liver_region(_probabilities(labels), voxel_ml, PostprocessConfig())
    assert volume == pytest.approx(np.count_nonzero(labels) * voxel_ml) and volume < NO_LIVER_ML
    assert region is not None and not region.any() and kept.sum() == np.count_nonzero(labels)
    region, kept, volume = liver_region(_probabilities(_liver()), voxel_ml, PostprocessConfig())
    assert region is None and volume > NO_LIVER_ML and kept.sum() == np.count_nonzero(_liver())


@pytest.mark.parametrize("slab_voxels", [4_000_000, 20_000, 1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tumour_in_liver_equals_a_distance_transform_over_the_whole_box(seed, slab_voxels, monkeypatch):
    """Labelling and measuring distances in one slab, in slabs of a few slices or slice by slice gives the same
    answer as one distance transform over the whole foreground box, on random scattered lesions around a liver."""
    from scipy import ndimage

    monkeypatch.setattr(sys.modules["monai_pipeline.inference.components"], "SLAB_VOXELS", slab_voxels)
    monkeypatch.setattr(sys.modules["monai_pipeline.inference.postprocess"], "DISTANCE_VOXELS", slab_voxels)

    rng = np.random.default_rng(seed)
    labels = _liver()
    for _ in range(40):
        centre = rng.uniform([0, 0, 0], np.array(GEOMETRY.size) * SPACING)
        labels[_ball(tuple(centre), rng.uniform(1.0, 6.0)) & (labels == 0)] = 2
        labels[_ball(tuple(centre), rng.uniform(1.0, 4.0))] = 2
    spacing_zyx = np.asarray(SPACING[::-1])
    components, count = ndimage.label(labels == 2, structure=np.ones((3, 3, 3)))
    near = ndimage.distance_transform_edt(labels != 1, sampling=spacing_zyx) <= 10.0
    expected = labels.copy()
    expected[(components > 0) & ~np.isin(components, np.unique(components[near & (components > 0)]))] = 0
    out = postprocess(labels, GEOMETRY, ONLY_IN_LIVER)
    assert count > 10 and 0 < (out == 2).sum() < (labels == 2).sum()  # some kept, some dropped
    np.testing.assert_array_equal(out, expected)


def _probabilities(labels: np.ndarray) -> np.ndarray:
    """Soft-ish softmax outputs (C, z, y, x) whose most probable class is ``labels``."""
    probabilities = np.full((3, *labels.shape), 0.1, dtype=np.float32)
    for label in range(3):
        probabilities[label][labels == label] = 0.8
    return probabilities


def test_largest_foreground_is_the_largest_region_where_liver_or_tumour_wins():
    labels = _liver()
    labels[_ball((45.0, 44.0, 55.0), 8.0)] = 2
    other = _ball((88.0, 78.0, 20.0), 6.0)
    labels[other] = 1
    labels[_ball((88.0, 78.0, 20.0), 3.0)] = 2  # a tumour in the detached blob counts with it
    region = largest_foreground(_probabilities(labels))
    np.testing.assert_array_equal(region, _ball(LIVER_CENTRE, LIVER_RADIUS))
    # the same region as postprocess keeps, where both work on one grid
    np.testing.assert_array_equal(postprocess(labels, GEOMETRY, ONLY_KEEP_LARGEST) >= 1, region)


def test_largest_foreground_counts_tumour_and_liver_together():
    labels = np.zeros(GEOMETRY.shape, dtype=np.uint8)
    labels[_ball((30.0, 30.0, 30.0), 12.0)] = 2  # mostly tumour, larger
    labels[_ball((30.0, 30.0, 30.0), 5.0)] = 1
    labels[_ball((85.0, 75.0, 90.0), 9.0)] = 1  # liver only, smaller
    region = largest_foreground(_probabilities(labels))
    np.testing.assert_array_equal(region, _ball((30.0, 30.0, 30.0), 12.0))


def test_largest_foreground_has_nothing_to_drop_in_one_region_or_none():
    assert largest_foreground(_probabilities(_liver())) is None
    assert largest_foreground(_probabilities(np.zeros(GEOMETRY.shape, dtype=np.uint8))) is None
    # a voxel where background wins is not foreground, however high its liver probability
    probabilities = _probabilities(_liver())
    probabilities[:, 0, 0, 0] = (0.5, 0.45, 0.05)
    assert largest_foreground(probabilities) is None
