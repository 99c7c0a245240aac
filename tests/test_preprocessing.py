"""Tests for monai_pipeline.preprocessing on small synthetic CT volumes with known anatomy and geometry."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from _volumes import (
    DIRECTIONS,
    LAI,
    LARGE,
    LPS,
    OBLIQUE,
    RAS,
    SMALL,
    Phantom,
    centroid,
    dice,
    grid,
    make_case,
    physical_points,
    value_at,
    with_geometry,
)

from monai_pipeline.errors import InputError, PipelineError
from monai_pipeline.io import Geometry
from monai_pipeline.preprocessing import (
    IntensityStats,
    PreprocessingConfig,
    preprocess,
    reorient,
    resample_onto,
    resample_to_spacing,
    restore,
    target_grid,
)
from monai_pipeline.preprocessing.crop import body_box, crop, crop_geometry, foreground_box, union_box
from monai_pipeline.preprocessing.intensity import normalize, window, zscore
from monai_pipeline.preprocessing.resample import MAX_GRID_VOXELS, reoriented_geometry

CENTRE = (12.0, -30.0, 150.0)
"""LPS centre of the field of view of every synthetic case (see ``_volumes.make_case``)."""

PSL = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
"""A sagittal-like grid whose index axes point P, S, L: a cyclic permutation of the LPS axes."""


def _geometry_image(size, spacing, direction=LPS, pixel=sitk.sitkFloat32, value=0.0) -> sitk.Image:
    size, origin, direction = grid(np.multiply(size, spacing), spacing, direction, CENTRE)
    image = sitk.Image(list(size), pixel) + value
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def _fov_centre(image: sitk.Image) -> np.ndarray:
    """The physical centre of the field of view, computed by ITK from the continuous centre index."""
    return np.array(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))


# --------------------------------------------------------------------------------------------- target_grid


@pytest.mark.parametrize("direction", [LPS, LAI, OBLIQUE], ids=["LPS", "LAI", "oblique"])
@pytest.mark.parametrize(
    ("size", "spacing", "new_spacing", "new_size"),
    [
        ((64, 64, 24), (0.8, 0.8, 2.5), (1.5, 1.5, 1.5), (34, 34, 40)),  # 51.2/1.5 = 34.13, 60/1.5 = 40
        ((63, 50, 17), (0.7, 0.9, 5.0), (1.5, 1.5, 1.5), (29, 30, 57)),  # 29.4, 30.0, 56.67
        ((40, 40, 40), (1.5, 1.5, 1.5), (0.7, 0.7, 3.0), (86, 86, 20)),  # 85.71, 20
    ],
)
def test_target_grid_size_centre_and_direction(size, spacing, new_spacing, new_size, direction):
    source = _geometry_image(size, spacing, direction)
    target = target_grid(Geometry.of(source), new_spacing)

    assert target.size == new_size
    assert target.size == tuple(int(round(n * s / t)) for n, s, t in zip(size, spacing, new_spacing))
    assert target.spacing == tuple(new_spacing)
    assert target.direction == Geometry.of(source).direction
    np.testing.assert_allclose(_fov_centre(target.reference_image()), _fov_centre(source), atol=1e-6)
    np.testing.assert_allclose(_fov_centre(source), CENTRE, atol=1e-6)


@pytest.mark.parametrize("spacing", [200.0, 1e30], ids=["200 mm", "1e30 mm"])
def test_a_grid_over_the_voxel_budget_is_refused_before_anything_is_allocated(spacing):
    # a 48 x 40 x 24 scan whose header says 200 mm voxels would be a 2400 x 2000 x 1200 grid at 4 mm (23 GB float32)
    image = sitk.Image([48, 40, 24], sitk.sitkInt16)
    image.SetSpacing([spacing] * 3)
    config = PreprocessingConfig(spacing=(4.0, 4.0, 4.0), crop_to_body=False)
    with pytest.raises(PipelineError) as err:
        preprocess(image, config)
    message = str(err.value)
    assert message.startswith(f"spacing {spacing:.4g} x {spacing:.4g} x {spacing:.4g} mm in the header: resampled to 4")
    assert f"over the budget of {MAX_GRID_VOXELS} (512 x 512 x 2048); is the spacing in the wrong units?" in message
    if spacing == 200.0:
        assert "a 2400 x 2000 x 1200 grid (5.76e+09 voxels)" in message


def test_a_grid_at_the_voxel_budget_is_accepted():
    target = target_grid(Geometry((512, 512, 1024), (1.0, 1.0, 1.0), (0.0,) * 3, LPS), (1.0, 1.0, 0.5))
    assert target.size == (512, 512, 2048) and math.prod(target.size) == MAX_GRID_VOXELS


# ------------------------------------------------------------------------------------- resample_to_spacing


def test_resample_to_spacing_output_grid_and_values():
    ct, _ = make_case((96.0, 80.0, 60.0), (0.8, 0.8, 2.5), LPS)
    out = resample_to_spacing(ct, (1.5, 1.5, 1.5), default_value=-1024.0)

    assert out.GetSpacing() == (1.5, 1.5, 1.5)
    assert out.GetSize() == (64, 53, 40)
    assert out.GetPixelID() == sitk.sitkFloat32
    assert Geometry.of(out) == target_grid(Geometry.of(ct), (1.5, 1.5, 1.5))
    # the anatomy is where it was: body centre and liver centre sample the right HU
    assert value_at(out, np.add(CENTRE, (25.0, 0.0, 0.0))) == pytest.approx(40.0)
    liver_point = np.add(CENTRE, SMALL.liver_centre) + np.array([0.0, -10.0, 0.0])
    assert value_at(out, liver_point) == pytest.approx(60.0)
    assert value_at(out, np.add(CENTRE, SMALL.tumours[0][0])) == pytest.approx(20.0)
    assert value_at(out, np.add(CENTRE, (-45.0, -35.0, 0.0))) == pytest.approx(-1000.0)


def _anisotropic_ct() -> sitk.Image:
    phantom = Phantom(body=(20.0, 18.0), liver_centre=(-8.0, 0.0, 0.0), liver=(10.0, 9.0, 30.0), tumours=())
    ct, _ = make_case((51.2, 51.2, 96.0), (0.8, 0.8, 4.0), OBLIQUE, phantom=phantom, noise_hu=20.0)
    assert ct.GetSize() == (64, 64, 24)
    return ct


def test_resample_anisotropic_source_uses_separate_axis_scheme():
    ct = _anisotropic_ct()
    source = Geometry.of(ct)
    out = resample_to_spacing(ct, (1.5, 1.5, 1.5), interpolator="linear", anisotropic_axis_interpolator="nearest")
    assert out.GetSize() == (34, 34, 64)

    in_plane = resample_onto(ct, target_grid(source, (1.5, 1.5, 4.0)), "linear", output_pixel_type=sitk.sitkFloat32)
    manual = resample_onto(in_plane, target_grid(source, (1.5, 1.5, 1.5)), "nearest")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(manual))

    # with nearest neighbour along z every output slice is one of the in-plane resampled source slices
    slices = sitk.GetArrayFromImage(in_plane)
    result = sitk.GetArrayFromImage(out)
    assert all(any(np.array_equal(s, t) for t in slices) for s in result)
    # ... which a single trilinear pass does not give (it blends neighbouring thick slices)
    one_pass = sitk.GetArrayFromImage(resample_onto(ct, Geometry.of(out), "linear", output_pixel_type=sitk.sitkFloat32))
    assert sum(any(np.array_equal(s, t) for t in slices) for s in one_pass) < len(one_pass) // 4


def test_resample_isotropic_source_is_one_pass():
    ct, _ = make_case((40.0, 40.0, 40.0), (1.0, 1.2, 1.4), LAI, noise_hu=20.0)
    out = resample_to_spacing(ct, (1.5, 1.5, 1.5), interpolator="linear", default_value=-1000.0)
    expected = resample_onto(ct, Geometry.of(out), "linear", default_value=-1000.0, output_pixel_type=sitk.sitkFloat32)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(expected))


def test_resample_with_same_interpolators_is_one_pass():
    ct = _anisotropic_ct()
    out = resample_to_spacing(ct, (1.5, 1.5, 1.5), interpolator="linear", anisotropic_axis_interpolator="linear")
    one_pass = resample_onto(ct, Geometry.of(out), "linear", output_pixel_type=sitk.sitkFloat32)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(one_pass))


@pytest.mark.parametrize("interpolator", ["linear", "bspline", "nearest"])
@pytest.mark.parametrize(
    ("size", "spacing", "target"),
    [
        ((64, 64, 24), (0.8, 0.8, 4.0), (1.5, 1.5, 1.5)),
        ((63, 61, 23), (0.7, 0.9, 2.5), (1.5, 1.5, 1.5)),
        ((20, 20, 20), (2.0, 2.0, 2.0), (0.7, 0.7, 0.7)),
        ((30, 30, 30), (0.8, 0.8, 1.0), (1.5, 1.5, 5.0)),
    ],
)
@pytest.mark.parametrize("direction", [LPS, OBLIQUE], ids=["LPS", "oblique"])
def test_resample_constant_image_stays_constant_at_the_border(size, spacing, target, interpolator, direction):
    image = _geometry_image(size, spacing, direction, value=123.0)
    out = resample_to_spacing(image, target, interpolator=interpolator, default_value=-1000.0)
    values = sitk.GetArrayFromImage(out)
    assert values.shape == tuple(reversed(target_grid(Geometry.of(image), target).size))
    np.testing.assert_allclose(values, 123.0, atol=1e-3)
    # the outermost faces are where default-value bleeding would show
    for face in (values[0], values[-1], values[:, 0], values[:, -1], values[..., 0], values[..., -1]):
        np.testing.assert_allclose(face, 123.0, atol=1e-3)


def test_resample_onto_rejects_unknown_interpolator():
    image = _geometry_image((8, 8, 8), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="interpolator"):
        resample_onto(image, Geometry.of(image), "cubic")


# ------------------------------------------------------------------------------------------------ reorient


@pytest.mark.parametrize("name", ["LPS", "RAS", "LAI", "oblique"])
def test_reorient_to_ras_keeps_every_value_at_its_physical_point(name):
    ct, label = make_case((60.0, 50.0, 40.0), (0.8, 0.9, 2.5), DIRECTIONS[name], noise_hu=30.0)
    out = reorient(ct, "RAS")
    out_label = reorient(label, "RAS")

    assert Geometry.of(out).orientation == "RAS"
    assert sorted(out.GetSize()) == sorted(ct.GetSize())
    assert sorted(out.GetSpacing()) == sorted(ct.GetSpacing())
    source = sitk.GetArrayFromImage(ct)
    np.testing.assert_array_equal(np.sort(sitk.GetArrayFromImage(out), axis=None), np.sort(source, axis=None))

    rng = np.random.default_rng(0)
    points = physical_points(ct)
    for k, j, i in zip(*(rng.integers(0, n, 200) for n in source.shape)):
        point = points[k, j, i]
        index = out.TransformPhysicalPointToIndex(tuple(point))
        np.testing.assert_allclose(out.TransformIndexToPhysicalPoint(index), point, atol=1e-6)
        assert out[index] == source[k, j, i]
        assert out_label[index] == label[int(i), int(j), int(k)]


def test_reorient_keeps_obliquity():
    image = _geometry_image((10, 12, 14), (0.8, 0.9, 2.5), OBLIQUE)
    out = reorient(image, "RAS")
    matrix = np.asarray(out.GetDirection()).reshape(3, 3)
    source = np.asarray(OBLIQUE).reshape(3, 3)
    # the same axes up to order and sign
    np.testing.assert_allclose(np.abs(matrix.T @ source).max(axis=1), 1.0, atol=1e-9)
    assert out.GetSize() == (10, 12, 14)
    assert not np.allclose(np.abs(matrix), np.eye(3))


def _axis_aligned_directions():
    for order in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            matrix = np.zeros((3, 3))
            for axis, (source, sign) in enumerate(zip(order, signs)):
                matrix[source, axis] = sign
            yield matrix


@pytest.mark.parametrize("target", ["RAS", "LPS", "PSL"])
def test_reoriented_geometry_is_what_reorient_gives(target):
    """The geometry-only reorientation used by ``preprocess`` agrees with ``reorient`` for all 48 axis-aligned
    orientations (permutations and flips), straight and oblique."""
    checked = 0
    for matrix in _axis_aligned_directions():
        for tilt in (np.eye(3), np.asarray(OBLIQUE).reshape(3, 3)):
            image = sitk.Image([7, 9, 11], sitk.sitkUInt8)
            image.SetSpacing((0.8, 1.1, 2.5))
            image.SetOrigin((3.0, -4.0, 5.0))
            image.SetDirection(tuple((tilt @ matrix).ravel()))
            expected = Geometry.of(reorient(image, target))
            found = reoriented_geometry(Geometry.of(image), target)
            assert found.size == expected.size and found.spacing == expected.spacing
            assert expected.differences(found, 1e-9) == [], Geometry.of(image).orientation
            checked += 1
    assert checked == 96


def test_reorient_rejects_2d():
    with pytest.raises(ValueError, match="3D"):
        reorient(sitk.Image([4, 4], sitk.sitkFloat32), "RAS")


# ----------------------------------------------------------------------------------------------- intensity

HU = np.array([[[-1024.0, -1000.0, -100.0, -99.0, 0.0, 50.0, 100.0, 199.5, 200.0, 201.0, 3000.0, 60.0]]])


def _hu_image(values: np.ndarray = HU, pixel=np.float32) -> sitk.Image:
    return sitk.GetImageFromArray(values.astype(pixel))


@pytest.mark.parametrize(("low", "high"), [(-100.0, 200.0), (-200.0, 300.0), (0.0, 1.0)])
def test_window_is_clipped_linear_scaling(low, high):
    out = window(_hu_image(), low, high)
    assert out.GetPixelID() == sitk.sitkFloat32
    expected = (np.clip(HU, low, high) - low) / (high - low)
    np.testing.assert_allclose(sitk.GetArrayFromImage(out), expected, rtol=0, atol=1e-6)


def test_window_of_int16_image_gives_float32():
    out = window(_hu_image(np.array([[[-1000, -100, 50, 200, 1000]]]), np.int16), -100.0, 200.0)
    assert out.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(sitk.GetArrayFromImage(out).ravel(), [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize(("low", "high"), [(200.0, 100.0), (100.0, 100.0)])
def test_window_rejects_empty_window(low, high):
    with pytest.raises(ValueError, match="low < high"):
        window(_hu_image(), low, high)


def test_zscore_clips_then_standardises():
    values = np.random.default_rng(1).normal(60.0, 40.0, (4, 5, 6))
    out = zscore(_hu_image(values), -10.0, 130.0, 55.0, 17.5)
    assert out.GetPixelID() == sitk.sitkFloat32
    expected = (np.clip(values, -10.0, 130.0) - 55.0) / 17.5
    np.testing.assert_allclose(sitk.GetArrayFromImage(out), expected, rtol=1e-5, atol=1e-5)


def test_zscore_rejects_non_positive_std():
    with pytest.raises(ValueError, match="std"):
        zscore(_hu_image(), -10.0, 130.0, 55.0, 0.0)


def test_normalize_dispatches_on_the_config():
    image = _hu_image()
    windowed = normalize(image, PreprocessingConfig(window=(-50.0, 250.0)))
    np.testing.assert_allclose(sitk.GetArrayFromImage(windowed), (np.clip(HU, -50, 250) + 50) / 300, atol=1e-6)

    stats = IntensityStats(percentile_00_5=-20.0, percentile_99_5=180.0, mean=60.0, std=25.0)
    standardised = normalize(image, PreprocessingConfig(normalization="zscore", intensity_stats=stats))
    np.testing.assert_allclose(sitk.GetArrayFromImage(standardised), (np.clip(HU, -20, 180) - 60) / 25, atol=1e-5)


def test_normalize_zscore_without_stats_is_an_error():
    with pytest.raises(ValueError, match="intensity statistics"):
        normalize(_hu_image(), PreprocessingConfig(normalization="zscore"))


# -------------------------------------------------------------------------------------------------- crop


def _ct_with_air_and_table() -> tuple[sitk.Image, sitk.Image]:
    """The small phantom in a field of view twice its width, with a 3 mm table plate well below the body."""
    ct, label = make_case((160.0, 140.0, 60.0), (1.0, 1.0, 2.5), LPS)
    points = physical_points(ct) - np.asarray(CENTRE)
    values = sitk.GetArrayFromImage(ct)
    table = (np.abs(points[..., 1] - 55.0) <= 1.5) & (np.abs(points[..., 0]) <= 60.0)
    values[table] = 100
    return with_geometry(values, ct), label


def _box_slices(box):
    (x, y, z), (sx, sy, sz) = box
    return slice(z, z + sz), slice(y, y + sy), slice(x, x + sx)


def test_body_box_holds_the_body_and_margin_and_drops_the_air():
    ct, _ = _ct_with_air_and_table()
    margin = 10.0
    box = body_box(ct, -500.0, margin)
    (x, y, z), (sx, sy, sz) = box
    values = sitk.GetArrayFromImage(ct)
    points = physical_points(ct) - np.asarray(CENTRE)
    body = (points[..., 0] / SMALL.body[0]) ** 2 + (points[..., 1] / SMALL.body[1]) ** 2 <= 1.0

    inside = np.zeros(values.shape, bool)
    inside[_box_slices(box)] = True
    assert inside[body].all(), "every body voxel is in the box"
    # the margin: the box reaches at least margin_mm beyond the body in x and y (the body is 80 x 60 mm)
    body_x = np.flatnonzero(body.any(axis=(0, 1)))
    body_y = np.flatnonzero(body.any(axis=(0, 2)))
    assert x <= body_x[0] - margin and x + sx - 1 >= body_x[-1] + margin
    assert y <= body_y[0] - margin and y + sy - 1 >= body_y[-1] + margin
    assert (z, sz) == (0, ct.GetSize()[2]), "the body runs through every slice"
    # ... but not much more: most of the air and the table are left out
    air = values < -500
    assert (air & ~inside).sum() > 0.5 * air.sum()
    assert sx <= 80 + 2 * margin + 2 * 8 and sy <= 60 + 2 * margin + 2 * 8
    assert not inside[values == 100].any(), "the table plate is not body"


def test_body_box_of_all_air_is_the_whole_image():
    air = _geometry_image((30, 20, 10), (1.0, 1.0, 2.0), value=-1000.0)
    assert body_box(air) == ((0, 0, 0), (30, 20, 10))


def test_body_box_stays_inside_the_image():
    ct, _ = make_case((96.0, 80.0, 60.0), (0.8, 0.8, 2.5), LPS)  # the body nearly fills this field of view
    assert body_box(ct, -500.0, 10.0) == ((0, 0, 0), ct.GetSize())


@pytest.mark.parametrize("slices", [1, 2, 3])
def test_body_box_of_a_scan_thinner_than_the_binning(slices):
    # 1 mm slices are binned 4 to 1 elsewhere; a scan of fewer slices keeps them all
    ct = _geometry_image((40, 40, slices), (1.0, 1.0, 1.0), value=-1000.0)
    values = sitk.GetArrayFromImage(ct)
    values[:, 10:30, 12:28] = 40
    thin = sitk.GetImageFromArray(values)
    thin.CopyInformation(ct)
    (x, y, z), (sx, sy, sz) = body_box(thin, -500.0, 2.0)
    assert (z, sz) == (0, slices)
    assert x <= 12 and x + sx >= 28 and y <= 10 and y + sy >= 30


def _itk_body_box(image: sitk.Image, shrink: list[int], margin_mm: float = 10.0):
    """The body box found with SimpleITK's own filters: opening with a radius-1 ball, face-connected components
    relabelled by size, the largest one's bounding box."""
    mask = sitk.BinaryMorphologicalOpening(sitk.Cast(sitk.BinShrink(image, shrink) > -500.0, sitk.sitkUInt8), [1] * 3)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True))
    box = np.asarray(stats.GetBoundingBox(1))
    spacing = np.asarray(image.GetSpacing())
    margin = np.ceil(margin_mm / spacing).astype(int) + shrink
    start = np.maximum(0, box[:3] * shrink - margin)
    stop = np.minimum(image.GetSize(), (box[:3] + box[3:]) * shrink + margin)
    return tuple(int(v) for v in start), tuple(int(v) for v in stop - start)


