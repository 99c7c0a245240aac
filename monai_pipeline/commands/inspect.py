"""``monai-pipeline inspect``: what a scan (file or DICOM folder) holds, as the pipeline reads it."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "inspect"
HELP = "Show a scan's geometry and HU range as the pipeline reads it; for a DICOM folder, its series."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the inspect command."""
    parser.add_argument("path", help="a NIfTI, NRRD or MHA file, or a DICOM series folder")
    parser.add_argument("--series-uid", help="for a DICOM folder with several series, the one to read")


def run(args: argparse.Namespace) -> int:
    """Read the scan and print what it holds (no header text that could identify the patient)."""
    import SimpleITK as sitk

    from monai_pipeline.io import Geometry, read_image
    from monai_pipeline.io.dicom import list_series

    path = Path(args.path)
    if path.is_dir():
        for info in list_series(path):
            print(f"series '{info.uid}': {info.modality or 'unknown modality'}, {info.num_slices} file(s)")
    image = read_image(path, series_uid=args.series_uid)
    geometry = Geometry.of(image)
    values = sitk.GetArrayViewFromImage(image)
    print(f"size        {' x '.join(map(str, geometry.size))} voxels")
    print(f"spacing     {' x '.join(f'{s:.4g}' for s in geometry.spacing)} mm")
    print(f"origin      ({', '.join(f'{o:.2f}' for o in geometry.origin)}) mm, LPS")
    print(f"orientation {geometry.orientation}" + ("" if _axis_aligned(geometry) else " (oblique; closest code)"))
    print(f"pixel type  {image.GetPixelIDTypeAsString()}")
    print(f"values      {float(values.min()):.6g} .. {float(values.max()):.6g}")
    return 0


def _axis_aligned(geometry) -> bool:
    import numpy as np

    matrix = np.abs(np.asarray(geometry.direction).reshape(3, 3))
    return bool(np.allclose(np.sort(matrix, axis=0)[-1], 1.0, atol=1e-6))
