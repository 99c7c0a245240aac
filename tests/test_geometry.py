"""Tests for monai_pipeline.io.geometry in every test orientation, checked against nibabel's reading of the files."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from monai_pipeline.io import Geometry, orientation_code, write_image

SIZE = (9, 7, 5)  # (x, y, z): all different so a transposed axis shows
SPACING = (0.7, 0.9, 2.5)
ORIGIN = (-120.5, 33.25, -410.0)


def _expected_ras_affine(spacing, origin, direction) -> np.ndarray:
    """The voxel-to-RAS affine written out by hand: LPS->RAS flips x and y of the ITK index-to-LPS map."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction, dtype=float).reshape(3, 3) @ np.diag(spacing)
    affine[:3, 3] = origin
    affine[:2, :] *= -1.0
    return affine


def _geometry(direction, size=SIZE, spacing=SPACING, origin=ORIGIN) -> Geometry:
    return Geometry(size=tuple(size), spacing=tuple(spacing), origin=tuple(origin), direction=tuple(direction))


def test_of_reads_every_field(make_image, orientation):
    geometry = Geometry.of(make_image(SIZE, SPACING, ORIGIN, orientation.direction))

    assert geometry.size == (9, 7, 5)
    assert all(type(s) is int for s in geometry.size)
    assert geometry.spacing == pytest.approx(SPACING, abs=1e-12)
    assert geometry.origin == pytest.approx(ORIGIN, abs=1e-12)
    assert geometry.direction == pytest.approx(orientation.direction, abs=1e-12)
    assert all(isinstance(v, tuple) for v in (geometry.size, geometry.spacing, geometry.origin, geometry.direction))


def test_shape_is_z_y_x_like_the_array(make_image):
    image = make_image((9, 7, 5), SPACING, ORIGIN)
    geometry = Geometry.of(image)

    assert geometry.shape == (5, 7, 9)
    assert sitk.GetArrayViewFromImage(image).shape == geometry.shape


def test_dict_round_trip_through_json(orientation):
    geometry = _geometry(orientation.direction)

    record = json.loads(json.dumps(geometry.to_dict()))

    assert record["size"] == [9, 7, 5]
    assert record["spacing"] == list(SPACING)
    assert record["orientation"] == geometry.orientation
    assert Geometry.from_dict(record) == geometry


@pytest.mark.parametrize(
    ("direction", "code"),
    [
        ((1, 0, 0, 0, 1, 0, 0, 0, 1), "LPS"),
        ((-1, 0, 0, 0, -1, 0, 0, 0, 1), "RAS"),
        ((1, 0, 0, 0, -1, 0, 0, 0, -1), "LAI"),
        ((-1, 0, 0, 0, 1, 0, 0, 0, -1), "RPI"),
        # sagittal: x along A, y along I, z along L
        ((0, 0, 1, -1, 0, 0, 0, -1, 0), "AIL"),
    ],
    ids=["LPS", "RAS", "LAI", "RPI", "sagittal-AIL"],
)
def test_orientation_codes(direction, code):
    assert orientation_code(direction) == code
    assert orientation_code(np.asarray(direction, dtype=float).reshape(3, 3)) == code
    assert _geometry(tuple(float(d) for d in direction)).orientation == code


@pytest.mark.parametrize(
    ("z_degrees", "x_degrees", "code"),
    [(15.0, 5.0, "LPS"), (-20.0, 10.0, "LPS"), (75.0, 0.0, "PRS")],
)
def test_oblique_orientation_is_the_closest_code(z_degrees, x_degrees, code):
    a, b = np.radians(z_degrees), np.radians(x_degrees)
    rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])

    assert _geometry(tuple((rz @ rx).ravel())).orientation == code


def test_affine_ras_formula(orientation):
    geometry = _geometry(orientation.direction)
    expected = _expected_ras_affine(SPACING, ORIGIN, orientation.direction)

    np.testing.assert_allclose(geometry.affine_ras, expected, atol=1e-12)
    # voxel (0, 0, 0) sits at the origin, mirrored into RAS
    np.testing.assert_allclose(geometry.affine_ras @ [0, 0, 0, 1], [120.5, -33.25, -410.0, 1.0], atol=1e-12)