@pytest.mark.parametrize("orientation", ["LPS", "RAS", "LAI", "oblique"])
def test_body_box_is_the_one_simpleitks_morphology_finds(orientation):
    from monai_pipeline.synth import case_grid, make_phantom

    # a phantom with arms, table and bowel gas, binned 5 x 5 x 1 to about 4 mm and 2 x 2 x 1
    for seed, spacing in ((3, (0.8, 0.8, 2.5)), (4, (2.0, 2.0, 5.0))):
        size = (round(320 / spacing[0]), round(320 / spacing[1]), 24)
        direction = case_grid(0, 3, size, spacing)[2] if orientation == "oblique" else orientation
        ct, _ = make_phantom(seed, size=size, spacing=spacing, orientation=direction)
        shrink = [max(1, int(f)) for f in np.floor(4.0 / np.asarray(spacing))]
        assert body_box(ct, -500.0, 10.0) == _itk_body_box(ct, shrink)


def test_foreground_box_is_the_extent_of_the_labels():
    label = np.zeros((10, 20, 30), np.uint8)  # z, y, x
    label[2:5, 3:4, 7:12] = 1
    label[6, 10, 20] = 2
    image = sitk.GetImageFromArray(label)
    assert foreground_box(image) == ((7, 3, 2), (14, 8, 5))
    assert foreground_box(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8))) is None


