"""Strided views as regions: the one helper every data-movement decomposer builds on.

Any view ``out[idx] = src[offset + sum(idx * strides)]`` (negative and zero strides allowed) is
cut into 3-D :class:`Region`s: size-1 dims are dropped, adjacent dims that walk both buffers
contiguously are merged, and dims beyond three are unrolled into one region per leading index.
"""

from __future__ import annotations

import itertools

from walle_core.ir.primitives import Region


def row_major(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a contiguous row-major tensor."""
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * max(shape[i + 1], 1)
    return tuple(strides)


def merge_dims(
    shape: tuple[int, ...], src: tuple[int, ...], dst: tuple[int, ...]
) -> tuple[list[int], list[int], list[int]]:
    """Drop size-1 dims and fuse neighbours that are contiguous in both src and dst."""
    dims = [(n, s, d) for n, s, d in zip(shape, src, dst, strict=True) if n != 1]
    merged: list[list[int]] = []
    for n, s, d in dims:
        if merged:
            pn, ps, pd = merged[-1]
            if ps == s * n and pd == d * n:
                merged[-1] = [pn * n, s, d]
                continue
        merged.append([n, s, d])
    return [m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged]


def view_regions(
    src: int,
    shape: tuple[int, ...],
    src_strides: tuple[int, ...],
    src_offset: int = 0,
    dst_strides: tuple[int, ...] | None = None,
    dst_offset: int = 0,
) -> list[Region]:
    """Regions copying the strided view of input ``src`` into the output (row-major default)."""
    if any(n == 0 for n in shape):
        return []
    dst = dst_strides if dst_strides is not None else row_major(shape)
    sizes, ss, ds = merge_dims(shape, src_strides, dst)
    while len(sizes) < 3:
        sizes.insert(0, 1)
        ss.insert(0, 0)
        ds.insert(0, 0)
    lead = len(sizes) - 3
    regions = []
    for idx in itertools.product(*(range(n) for n in sizes[:lead])):
        so = src_offset + sum(i * s for i, s in zip(idx, ss[:lead], strict=True))
        do = dst_offset + sum(i * d for i, d in zip(idx, ds[:lead], strict=True))
        regions.append(
            Region(src, so, (ss[-3], ss[-2], ss[-1]), do, (ds[-3], ds[-2], ds[-1]),
                   (sizes[-3], sizes[-2], sizes[-1]))
        )
    return regions


def is_identity(region: Region, size: int) -> bool:
    """True when ``region`` copies a whole contiguous buffer of ``size`` elements unchanged."""
    if region.count != size or region.src_offset != 0 or region.dst_offset != 0:
        return False
    sizes, ss, ds = merge_dims(region.size, region.src_strides, region.dst_strides)
    return len(sizes) == 0 or (len(sizes) == 1 and ss[0] == 1 and ds[0] == 1)
