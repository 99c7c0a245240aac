"""The PNG preview: written atomically, of the expected size, and showing the same anatomy, the right way round,
whatever the scan's orientation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _volumes import DIRECTIONS, Phantom, make_case
from matplotlib.image import imread

from monai_pipeline.inference.lesions import measure_lesions, scan_summary
from monai_pipeline.inference.preview import write_preview
from monai_pipeline.inference.segment import Segmentation
from monai_pipeline.io.geometry import Geometry

PHANTOM = Phantom(
    body=(75.0, 55.0),
    liver_centre=(-30.0, 0.0, 0.0),
    liver=(38.0, 30.0, 34.0),
    tumours=(((-40.0, -14.0, 16.0), 10.0),),
)
"""A liver on the patient's right with a tumour at its right, anterior and superior part (LPS: x-, y-, z+)."""

FOV, SPACING = (180.0, 140.0, 100.0), (1.5, 1.5, 2.5)


def _case(direction) -> tuple[sitk.Image, Segmentation]:
    ct, mask = make_case(FOV, SPACING, direction, phantom=PHANTOM)
    labels = sitk.GetArrayFromImage(mask)
    geometry = Geometry.of(mask)
    lesions = measure_lesions(labels, geometry)
    return ct, Segmentation(mask=mask, lesions=lesions, summary=scan_summary(labels, geometry, lesions))


def _tumour_probability(mask: sitk.Image) -> sitk.Image:
    return sitk.SmoothingRecursiveGaussian(sitk.Cast(mask == 2, sitk.sitkFloat32), 4.0)


def _panels(png: np.ndarray) -> list[tuple[slice, slice]]:
    """(rows, columns) of the three image panels: the runs of columns that are mostly not white (the scan)."""
    dark = png[..., :3].mean(-1) < 0.9
    columns = np.flatnonzero(dark.sum(0) > 0.3 * png.shape[0])
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    assert len(runs) == 3, f"expected 3 panels, found column runs {[(r[0], r[-1]) for r in runs]}"
    panels = []
    for run in runs:
        rows = np.flatnonzero(dark[:, run[0] : run[-1] + 1].mean(1) > 0.9)
        panels.append((slice(rows[0], rows[-1] + 1), slice(run[0], run[-1] + 1)))
    return panels


def _red_centre(png: np.ndarray, panel: tuple[slice, slice]) -> np.ndarray:
    """The red contour's centre in the panel, as fractions (row, column) of its height and width."""
    crop = png[panel][..., :3]
    red = (crop[..., 0] > 0.8) & (crop[..., 1] < 0.25) & (crop[..., 2] < 0.25)
    assert red.sum() > 20, "no tumour outline in this panel"
    return np.argwhere(red).mean(0) / np.asarray(red.shape)


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_preview_shows_the_same_anatomy_in_every_orientation(tmp_path: Path, name: str) -> None:
    ct, result = _case(DIRECTIONS[name])
    path = write_preview(ct, result, tmp_path / "case_preview.png")

    assert path == tmp_path / "case_preview.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case_preview.png"]  # no temporary file left
    png = imread(path)
    assert png.shape[:2] == (450, 1200)
    axial, coronal, sagittal = (_red_centre(png, panel) for panel in _panels(png))
    # the tumour is on the patient's right: the viewer's left in the axial and coronal views
    assert axial[1] < 0.4 and coronal[1] < 0.4
    # anterior: the top of the axial view and the left of the sagittal view
    assert axial[0] < 0.45 and sagittal[1] < 0.45
    # superior: the top of the coronal and sagittal views (head at the top)
    assert coronal[0] < 0.4 and sagittal[0] < 0.4


def test_axial_panels_agree_between_orientations(tmp_path: Path) -> None:
    crops = {}
    for name in ("LPS", "RAS", "LAI"):
        ct, result = _case(DIRECTIONS[name])
        png = imread(write_preview(ct, result, tmp_path / f"{name}.png"))
        crops[name] = png[_panels(png)[0]][..., :3]
    for name in ("RAS", "LAI"):
        assert crops[name].shape == crops["LPS"].shape
        assert np.mean(np.abs(crops[name] - crops["LPS"])) < 0.01


def test_preview_draws_the_tumour_probability(tmp_path: Path) -> None:
    ct, result = _case(DIRECTIONS["RAS"])
    outlines = imread(write_preview(ct, result, tmp_path / "outlines.png"))
    probability = _tumour_probability(result.mask)
    given = imread(write_preview(ct, result, tmp_path / "given.png", tumour_probability=probability))
    result.probabilities["tumour"] = probability
    stored = imread(write_preview(ct, result, tmp_path / "stored.png"))

    assert np.array_equal(given, stored)  # without the argument, the segmentation's own map is used
    assert given.shape == outlines.shape
    # the heatmap and its colour bar add colour that the outlines-only preview lacks
    rgb = given[..., :3]
    colourful = (rgb.max(-1) - rgb.min(-1)) > 0.3
    plain = (outlines[..., :3].max(-1) - outlines[..., :3].min(-1)) > 0.3
    assert colourful.sum() > plain.sum() + 2000
    assert colourful[:, 1100:].any()  # the colour bar at the right