def test_union_box():
    first = ((2, 3, 4), (10, 10, 10))
    assert union_box(first, None) == first
    assert union_box(first, ((0, 5, 6), (5, 20, 2))) == ((0, 3, 4), (12, 22, 10))
    assert union_box(first, ((4, 5, 6), (2, 2, 2))) == first


@pytest.mark.parametrize("name", ["LPS", "LAI", "oblique"])
def test_crop_keeps_physical_positions(name):
    ct, _ = make_case((60.0, 50.0, 40.0), (0.8, 0.9, 2.5), DIRECTIONS[name], noise_hu=30.0)
    box = ((5, 7, 2), (40, 30, 10))
    out = crop(ct, box)
    assert out.GetSize() == (40, 30, 10)
    assert out.GetSpacing() == ct.GetSpacing() and out.GetDirection() == ct.GetDirection()
    for index in [(0, 0, 0), (39, 29, 9), (13, 4, 7)]:
        source = tuple(int(i + s) for i, s in zip(index, box[0]))
        np.testing.assert_allclose(
            out.TransformIndexToPhysicalPoint(index), ct.TransformIndexToPhysicalPoint(source), atol=1e-9
        )
        assert out[index] == ct[source]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(ct)[_box_slices(box)])
    assert crop(ct, ((0, 0, 0), ct.GetSize())) is ct
    assert Geometry.of(out).differences(crop_geometry(Geometry.of(ct), box), 1e-9) == []


