"""Liver and liver-tumour segmentation of CT with MONAI: preprocessing, training, inference and evaluation."""

from __future__ import annotations

__version__ = "0.1.0"

LABELS: dict[int, str] = {0: "background", 1: "liver", 2: "tumour"}
"""Label values of every mask the pipeline reads or writes (the LiTS convention)."""