def test_probability_on_another_grid_is_interpolated(tmp_path: Path) -> None:
    ct, result = _case(DIRECTIONS["LAI"])
    probability = _tumour_probability(result.mask)
    # as the network predicts it: a coarser grid in RAS (the preprocessing's orientation)
    coarse = sitk.Resample(probability, sitk.Shrink(sitk.DICOMOrient(probability, "RAS"), [2, 2, 1]))
    same = imread(write_preview(ct, result, tmp_path / "same.png", tumour_probability=probability))[..., :3]
    other = imread(write_preview(ct, result, tmp_path / "other.png", tumour_probability=coarse))[..., :3]
    heat_same, heat_other = ((png.max(-1) - png.min(-1) > 0.3)[:, :1100] for png in (same, other))
    assert heat_same.sum() > 2000
    assert (heat_same & heat_other).sum() / (heat_same | heat_other).sum() > 0.7


def test_preview_without_lesions_or_liver(tmp_path: Path) -> None:
    ct, result = _case(DIRECTIONS["LPS"])
    labels = sitk.GetArrayFromImage(result.mask)
    labels[labels == 2] = 1
    no_tumour = Geometry.of(result.mask).apply(sitk.GetImageFromArray(labels))
    summary = scan_summary(labels, Geometry.of(no_tumour), [])
    path = write_preview(ct, Segmentation(no_tumour, [], summary), tmp_path / "liver.png")
    assert imread(path).shape[:2] == (450, 1200)

    empty = Geometry.of(result.mask).apply(sitk.GetImageFromArray(np.zeros_like(labels)))
    summary = scan_summary(np.zeros_like(labels), Geometry.of(empty), [])
    path = write_preview(ct, Segmentation(empty, [], summary), tmp_path / "empty.png")
    assert imread(path).shape[:2] == (450, 1200)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.png", "liver.png"]


def test_mask_of_another_size_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    ct, result = _case(DIRECTIONS["LPS"])
    result.mask = sitk.Shrink(result.mask, [2, 1, 1])
    with pytest.raises(ValueError, match="does not match"):
        write_preview(ct, result, tmp_path / "bad.png")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def drawn_figures(monkeypatch) -> list:
    """The figures write_preview saves, for looking at their panels."""
    from matplotlib.figure import Figure

    figures, save = [], Figure.savefig

    def keep(figure, *args, **kwargs):
        figures.append(figure)
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def _panel_sizes(figure) -> dict[str, tuple[float, float]]:
    """(width, height) in inches of the drawn image of each panel, by its title's first word."""
    sizes = {}
    for ax in figure.axes[:3]:
        box = ax.get_position()
        width, height = figure.get_size_inches()
        sizes[ax.get_title().split()[0]] = (box.width * width, box.height * height)
    return sizes


def test_thin_scan_panels_have_a_minimum_height(tmp_path: Path, drawn_figures) -> None:
    """20 slices of 2 mm under a 180 x 140 mm field of view: the coronal and sagittal panels are stretched to a
    third of their width (and say so), not drawn as slivers a quarter of it high."""
    ct, mask = make_case((180.0, 140.0, 40.0), (1.5, 1.5, 2.0), DIRECTIONS["LPS"], phantom=PHANTOM)
    labels = sitk.GetArrayFromImage(mask)
    lesions = measure_lesions(labels, Geometry.of(mask))
    result = Segmentation(mask=mask, lesions=lesions, summary=scan_summary(labels, Geometry.of(mask), lesions))
    assert ct.GetSize()[2] == 20
    write_preview(ct, result, tmp_path / "thin.png", tumour_probability=_tumour_probability(mask))
    (figure,) = drawn_figures
    sizes = _panel_sizes(figure)
    for name in ("coronal", "sagittal"):
        width, height = sizes[name]
        assert height >= 0.32 * width, f"{name} panel {width:.2f} x {height:.2f} in"
    titles = [ax.get_title() for ax in figure.axes[:3]]
    assert "stretched" not in titles[0] and all("slices stretched" in title for title in titles[1:])


def test_panels_share_one_physical_scale(tmp_path: Path, drawn_figures) -> None:
    """The coronal panel (180 mm wide) is 180/140 times as wide as the sagittal one (140 mm)."""
    ct, result = _case(DIRECTIONS["LPS"])
    write_preview(ct, result, tmp_path / "scale.png")
    sizes = _panel_sizes(drawn_figures[0])
    assert sizes["coronal"][0] / sizes["sagittal"][0] == pytest.approx(180.0 / 140.0, rel=0.05)
    assert sizes["coronal"][1] == pytest.approx(sizes["sagittal"][1], rel=0.05)  # the same 100 mm high