@pytest.mark.parametrize("name", ["LAI", "oblique", "PSL"])
def test_resampling_through_a_frame_equals_reorienting_and_cropping_first(name):
    """``preprocess`` resamples straight from the scan onto a reoriented, cropped frame; that must give what
    reorienting and cropping the voxels first gives."""
    ct, _ = make_case((60.0, 50.0, 40.0), (0.8, 0.9, 2.5), DIRECTIONS.get(name, PSL), noise_hu=30.0)
    box = ((4, 6, 2), (50, 40, 12))
    frame = reoriented_geometry(crop_geometry(Geometry.of(ct), box), "RAS")
    direct = resample_to_spacing(ct, (1.5, 1.5, 1.5), frame=frame, default_value=-1024.0)
    copied = resample_to_spacing(reorient(crop(ct, box), "RAS"), (1.5, 1.5, 1.5), default_value=-1024.0)
    assert Geometry.of(direct).differences(Geometry.of(copied), 1e-9) == []
    np.testing.assert_allclose(sitk.GetArrayFromImage(direct), sitk.GetArrayFromImage(copied), atol=1e-2)


# ------------------------------------------------------------------------------------------------- config


def test_config_defaults():
    config = PreprocessingConfig()
    assert config.spacing == (1.5, 1.5, 1.5)
    assert config.window == (-100.0, 200.0)
    assert config.orientation == "RAS"
    assert config.normalization == "window"
    assert config.labels == {"0": "background", "1": "liver", "2": "tumour"}


