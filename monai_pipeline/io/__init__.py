"""Reading and writing CT scans and masks with their geometry."""

from __future__ import annotations

from monai_pipeline.io.geometry import Geometry, orientation_code
from monai_pipeline.io.reader import (
    IMAGE_SUFFIXES,
    case_name,
    check_label_values,
    is_image_file,
    load_image,
    read_image,
)
from monai_pipeline.io.writer import atomic_path, write_image, write_mask

__all__ = [
    "Geometry",
    "IMAGE_SUFFIXES",
    "atomic_path",
    "case_name",
    "check_label_values",
    "is_image_file",
    "load_image",
    "orientation_code",
    "read_image",
    "write_image",
    "write_mask",
]
