"""Connected components found slab by slab, and post-processing whose memory does not grow with the prediction."""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest
from scipy import ndimage

from monai_pipeline.inference.components import CONNECTIVITY, label_slabs, value_box
from monai_pipeline.inference.postprocess import PostprocessConfig, postprocess
from monai_pipeline.inference.quality import mean_entropy
from monai_pipeline.io.geometry import Geometry

COMPONENTS = sys.modules["monai_pipeline.inference.components"]
POSTPROCESS = sys.modules["monai_pipeline.inference.postprocess"]


def _whole_volume_labels(mask: np.ndarray, slab_voxels: int, monkeypatch) -> np.ndarray:
    monkeypatch.setattr(COMPONENTS, "SLAB_VOXELS", slab_voxels)
    components = label_slabs(lambda zs: mask[zs], mask.shape)
    out = np.zeros(mask.shape, dtype=np.int32)
    for index, zs in enumerate(components.slabs):
        out[zs] = components.labels(index, mask[zs])
    return out, components


@pytest.mark.parametrize("slab_voxels", [1, 700, 5_000, 10**9])
@pytest.mark.parametrize("density", [0.08, 0.3])
def test_slab_labels_are_ndimage_labels_of_the_whole_mask(slab_voxels, density, monkeypatch):
    """Same components, same numbering (raster order of the first voxel) and same sizes, whatever the slabs."""
    mask = np.random.default_rng(3).random((23, 17, 29)) < density
    expected, count = ndimage.label(mask, structure=CONNECTIVITY)
    found, components = _whole_volume_labels(mask, slab_voxels, monkeypatch)
    assert components.count == count > 0
    np.testing.assert_array_equal(found, expected)
    sizes = np.bincount(expected.ravel())
    sizes[0] = 0
    np.testing.assert_array_equal(components.sizes, sizes)


def test_a_component_joined_only_across_slabs_by_a_corner_is_one(monkeypatch):
    mask = np.zeros((4, 5, 5), dtype=bool)
    mask[0:2, 0, 0] = True  # slab 0 (two slices)
    mask[2:4, 1, 1] = True  # slab 1, touching the first only by a corner
    mask[3, 4, 4] = True  # alone
    found, components = _whole_volume_labels(mask, 50, monkeypatch)
    assert len(components.slabs) == 2 and components.count == 2
    assert list(components.sizes) == [0, 4, 1]
    assert set(np.unique(found[mask])) == {1, 2}


def test_value_box_matches_the_whole_array_box(monkeypatch):
    monkeypatch.setattr(COMPONENTS, "SLAB_VOXELS", 60)
    labels = np.zeros((20, 9, 11), dtype=np.uint8)
    labels[3, 2, 7] = 2
    labels[14, 6, 1] = 2
    labels[18, 8, 10] = 1
    assert value_box(labels, lambda slab: slab == 2) == (slice(3, 15), slice(2, 7), slice(1, 8))
    assert value_box(labels, lambda slab: slab == 3) is None


GEOMETRY = Geometry(
    size=(96, 96, 64), spacing=(0.8, 0.8, 2.5), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)
)


def _speckle(seed: int = 0) -> np.ndarray:
    """What a weakly trained model predicts: liver and tumour scattered over the whole scan."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([0, 1, 2], dtype=np.uint8), size=GEOMETRY.shape, p=[0.5, 0.3, 0.2])


def test_postprocess_memory_is_bounded_whatever_the_prediction(monkeypatch):
    """A prediction spread over the whole scan costs a few bytes a voxel of slab, not tens per voxel of the scan
    (labels, distance transforms and their index arrays over the whole box), and gives the same mask as one slab."""
    labels = _speckle()
    whole = postprocess(labels, GEOMETRY)
    monkeypatch.setattr(COMPONENTS, "SLAB_VOXELS", 20_000)
    monkeypatch.setattr(POSTPROCESS, "DISTANCE_VOXELS", 50_000)
    work = labels.copy()
    tracemalloc.start()
    try:
        postprocess(work, GEOMETRY, copy=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * labels.size, f"{peak / labels.size:.1f} bytes per voxel"
    np.testing.assert_array_equal(work, whole)
    assert 0 < np.count_nonzero(whole == 2) < np.count_nonzero(labels == 2)  # the steps did something


def test_postprocess_in_place_needs_uint8():
    with pytest.raises(ValueError, match="uint8"):
        postprocess(np.zeros(GEOMETRY.shape, dtype=np.int32), GEOMETRY, PostprocessConfig(), copy=False)


def test_mean_entropy_memory_is_bounded(monkeypatch):
    probabilities = np.random.default_rng(1).dirichlet([1, 1, 1], size=GEOMETRY.shape).astype(np.float32)
    probabilities = np.ascontiguousarray(np.moveaxis(probabilities, -1, 0))
    inside = np.ones(GEOMETRY.shape, dtype=bool)
    p = probabilities.astype(np.float64)
    expected = float(np.mean(-(p * np.log(p)).sum(axis=0)) / np.log(3))
    del p
    monkeypatch.setattr(COMPONENTS, "SLAB_VOXELS", 20_000)
    tracemalloc.start()
    try:
        found = mean_entropy(probabilities, inside)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found == pytest.approx(expected, rel=1e-9)
    assert peak < 6 * inside.size, f"{peak / inside.size:.1f} bytes per voxel"


@pytest.mark.parametrize("code", ["LPS", "SLP"])  # axial slices along the array's first axis, or its last
def test_measure_lesions_in_slabs_is_bounded_and_the_same(code, monkeypatch):
    """Tumour over much of the scan (a weak model): measured slab by slab, with the values asked for slab by slab,
    the lesions are those of one slab, for a few bytes a voxel."""
    import SimpleITK as sitk

    from monai_pipeline.inference.lesions import measure_lesions

    image = sitk.GetImageFromArray(_speckle(1))
    image.SetSpacing(GEOMETRY.spacing)
    image = sitk.DICOMOrient(image, code)
    labels, geometry = sitk.GetArrayFromImage(image), Geometry.of(image)
    hu = np.random.default_rng(2).normal(40, 20, labels.shape).astype(np.float32)
    probability = np.random.default_rng(3).random(labels.shape, dtype=np.float32)
    whole = measure_lesions(labels, geometry, probability, hu)
    monkeypatch.setattr(COMPONENTS, "SLAB_VOXELS", 20_000)
    asked = []

    def values(array):
        def give(cut):
            asked.append(array[cut].size)
            return array[cut]

        return give

    tracemalloc.start()
    try:
        slabbed = measure_lesions(labels, geometry, values(probability), values(hu))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(whole) > 100 and slabbed == whole
    assert max(asked) <= 20_000 + labels.size // min(labels.shape)
    assert peak < 4 * labels.size, f"{peak / labels.size:.1f} bytes per voxel"