STATS = IntensityStats(percentile_00_5=-12.0, percentile_99_5=151.0, mean=62.5, std=21.25)


@pytest.mark.parametrize(
    "config",
    [
        PreprocessingConfig(),
        PreprocessingConfig(spacing=(0.8, 0.8, 2.0), window=(-200.0, 300.0), crop_to_body=False),
        PreprocessingConfig(normalization="zscore", intensity_stats=STATS, image_interpolator="bspline"),
    ],
    ids=["default", "custom", "zscore"],
)
def test_config_round_trip(config, tmp_path):
    data = config.to_dict()
    assert data["format_version"] == 1
    assert json.loads(json.dumps(data)) == data
    assert PreprocessingConfig.from_dict(data) == config
    path = tmp_path / "sub" / "preprocessing.json"
    config.save(path)
    loaded = PreprocessingConfig.load(path)
    assert loaded == config
    assert loaded.digest() == config.digest()
    assert [p.name for p in path.parent.iterdir()] == ["preprocessing.json"], "no temporary file left"


def test_config_digest_survives_round_trip_of_whole_numbers(tmp_path):
    config = PreprocessingConfig(spacing=(2, 2, 2), window=(-100, 200), crop_margin_mm=10)
    config.save(tmp_path / "preprocessing.json")
    loaded = PreprocessingConfig.load(tmp_path / "preprocessing.json")
    assert loaded == config
    assert loaded.digest() == config.digest()


