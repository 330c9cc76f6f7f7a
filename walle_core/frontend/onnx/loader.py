"""Reading ONNX files safely: every failure becomes a :class:`ModelError` naming its cause.

Parsing, the ONNX checker, external data and shape inference all raise their own exception
types (protobuf DecodeError, ValidationError, OSError, ...); users get one error type with the
file and the reason instead of a traceback from a library they never called.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from walle_core.frontend.onnx import weights
from walle_core.frontend.onnx.convert import Light, _infer, convert_model, text, without_weights
from walle_core.ir.errors import ModelError, WalleError
from walle_core.ir.graph import Graph

MIN_OPSET = 7


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError or RuntimeWarning-like errors
        raise ModelError(f"{label}: not a valid ONNX protobuf ({exc})") from None
    if not model.HasField("graph"):
        raise ModelError(f"{label}: ONNX model has no graph (not an ONNX model file?)")
    return model


def _read(model: str | os.PathLike[str] | bytes | onnx.ModelProto
          ) -> tuple[Any, str, str, dict[str, np.ndarray]]:
    """The parsed model, its label, the folder of its external data, and the arrays of the
    initializers whose data was read from the file directly (:mod:`weights`)."""
    if isinstance(model, onnx.ModelProto):
        return model, "<ModelProto>", "", {}
    if isinstance(model, bytes | bytearray | memoryview):
        return _parse(bytes(model), "<bytes>"), "<bytes>", "", {}
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    label = str(path)
    try:
        stripped = weights.strip(path) if _direct_weights() else None
        if stripped is not None:
            data, cuts = stripped
            proto = _parse(data, label)
            del data
            inits = [proto.graph.initializer[c.initializer] for c in cuts]
            arrays = weights.read(path, [(text(t.name), t.data_type, list(t.dims), c)
                                         for t, c in zip(inits, cuts, strict=True)], label)
            return proto, label, str(path.parent), arrays
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror})") from None
    return _parse(data, label), label, str(path.parent), {}


def _direct_weights() -> bool:
    """``WALLE_DIRECT_WEIGHTS=0`` parses whole files with protobuf (the weights twice)."""
    return os.environ.get("WALLE_DIRECT_WEIGHTS", "1").lower() not in ("0", "false", "no")


def _check_opsets(proto: onnx.ModelProto, label: str) -> None:
    newest = onnx.defs.onnx_opset_version()
    if not proto.opset_import:
        raise ModelError(f"{label}: model declares no opset_import")
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > newest:
            raise ModelError(
                f"{label}: opset {imp.version} is newer than the installed onnx defines "
                f"({newest}); upgrade onnx or export with opset <= {newest}"
            )


def _load_external(proto: onnx.ModelProto, base_dir: str, label: str) -> None:
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    if not any(uses_external_data(t) for t in proto.graph.initializer):
        return
    if not base_dir:
        raise ModelError(f"{label}: model uses external data; load it from a path, not bytes")
    try:
        load_external_data_for_model(proto, base_dir)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{label}: cannot load external data ({exc})") from None
    except Exception as exc:
        raise ModelError(f"{label}: external data is invalid ({exc})") from None


def load_model(
    model: str | os.PathLike[str] | bytes | onnx.ModelProto, check: bool = True
) -> Graph:
    """Load ``model`` into the IR; raises :class:`ModelError` for anything malformed."""
    proto, label, base_dir, arrays = _read(model)
    _check_opsets(proto, label)
    _load_external(proto, base_dir, label)
    try:  # what the checker and shape inference need: no weights
        light = without_weights(proto, arrays)
    except Exception as exc:  # a malformed proto: say, a name that is not UTF-8
        raise ModelError(f"{label}: malformed model ({type(exc).__name__}: {exc})") from None
    inferred = _validated(light, label, check)
    try:
        return convert_model(proto, label, light, inferred)
    except WalleError:
        raise
    except Exception as exc:  # anything unforeseen in a malformed proto
        raise ModelError(f"{label}: cannot convert model ({type(exc).__name__}: {exc})") from None


def _check(light: Light, label: str) -> None:
    try:
        onnx.checker.check_model(light.model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        # unshaped value infos are legal ONNX (onnxruntime accepts them); all else is not
        if not first.startswith("Field 'shape' of 'type' is required"):
            raise ModelError(f"{label}: ONNX checker rejected the model: {first}") from None
    except Exception as exc:  # the C++ checker may raise plain exceptions on garbage
        raise ModelError(f"{label}: ONNX checker failed: {exc}") from None


def validated_dir() -> Path:
    """``$WALLE_CACHE_DIR/validated`` (default ``~/.cache/walle/validated``)."""
    from walle_core.hostinfo import cache_root

    return cache_root() / "validated"


#: Files kept in :func:`validated_dir`; past it the least recently used go.
VALIDATED_KEEP = 256


def _validated(light: Light, label: str, check: bool) -> onnx.ModelProto | None:
    """The weightless model after the ONNX checker (when ``check``) and shape inference, from
    a per-machine cache when this exact model has passed before.

    Both need ONNX's operator schemas, which the onnx package builds on first use and keeps:
    7 MB of the process, a fifth of the engine's memory floor, for a result that depends
    only on the weightless model's bytes and the onnx version. So the inferred model is
    stored under the hash of those, once it has passed the checker, and a later load of the
    same model reads it back instead (never for a model that failed: it is checked again
    and fails again with the checker's own message). ``WALLE_VALIDATION_CACHE=0`` turns it
    off. None: the caller runs shape inference itself (cache off, or no check on a miss)."""
    path = _validated_path(light)
    if path is not None:
        try:
            inferred = onnx.ModelProto()
            inferred.ParseFromString(path.read_bytes())
            # protobuf parses many byte strings without complaint: it must be this model
            if [n.output for n in inferred.graph.node] != \
                    [n.output for n in light.model.graph.node]:
                raise ValueError("not this model")
        except Exception:  # absent, unreadable or corrupt: validate and store again
            pass
        else:
            try:
                os.utime(path)  # recently used: kept by the pruning in _store
            except OSError:
                pass
            return inferred
    if check:
        _check(light, label)
    if path is None or not check:  # only a model that passed the checker is stored
        return None
    inferred = _infer(light.model)
    _store(path, inferred)
    return inferred


def _validated_path(light: Light) -> Path | None:
    """Where the validated copy of ``light`` lives (None: the cache is off, or the model does
    not serialise, and the plain path reports what is wrong with it)."""
    import hashlib

    if os.environ.get("WALLE_VALIDATION_CACHE", "1").lower() in ("0", "false", "no"):
        return None
    try:
        body = light.model.SerializeToString(deterministic=True)
    except Exception:
        return None
    digest = hashlib.sha256(body + f"|onnx {onnx.__version__}".encode()).hexdigest()[:32]
    return validated_dir() / f"{digest}.onnx"


def _store(path: Path, model: onnx.ModelProto) -> None:
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    except OSError:  # a read-only cache only costs validating again next time
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, path)
        files = sorted(path.parent.glob("*.onnx"), key=lambda p: p.stat().st_mtime)
        for old in files[:-VALIDATED_KEEP]:
            old.unlink(missing_ok=True)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