def test_affine_ras_matches_nibabel(make_image, orientation, tmp_path):
    path = write_image(make_image(SIZE, SPACING, ORIGIN, orientation.direction), tmp_path / "ct.nii.gz")
    geometry = Geometry.of(sitk.ReadImage(str(path)))
    nifti = nib.load(path)

    np.testing.assert_allclose(nifti.affine, geometry.affine_ras, atol=1e-4)
    np.testing.assert_allclose(nifti.affine, _expected_ras_affine(SPACING, ORIGIN, orientation.direction), atol=1e-4)
    assert nifti.shape == geometry.size


def test_orientation_agrees_with_nibabel(make_image, orientation, tmp_path):
    """Exact for axis-aligned grids; the oblique one is 15 degrees off LPS, far from any tie, so both round to LPS."""
    path = write_image(make_image(SIZE, SPACING, ORIGIN, orientation.direction), tmp_path / "ct.nii.gz")

    codes = nib.aff2axcodes(nib.load(path).affine)

    expected = "LPS" if orientation.oblique else orientation.name
    assert "".join(codes) == expected
    assert Geometry.of(sitk.ReadImage(str(path))).orientation == expected


def test_differences_empty_for_same_grid(orientation):
    geometry = _geometry(orientation.direction)
    assert geometry.differences(geometry) == []
    assert geometry.differences(_geometry(orientation.direction)) == []


def test_differences_tolerate_float_noise(orientation):
    geometry = _geometry(orientation.direction)
    noisy = Geometry(
        size=geometry.size,
        spacing=tuple(s + 1e-6 for s in geometry.spacing),
        origin=tuple(o - 1e-6 for o in geometry.origin),
        direction=tuple(d + 1e-6 for d in geometry.direction),
    )
    assert geometry.differences(noisy) == []
    assert noisy.differences(geometry) == []


@pytest.mark.parametrize("field", ["size", "spacing", "origin", "direction"])
def test_differences_name_what_differs(orientation, field):
    geometry = _geometry(orientation.direction)
    flipped_x = tuple((np.asarray(orientation.direction).reshape(3, 3) @ np.diag([-1.0, 1.0, 1.0])).ravel())
    changed = {
        "size": {"size": (9, 7, 6)},
        "spacing": {"spacing": (0.7, 0.9, 3.0)},
        "origin": {"origin": (-120.5, 34.25, -410.0)},
        "direction": {"direction": flipped_x},
    }[field]
    other = _geometry(**{"direction": orientation.direction, **changed})

    problems = geometry.differences(other)

    assert len(problems) == 1, problems
    assert problems[0].startswith(field)
    if field == "size":
        assert problems[0] == "size [9, 7, 6] vs [9, 7, 5]"
    if field == "spacing":
        assert "3" in problems[0] and "2.5" in problems[0]


def test_differences_list_every_field_that_differs(orientation):
    geometry = _geometry(orientation.direction)
    other = Geometry(
        size=(1, 2, 3), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=(0, 1, 0, 1, 0, 0, 0, 0, -1)
    )

    problems = geometry.differences(other)

    assert [p.split()[0] for p in problems] == ["size", "spacing", "origin", "direction"]


def test_apply_sets_geometry_and_rejects_other_size(make_image, orientation):
    geometry = _geometry(orientation.direction)
    blank = sitk.Image([9, 7, 5], sitk.sitkInt16)

    assert Geometry.of(geometry.apply(blank)) == geometry
    with pytest.raises(ValueError, match="does not match"):
        geometry.apply(sitk.Image([9, 7, 6], sitk.sitkInt16))


def test_reference_image_is_on_the_grid(orientation):
    geometry = _geometry(orientation.direction)
    reference = geometry.reference_image(sitk.sitkFloat32)

    assert Geometry.of(reference) == geometry
    assert reference.GetPixelID() == sitk.sitkFloat32


def test_to_physical_and_to_index_match_simpleitk(orientation):
    geometry = _geometry(orientation.direction)
    image = geometry.reference_image()
    indices = np.array([[0, 0, 0], [8, 6, 4], [2.5, -1.25, 3.75]])
    expected = np.array([image.TransformContinuousIndexToPhysicalPoint(list(map(float, i))) for i in indices])
    np.testing.assert_allclose(geometry.to_physical(indices), expected, atol=1e-9)
    np.testing.assert_allclose(geometry.to_physical(indices[1]), expected[1], atol=1e-9)  # one index
    np.testing.assert_allclose(geometry.to_index(expected), indices, atol=1e-9)