CHANGES = {
    "spacing": (1.0, 1.5, 1.5),
    "orientation": "LPS",
    "image_interpolator": "bspline",
    "anisotropy_threshold": 2.5,
    "anisotropic_axis_interpolator": "linear",
    "normalization": "zscore",
    "window": (-100.0, 250.0),
    "intensity_stats": STATS,
    "crop_to_body": False,
    "body_threshold": -400.0,
    "crop_margin_mm": 5.0,
    "background_hu": -1000.0,
    "labels": {"0": "background", "1": "liver"},
}


def test_every_parameter_is_covered_by_the_digest_test():
    assert set(CHANGES) == {f.name for f in dataclasses.fields(PreprocessingConfig)} - {"label_interpolator"}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_digest_changes_with_every_parameter(name):
    base = PreprocessingConfig()
    changed = dataclasses.replace(base, **{name: CHANGES[name]})
    assert changed != base
    assert changed.digest() != base.digest()


def test_digest_is_the_same_for_equal_configs():
    first = PreprocessingConfig(spacing=(1.0, 1.0, 2.0), normalization="zscore", intensity_stats=STATS)
    second = PreprocessingConfig(spacing=(1.0, 1.0, 2.0), normalization="zscore", intensity_stats=STATS)
    assert first.digest() == second.digest()
    assert len(first.digest()) == 16 and int(first.digest(), 16) >= 0


