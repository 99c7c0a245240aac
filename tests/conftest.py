"""Shared test helpers: synthetic images on a chosen grid, the four test orientations and the real-data folder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import SimpleITK as sitk

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
"""Small real scans (see its PROVENANCE.md); absent on a fresh clone, so tests using it skip."""


def _rotation(z_degrees: float, x_degrees: float) -> np.ndarray:
    """Rotation by ``z_degrees`` about z after ``x_degrees`` about x."""
    a, b = np.radians(z_degrees), np.radians(x_degrees)
    rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    return rz @ rx


class Orientation(NamedTuple):
    name: str
    direction: tuple[float, ...]  # 3x3 row-major ITK direction cosines (LPS frame)
    oblique: bool


ORIENTATIONS: dict[str, Orientation] = {
    "LPS": Orientation("LPS", (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), False),
    "RAS": Orientation("RAS", (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0), False),
    "LAI": Orientation("LAI", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0), False),
    "oblique": Orientation("oblique", tuple(_rotation(15.0, 5.0).ravel().tolist()), True),
}

SIZE = (9, 7, 5)  # (x, y, z): all different so a transposed axis shows
SPACING = (0.7, 0.9, 2.5)
ORIGIN = (-120.5, 33.25, -410.0)


@pytest.fixture(params=list(ORIENTATIONS.values()), ids=list(ORIENTATIONS))
def orientation(request: pytest.FixtureRequest) -> Orientation:
    """Each test orientation in turn: LPS (identity), RAS, LAI and an oblique one (15 deg about z, 5 about x)."""
    return request.param


@pytest.fixture
def real_data() -> Path:
    """The real-data folder; skips the test when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real CT samples not found at {REAL_DATA} (only present in the shared workspace)")
    return REAL_DATA


@pytest.fixture
def make_image() -> Callable[..., sitk.Image]:
    """Factory for a small synthetic image with distinct, position-dependent voxel values.

    ``make_image(size=(x, y, z), spacing=..., origin=..., direction=..., dtype=np.int16)``: int16 gives CT-like HU,
    uint8 gives labels 0/1/2, floats give HU as floats.
    """

    def make(
        size: Sequence[int] = SIZE,
        spacing: Sequence[float] = SPACING,
        origin: Sequence[float] = ORIGIN,
        direction: Sequence[float] = ORIENTATIONS["LPS"].direction,
        dtype: type | np.dtype = np.int16,
    ) -> sitk.Image:
        shape = tuple(size)[::-1]
        rng = np.random.default_rng(1234)
        if np.dtype(dtype) == np.uint8:
            values = rng.integers(0, 3, size=shape)
        else:
            values = rng.integers(-1024, 3000, size=shape)
        image = sitk.GetImageFromArray(values.astype(dtype))
        image.SetSpacing([float(s) for s in spacing])
        image.SetOrigin([float(o) for o in origin])
        image.SetDirection([float(d) for d in direction])
        return image

    return make
