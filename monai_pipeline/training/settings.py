"""Checks of a training run's settings before anything is built: each ``--set KEY=VALUE`` has the type of the value
it replaces, and the settings together fit the network (the patch divisible by its total stride, enough levels)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from monai_pipeline.errors import PipelineError

__all__ = ["CHECKED_SETTINGS", "check_override", "check_settings"]

_AT_LEAST = {
    "max_epochs": 1,
    "batch_size": 1,
    "num_samples": 1,
    "val_interval": 1,
    "sw_batch_size": 1,
    "context": 1,
    "early_stop_patience": 0,
    "warmup_epochs": 0,
    "num_workers": 0,
    "freeze_encoder_epochs": 0,
    "seed": 0,
}
"""Settings that are whole numbers, with their smallest value."""

_RANGES = {
    "learning_rate": (0.0, math.inf, False),
    "weight_decay": (0.0, math.inf, True),
    "max_minutes": (0.0, math.inf, True),
    "cache_rate": (0.0, 1.0, True),
    "sw_overlap": (0.0, 1.0, True),
}
"""Settings that are numbers: (low, high, low included); high is excluded except for ``cache_rate``."""

CHECKED_SETTINGS = (*_AT_LEAST, *_RANGES, "spatial_dims", "roi_size", "filters", "crop_ratios", "mirror_axes")
"""The settings :func:`check_settings` reads."""

_EXPRESSION = ("$", "@", "%")


def check_override(key: str, value: Any, current: Any) -> None:
    """Check that ``--set key=value`` gives a value of the kind the config holds (``current``); an expression
    (``$...``, ``@...``) on either side is not checked.

    Raises:
        PipelineError: a value of another kind, e.g. text for the list ``roi_size``.
    """
    if _is_expression(current) or _is_expression(value) or current is None:
        return
    wanted, given = _kind(current), _kind(value)
    if wanted == given or (wanted == "a list of numbers" and given == "a list" and not current):
        return
    if wanted == "a list" and given == "a list of numbers":
        return
    raise PipelineError(
        f"--set {key}={_show(value)}: {key} takes {wanted} such as {_show(current)}, not {given}"
        + (" (write a list as [a,b,c])" if isinstance(value, str) and isinstance(current, list) else "")
    )


def check_settings(settings: Mapping[str, Any]) -> None:
    """Check the resolved settings of a run (those of :data:`CHECKED_SETTINGS` present in ``settings``).

    Raises:
        PipelineError: a setting outside its range, or a patch the network cannot take: ``roi_size`` needs one
            side per spatial dimension, each divisible by ``2 ** (len(filters) - 1)``; ``filters`` needs at least 3
            levels; the 2.5D ``context`` is odd.
    """
    for key, low in _AT_LEAST.items():
        if key in settings and not (_is_int(settings[key]) and settings[key] >= low):
            raise PipelineError(f"{key} must be a whole number >= {low}, got {_show(settings[key])}")
    for key, (low, high, low_included) in _RANGES.items():
        if key not in settings:
            continue
        value = settings[key]
        inside = _is_number(value) and (value >= low if low_included else value > low)
        inside = inside and (value <= high if key == "cache_rate" else value < high)
        if not inside:
            bounds = f"{'>=' if low_included else '>'} {low:g}" + ("" if math.isinf(high) else f" and <= {high:g}")
            if key == "sw_overlap":
                bounds = ">= 0 and < 1"
            raise PipelineError(f"{key} must be a number {bounds}, got {_show(value)}")
    if "context" in settings and settings["context"] % 2 == 0:
        raise PipelineError(
            f"context must be odd (the slice and as many neighbours on each side), got {settings['context']}"
        )
    dims = settings.get("spatial_dims", 3)
    if dims not in (2, 3):
        raise PipelineError(f"spatial_dims must be 2 or 3, got {_show(dims)}")
    _check_network(settings, dims)
    _check_lists(settings, dims)


def _check_network(settings: Mapping[str, Any], dims: int) -> None:
    filters = settings.get("filters")
    if filters is not None and not (
        isinstance(filters, list) and len(filters) >= 3 and all(_is_int(f) and f >= 1 for f in filters)
    ):
        raise PipelineError(
            f"filters must list at least 3 positive whole numbers (feature maps per level), got {_show(filters)}"
        )
    roi = settings.get("roi_size")
    if roi is None:
        return
    if not (isinstance(roi, list) and len(roi) == dims and all(_is_int(side) and side >= 1 for side in roi)):
        raise PipelineError(
            f"roi_size must list {dims} positive whole numbers (one per spatial axis), got {_show(roi)}"
        )
    if filters is None:
        return
    stride = 2 ** (len(filters) - 1)
    if any(side % stride for side in roi):
        fitting = [max(stride, round(side / stride) * stride) for side in roi]
        raise PipelineError(
            f"roi_size {_show(roi)} does not fit the network: with {len(filters)} levels (filters {_show(filters)}) "
            f"each side must be a multiple of {stride}, e.g. roi_size={_show(fitting)}"
        )


def _check_lists(settings: Mapping[str, Any], dims: int) -> None:
    ratios = settings.get("crop_ratios")
    if ratios is not None and not (
        isinstance(ratios, list)
        and len(ratios) == 3
        and all(_is_number(r) and r >= 0 for r in ratios)
        and any(r > 0 for r in ratios)
    ):
        raise PipelineError(
            "crop_ratios must list 3 numbers >= 0, not all 0 (how often patches centre on background, liver, "
            f"tumour), got {_show(ratios)}"
        )
    axes = settings.get("mirror_axes")
    if axes is not None and not (
        isinstance(axes, list) and all(_is_int(a) and 0 <= a < dims for a in axes) and len(set(axes)) == len(axes)
    ):
        raise PipelineError(f"mirror_axes must list distinct axes in 0..{dims - 1}, got {_show(axes)}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list of numbers" if value and all(_is_number(item) for item in value) else "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "text"


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(_EXPRESSION)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
