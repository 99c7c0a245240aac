"""The random state of a training run, saved in its checkpoint so that a resumed run draws what an uninterrupted
one would: Python's, NumPy's and torch's generators (CPU and CUDA), the training transforms' own generators, and
the data loader's generator when it has one (without one, its shuffling draws from torch's)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable

__all__ = ["capture_rng", "restore_rng", "random_transforms"]


def random_transforms(transform: Any) -> list[Randomizable]:
    """Every object with its own generator in ``transform`` (a ``Compose`` and what it holds, nested transforms
    such as a dictionary transform's array transform included), in a fixed order."""
    found: list[Randomizable] = []
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, Randomizable):
            found.append(obj)
        for value in getattr(obj, "__dict__", {}).values():
            for item in value if isinstance(value, (list, tuple)) else (value,):
                if _is_transform(item):
                    visit(item)

    visit(transform)
    return found


def capture_rng(data_loader: Any = None) -> dict[str, Any]:
    """The random state now, as tensors and plain values (loadable with ``torch.load(..., weights_only=True)``)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if data_loader is not None:
        state["transforms"] = [_numpy_state(t.R.get_state()) for t in random_transforms(_transform_of(data_loader))]
        generator = getattr(data_loader, "generator", None)
        if generator is not None:
            state["loader"] = generator.get_state()
    return state


def restore_rng(state: dict[str, Any], data_loader: Any = None) -> None:
    """Set the random state saved by :func:`capture_rng`; parts that no longer fit (another number of CUDA
    devices or of random transforms) are left as they are."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_from_numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if data_loader is None:
        return
    transforms = random_transforms(_transform_of(data_loader))
    saved = state.get("transforms", [])
    if len(saved) == len(transforms):
        for transform, transform_state in zip(transforms, saved):
            transform.R.set_state(_from_numpy_state(transform_state))
    generator = getattr(data_loader, "generator", None)
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])


def _is_transform(obj: Any) -> bool:
    from monai.transforms import Compose, Transform

    return isinstance(obj, (Transform, Randomizable, Compose))


def _transform_of(data_loader: Any) -> Any:
    return getattr(getattr(data_loader, "dataset", None), "transform", None)


def _numpy_state(state: tuple) -> dict[str, Any]:
    name, keys, position, has_gauss, cached = state
    return {
        "name": name,
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _from_numpy_state(state: dict[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return state["name"], keys, state["position"], state["has_gauss"], state["cached_gaussian"]
