"""Connected components of a large mask found slab by slab, so that their memory does not grow with the mask.

``scipy.ndimage.label`` over a whole scan needs four bytes per voxel of its box, whatever the mask holds; a poor
prediction that spreads over a 512x512x900 scan makes that 1 GB, and the steps after it several times more. Here
each slab of at most :data:`SLAB_VOXELS` voxels (whole slices along the array's first axis) is labelled on its own;
labels touching across a slab boundary (26-connectivity) are joined with ``scipy.sparse.csgraph``, and the
components are numbered as ``ndimage.label`` numbers them over the whole mask (in raster order of their first voxel).
A second pass labels each slab again to map its voxels to the components, so the memory is that of one slab, the
two boundary slices and one number per slab-wise label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components

__all__ = ["CONNECTIVITY", "SLAB_VOXELS", "SlabComponents", "label_slabs", "slab_slices", "value_box"]

CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
"""Voxels touching by a face, an edge or a corner belong to one object (26-connectivity)."""

SLAB_VOXELS = 4_000_000
"""Voxels labelled at a time (16 MB of labels); a slab is never thinner than one slice."""


def slab_slices(depth: int, plane_voxels: int, voxels: int | None = None) -> list[slice]:
    """Consecutive slices along the first axis of at most ``voxels`` (default :data:`SLAB_VOXELS`) voxels each."""
    step = max(1, (SLAB_VOXELS if voxels is None else voxels) // max(plane_voxels, 1))
    return [slice(start, min(start + step, depth)) for start in range(0, depth, step)]


@dataclass
class SlabComponents:
    """The 26-connected components of a mask, as :func:`label_slabs` found them.

    Attributes:
        slabs: the slabs along the first axis.
        offsets: the number of slab-wise labels before each slab.
        lookup: component number (1 .. count; 0 background) of each slab-wise label, offset by its slab.
        sizes: voxels of each component; ``sizes[0]`` is 0.
    """

    slabs: list[slice]
    offsets: list[int]
    lookup: np.ndarray
    sizes: np.ndarray
    _single: np.ndarray | None = field(default=None, repr=False)

    @property
    def count(self) -> int:
        """The number of components."""
        return len(self.sizes) - 1

    def labels(self, index: int, mask: np.ndarray) -> np.ndarray:
        """The component numbers (int32) of slab ``index``, given its mask: the same mask as :func:`label_slabs`
        was given for it."""
        if self._single is not None:
            return self._single
        local, _ = ndimage.label(mask, structure=CONNECTIVITY)
        np.add(local, np.int32(self.offsets[index]), out=local, where=local > 0)
        return self.lookup[local]


def label_slabs(mask_of: Callable[[slice], np.ndarray], shape: tuple[int, ...]) -> SlabComponents:
    """The connected components of a 3D mask given slab by slab.

    Args:
        mask_of: the boolean mask of a slab (a slice along the first axis); it must give the same mask each time it
            is asked for the same slab (the caller may change a slab only after its second pass).
        shape: the mask's (z, y, x) shape.
    """
    slabs = slab_slices(shape[0], int(np.prod(shape[1:])))
    offsets, sizes, joins = [], [np.zeros(1, dtype=np.int64)], []
    total, previous, single = 0, None, None
    for zs in slabs:
        local, count = ndimage.label(mask_of(zs), structure=CONNECTIVITY)
        offsets.append(total)
        sizes.append(np.bincount(local.ravel(), minlength=count + 1)[1:].astype(np.int64))
        first = np.where(local[0] > 0, local[0] + total, 0)
        if previous is not None:
            joins.append(_joins(previous, first))
        previous = np.where(local[-1] > 0, local[-1] + total, 0)
        total += count
        if len(slabs) == 1:
            single = local
    sizes_by_label = np.concatenate(sizes)
    if joins:
        pairs = np.concatenate(joins, axis=1)
        graph = sparse.coo_matrix((np.ones(pairs.shape[1], dtype=np.int8), (pairs[0], pairs[1])), (total + 1,) * 2)
        # nodes are visited in order, so components are numbered by their first slab-wise label: raster order
        _, lookup = connected_components(graph, directed=False)
    else:
        lookup = np.arange(total + 1)
    lookup = lookup.astype(np.int32)
    component_sizes = np.bincount(lookup, weights=sizes_by_label).astype(np.int64)
    components = SlabComponents(slabs, offsets, lookup, component_sizes)
    if single is not None:
        components._single = lookup[single]
    return components


def _joins(below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """The pairs (2, N) of labels that touch across a slab boundary: ``below`` is the last slice of one slab,
    ``above`` the first of the next (26-connectivity: each voxel touches the 3x3 voxels across)."""
    height, width = below.shape
    found = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            a = below[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)]
            b = above[max(0, dy) : height - max(0, -dy), max(0, dx) : width - max(0, -dx)]
            both = (a > 0) & (b > 0)
            found.append(np.stack([a[both], b[both]]).astype(np.int64))
    pairs = np.concatenate(found, axis=1)
    return np.unique(pairs, axis=1) if pairs.shape[1] else pairs


def value_box(array: np.ndarray, test: Callable[[np.ndarray], np.ndarray]) -> tuple[slice, ...] | None:
    """The smallest box (z, y, x slices) holding every voxel where ``test`` of ``array`` is True, or ``None``; the
    test runs slab by slab, so no mask of the whole array is made."""
    low, high = None, None
    for zs in slab_slices(array.shape[0], int(np.prod(array.shape[1:]))):
        where = test(array[zs])
        z = np.flatnonzero(where.any(axis=(1, 2)))
        if len(z) == 0:
            continue
        y, x = np.flatnonzero(where.any(axis=(0, 2))), np.flatnonzero(where.any(axis=(0, 1)))
        start = np.array([zs.start + z[0], y[0], x[0]])
        stop = np.array([zs.start + z[-1] + 1, y[-1] + 1, x[-1] + 1])
        low = start if low is None else np.minimum(low, start)
        high = stop if high is None else np.maximum(high, stop)
    if low is None:
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))
