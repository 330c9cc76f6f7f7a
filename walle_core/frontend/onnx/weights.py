"""Reading an ONNX file's large weights straight into arrays, without parsing them twice.

Parsing a model with protobuf holds every weight twice on the way to the engine: once as the
file's bytes or the parsed message's ``raw_data``, once as the numpy array the converter makes
of it. The freed copy mostly stays in the process too (glibc does not give back the heap pages
the parser's arena used), so a model's memory was about twice its weights: BERT's 44 MB of
weights cost 84 MB.

Here the file is scanned at the protobuf wire level instead (``ModelProto.graph`` is field 7,
``GraphProto.initializer`` field 5, ``TensorProto.raw_data`` field 9): each top-level
initializer's ``raw_data`` above :data:`MIN_BYTES` is cut out of the bytes that protobuf
parses, and read from the file into an aligned array of its own with ``preadv`` (through the
page cache, never resident twice). Anything the scanner does not expect (a group, a repeated
graph, a truncated field, a tensor type numpy cannot hold) makes it return ``None`` and the
caller parses the whole file as before: this only ever saves memory.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from walle_core.ir.errors import ModelError

#: raw_data at or below this many bytes stays in the parsed message (shape-like constants
#: that shape inference reads; the same limit as ``convert.LIGHT_LIMIT``).
MIN_BYTES = 4096

#: TensorProto.data_type -> numpy dtype, for the types whose raw_data is plain little-endian
#: values of one numpy dtype.
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
          7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32,
          13: np.uint64}

_GRAPH, _INITIALIZER, _DATA_TYPE, _RAW_DATA, _DATA_LOCATION = 7, 5, 2, 9, 14


class Cut(NamedTuple):
    """One initializer's raw_data left in the file: the initializer's position in the graph,
    where its bytes start in the file and how many there are."""

    initializer: int
    offset: int
    length: int


class _Malformed(Exception):
    pass


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: memoryview, start: int, end: int):  # type: ignore[no-untyped-def]
    """(field, wire type, start of the field's tag, start of its value, end of its value)."""
    pos = start
    while pos < end:
        tag_at = pos
        tag, pos = _varint(buf, pos, end)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _, after = _varint(buf, pos, end)
        elif wire == 1:
            after = pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            after = pos + length
        elif wire == 5:
            after = pos + 4
        else:  # groups (3, 4) and invalid types: not something this scanner rewrites
            raise _Malformed
        if after > end or field == 0:
            raise _Malformed
        yield field, wire, tag_at, pos, after
        pos = after


def _tensor(buf: memoryview, start: int, end: int) -> tuple[bytes, int, int] | None:
    """The TensorProto without its raw_data, and where that raw_data is (file offset, length);
    None when this tensor keeps its data in the message."""
    raw: tuple[int, int, int, int] | None = None
    dtype = None
    for field, wire, tag_at, vstart, vend in _fields(buf, start, end):
        if field == _RAW_DATA and wire == 2:
            if raw is not None:
                return None  # repeated raw_data (protobuf keeps the last): leave it to protobuf
            raw = (tag_at, vend, vstart, vend - vstart)
        elif field == _DATA_TYPE and wire == 0:
            dtype, _ = _varint(buf, vstart, vend)
        elif field == _DATA_LOCATION:
            return None  # external data: the loader's other path
    if raw is None or raw[3] <= MIN_BYTES or dtype not in DTYPES:
        return None
    tag_at, after, vstart, length = raw
    body = bytes(buf[start:tag_at]) + bytes(buf[after:end])
    return body, vstart, length


def strip(path: str | os.PathLike[str]) -> tuple[bytes, list[Cut]] | None:
    """The file's bytes with large top-level initializers' raw_data cut out, and where each
    cut was; None when nothing was cut or the file is not what this scanner rewrites."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < MIN_BYTES:
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            buf = memoryview(mm)
            try:
                return _strip(buf, size)
            except _Malformed:
                return None
            finally:
                buf.release()


def _strip(buf: memoryview, size: int) -> tuple[bytes, list[Cut]] | None:
    model = list(_fields(buf, 0, size))
    graphs = [f for f in model if f[0] == _GRAPH]
    if len(graphs) != 1 or graphs[0][1] != 2:
        return None
    _, _, g_tag, g_start, g_end = graphs[0]
    pieces: list[bytes] = []
    cuts: list[Cut] = []
    index = 0
    copied = g_start  # graph bytes up to here are in pieces
    for field, wire, tag_at, vstart, vend in _fields(buf, g_start, g_end):
        if field != _INITIALIZER or wire != 2:
            continue
        cut = _tensor(buf, vstart, vend)
        if cut is not None:
            body, offset, length = cut
            pieces.append(bytes(buf[copied:tag_at]))
            pieces.append(_encode_varint(_INITIALIZER << 3 | 2) + _encode_varint(len(body)))
            pieces.append(body)
            copied = vend
            cuts.append(Cut(index, offset, length))
        index += 1
    if not cuts:
        return None
    pieces.append(bytes(buf[copied:g_end]))
    graph = b"".join(pieces)
    head = bytes(buf[:g_tag])
    tail = bytes(buf[g_end:size])
    out = head + _encode_varint(_GRAPH << 3 | 2) + _encode_varint(len(graph)) + graph + tail
    return out, cuts


def read(path: str | os.PathLike[str], tensors: list[tuple[str, int, list[int], Cut]],
         label: str) -> dict[str, np.ndarray]:
    """Arrays for ``(name, data_type, dims, cut)`` read from the file; a size that disagrees
    with the dims is a :class:`ModelError`, as when protobuf's copy is decoded."""
    out: dict[str, np.ndarray] = {}
    fd = os.open(Path(path), os.O_RDONLY)
    try:
        for name, data_type, dims, cut in tensors:
            dtype = np.dtype(DTYPES[data_type]).newbyteorder("<")  # ONNX raw data order
            count = int(np.prod(dims, dtype=np.int64)) if dims else 1
            if any(d < 0 for d in dims) or count * dtype.itemsize != cut.length:
                raise ModelError(f"{label}: tensor {name!r} cannot be decoded (raw data of "
                                 f"{cut.length} bytes for shape {tuple(dims)} of {dtype})")
            array = np.empty(count, dtype)
            view = array.data.cast("B")
            done = 0
            while done < cut.length:
                got = os.preadv(fd, [view[done:]], cut.offset + done)
                if got <= 0:
                    raise ModelError(f"{label}: file ends inside tensor {name!r}")
                done += got
            view.release()
            if not dtype.isnative:  # pragma: no cover - big-endian hosts
                array = array.astype(dtype.newbyteorder("="))
            out[name] = array.reshape(dims)
    finally:
        os.close(fd)
    return out