def test_with_stats_changes_only_the_stats():
    config = PreprocessingConfig(normalization="zscore")
    assert config.with_stats(STATS) == dataclasses.replace(config, intensity_stats=STATS)
    assert config.intensity_stats is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"window": (200.0, 100.0)}, "window"),
        ({"window": (100.0, 100.0)}, "window"),
        ({"spacing": (1.5, -1.5, 1.5)}, "spacing"),
        ({"spacing": (1.5, 0.0, 1.5)}, "spacing"),
        ({"spacing": (1.5, 1.5)}, "spacing"),
        ({"normalization": "minmax"}, "normalization"),
        ({"label_interpolator": "linear"}, "label_interpolator"),
        ({"image_interpolator": "cubic"}, "image_interpolator"),
        ({"anisotropic_axis_interpolator": "spline"}, "anisotropic_axis_interpolator"),
        ({"orientation": "RA"}, "orientation"),
        ({"anisotropy_threshold": 1.0}, "anisotropy_threshold"),
    ],
)
def test_config_rejects_invalid_values(changes, message):
    with pytest.raises(ValueError, match=message):
        PreprocessingConfig(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"spacing": (math.nan, 1.5, 1.5)},
        {"spacing": (math.inf, 1.5, 1.5)},
        {"window": (math.nan, 200.0)},
        {"window": (-100.0, math.inf)},
        {"orientation": "XYZ"},
        {"orientation": "RRS"},
    ],
    ids=["nan-spacing", "inf-spacing", "nan-window", "inf-window", "orientation-XYZ", "orientation-RRS"],
)
def test_config_rejects_non_finite_numbers_and_bad_orientation_codes(changes):
    with pytest.raises(ValueError):
        PreprocessingConfig(**changes)


def test_from_dict_rejects_unknown_keys_and_other_versions():
    data = PreprocessingConfig().to_dict()
    with pytest.raises(ValueError, match="unknown preprocessing parameter.*patch_size"):
        PreprocessingConfig.from_dict(data | {"patch_size": [96, 96, 96]})
    with pytest.raises(ValueError, match="format 2"):
        PreprocessingConfig.from_dict(data | {"format_version": 2})


@pytest.mark.parametrize(
    "content",
    [
        "not json {",
        "[1, 2, 3]",
        '"spacing"',
        "null",
        json.dumps(PreprocessingConfig().to_dict() | {"window": [200, 100]}),
        json.dumps(PreprocessingConfig().to_dict() | {"extra": 1}),
        json.dumps(PreprocessingConfig().to_dict() | {"intensity_stats": {"mean": 1.0}}),
    ],
    ids=["not-json", "list", "string", "null", "bad-window", "unknown-key", "bad-stats"],
)
def test_load_of_invalid_file_is_an_input_error(content, tmp_path):
    path = tmp_path / "preprocessing.json"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        PreprocessingConfig.load(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: not a valid preprocessing record")
    assert "\n" not in str(info.value)


def test_load_of_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no preprocessing record") as info:
        PreprocessingConfig.load(tmp_path / "nothing.json")
    assert info.value.path == str(tmp_path / "nothing.json")
    with pytest.raises(InputError):
        PreprocessingConfig.load(tmp_path)


# --------------------------------------------------------------------------------------- preprocess/restore

LARGE_FOV = (180.0, 140.0, 100.0)


@pytest.fixture(scope="module", params=["LPS", "RAS", "LAI", "oblique", "PSL"])
def round_trip(request):
    """A large phantom on an anisotropic (0.8, 0.8, 2.5) grid in each orientation, preprocessed at the default
    config and restored. On the PSL grid the thick axis is the patient's left-right axis."""
    direction = DIRECTIONS.get(request.param, PSL)
    matrix = np.abs(np.asarray(direction).reshape(3, 3))
    fov = [LARGE_FOV[int(np.argmax(matrix[:, axis]))] for axis in range(3)]  # the same anatomy fits every grid
    ct, label = make_case(fov, (0.8, 0.8, 2.5), direction, phantom=LARGE, noise_hu=10.0)
    prepared = preprocess(ct, PreprocessingConfig(), label)
    restored = restore(prepared.label, prepared.original)
    return ct, label, prepared, restored


def test_round_trip_restores_the_exact_geometry(round_trip):
    ct, label, prepared, restored = round_trip
    assert prepared.original == Geometry.of(ct)
    assert Geometry.of(restored) == Geometry.of(ct)
    assert Geometry.of(restored) == Geometry.of(label)
    assert restored.GetPixelID() == sitk.sitkUInt8


def test_round_trip_dice(round_trip):
    _, label, _, restored = round_trip
    original = sitk.GetArrayFromImage(label)
    back = sitk.GetArrayFromImage(restored)
    assert set(np.unique(back)) == {0, 1, 2}
    liver_dice = dice(original >= 1, back >= 1)
    tumour_dice = dice(original == 2, back == 2)
    assert liver_dice >= 0.98, f"liver Dice {liver_dice:.4f}"
    assert tumour_dice >= 0.9, f"tumour (30 mm) Dice {tumour_dice:.4f}"


def test_preprocessed_case_is_ras_window_normalised_on_one_grid(round_trip):
    ct, _, prepared, _ = round_trip
    image, label = prepared.image, prepared.label
    geometry = Geometry.of(image)
    assert geometry.orientation == "RAS"
    assert geometry.spacing == (1.5, 1.5, 1.5)
    assert image.GetPixelID() == sitk.sitkFloat32
    values = sitk.GetArrayFromImage(image)
    assert values.min() == 0.0, "air is clipped to the bottom of the window"
    assert values.max() <= 1.0
    assert label.GetPixelID() == sitk.sitkUInt8
    assert Geometry.of(label) == geometry
    assert set(np.unique(sitk.GetArrayFromImage(label))) == {0, 1, 2}
    thick_axis = 0 if Geometry.of(ct).orientation == "PSL" else 2
    assert prepared.record["anisotropic_axis"] == thick_axis, "the 2.5 mm axis after reorientation to RAS"
    assert prepared.record["preprocessed"]["orientation"] == "RAS"
    assert prepared.record["original"] == Geometry.of(ct).to_dict()


def test_preprocessed_liver_is_on_the_patients_right(round_trip):
    _, _, prepared, _ = round_trip
    values = sitk.GetArrayFromImage(prepared.image)
    body = with_geometry((values > 0.05).astype(np.uint8), prepared.image)  # above -85 HU
    body_centre = centroid(body)
    liver_centre = centroid(prepared.label)
    tumour_centre = centroid(prepared.label, 2)
    np.testing.assert_allclose(body_centre[:2], CENTRE[:2], atol=1.5)
    # patient right is smaller x in LPS; the liver was put 30 mm to the right of the body's centre
    assert liver_centre[0] < body_centre[0] - 20.0
    np.testing.assert_allclose(liver_centre, np.add(CENTRE, LARGE.liver_centre), atol=1.5)
    np.testing.assert_allclose(tumour_centre, np.add(CENTRE, LARGE.tumours[0][0]), atol=1.5)
    # liver and tumour intensities are where the window puts them
    label = sitk.GetArrayFromImage(prepared.label)
    core = sitk.GetArrayFromImage(sitk.BinaryErode(prepared.label == 1, [2, 2, 2])) > 0
    assert np.median(values[core]) == pytest.approx((60 + 100) / 300, abs=0.02)
    assert np.median(values[label == 2]) == pytest.approx((20 + 100) / 300, abs=0.03)


def test_preprocess_without_label_and_without_crop():
    ct, _ = make_case((60.0, 50.0, 40.0), (0.8, 0.8, 2.5), LAI)
    prepared = preprocess(ct, PreprocessingConfig(crop_to_body=False))
    assert prepared.label is None
    assert prepared.record["crop_box"] == {"start": [0, 0, 0], "size": list(ct.GetSize())}
    assert Geometry.of(prepared.image).size == (40, 33, 27)
    np.testing.assert_allclose(_fov_centre(prepared.image), CENTRE, atol=1e-6)


def test_preprocess_keeps_label_voxels_outside_the_body_box():
    # a labelled blob in the air 25 mm beyond the body's side, outside the body box (10 mm margin)
    blob_centre, blob_radius = (68.0, 0.0, 0.0), 5.0
    phantom = dataclasses.replace(SMALL, extra_labels=((blob_centre, blob_radius, 1),))
    ct, label = make_case((160.0, 140.0, 60.0), (1.0, 1.0, 2.5), RAS, phantom=phantom)
    body_only = body_box(ct)
    points = physical_points(label) - np.asarray(CENTRE)
    blob = ((points - np.asarray(blob_centre)) ** 2).sum(-1) <= blob_radius**2
    original = sitk.GetArrayFromImage(label)
    assert original[blob].all() and sitk.GetArrayFromImage(ct)[blob].max() == -1000, "the blob lies in air"
    inside = np.zeros(original.shape, bool)
    inside[_box_slices(body_only)] = True
    assert not inside[blob].any(), "the blob is outside the body box"

    prepared = preprocess(ct, PreprocessingConfig(), label)
    restored = sitk.GetArrayFromImage(restore(prepared.label, prepared.original))
    assert dice(original[blob] > 0, restored[blob] > 0) >= 0.9
    assert dice(original >= 1, restored >= 1) >= 0.95
    # the image there is air, normalised to 0
    assert value_at(prepared.image, np.add(CENTRE, blob_centre)) == 0.0
    # the box grew to hold the blob
    assert prepared.record["crop_box"]["size"][0] > body_only[1][0]
