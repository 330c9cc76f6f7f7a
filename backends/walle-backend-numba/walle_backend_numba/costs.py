"""What the numba backend offers the semi-auto search: algorithms per step, with their costs.

Conv offers every variant that can run the shape (``conv.Geom.variants``): pointwise GEMM,
depthwise direct, im2col + GEMM, im2col in tiles, Winograd F(2x2,3x3) and F(4x4,3x3), and the
pointwise and im2col GEMMs through the register-tiled micro-kernel (``microkernel.py``). Each
is costed by a roofline over the profile's measured rates (``conv.analytic_seconds``) times
that variant's efficiency, measured once per machine by :func:`calibrate_extra` on a
representative shape (``measured / analytic`` there), so the model keeps the analytic scaling
with shape while the constant factors are this machine's. A Linear-shaped MatMul offers BLAS
(``default``) and the micro-kernel (``mk``, the BLAS estimate times the ratio of the two
measured on a 128x256x256 Linear). Everything else is one ``default`` algorithm costed by the
core's analytic model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from walle_core.backend import Algorithm, StepTimer
from walle_core.ir.dtypes import from_numpy
from walle_core.ir.primitives import Kernel, MatMul, Step, TensorSpec

# 8: large calibration shapes for the GEMM Conv variants; 7: direct_mk stems;
# 6: channels-last Convs (nhwc.py); 5: micro-kernel GEMM variants
# (microkernel.py); 4: im2col_tiles; 3: GEMMs and kernels on one numba pool (pool.py)
#: Bumped when kernels change enough that cached calibrations are stale.
KERNELS_VERSION = 8

CONV_NOTES = {
    "pointwise": "1x1 conv as GEMM on NCHW",
    "depthwise": "direct depthwise loop per channel plane",
    "depthwise_cl": "depthwise over a channels-last copy (inner loop over channels)",
    "pointwise_mk": "1x1 conv through the register-tiled micro-kernel, epilogue in the tile",
    "im2col": "im2col + BLAS GEMM",
    "im2col_mk": "im2col + the register-tiled micro-kernel, epilogue in the tile",
    "im2col_tiles": "im2col + GEMM + epilogue per tile of output rows, each a pool task",
    "winograd2": "Winograd F(2x2,3x3): 16 GEMMs on transformed tiles",
    "winograd4": "Winograd F(4x4,3x3): 36 GEMMs on transformed tiles",
    "direct_mk": "implicit GEMM on stride-phase planes of the input (a stem), no im2col",
    "nhwc_pointwise": "channels-last 1x1 conv: the micro-kernel on pixels x channels",
    "nhwc_packed": "channels-last 1x1 conv: the micro-kernel on pixels x channels, weights "
                   "packed in column panels",
    "nhwc_depthwise": "channels-last depthwise: one vector loop over channels per pixel",
    "nhwc_im2col": "channels-last im2col tiles + the micro-kernel",
    "nhwc_direct": "NCHW in, NHWC out: the micro-kernel reading a padded input copy in place",
}


def conv_algorithms(step: Step, inputs: Sequence[TensorSpec | None],
                    outputs: Sequence[TensorSpec], profile: Any) -> list[Algorithm] | None:
    from walle_backend_numba import conv

    prim = step.prim
    if len(inputs) < 2 or inputs[0] is None or inputs[1] is None:
        return None
    bias = inputs[2] if len(inputs) > 2 else None
    module: Any = conv
    if prim.attrs.get("layout") == "NHWC":  # type: ignore[attr-defined]
        from walle_backend_numba import nhwc

        module = nhwc
        geo = nhwc.geometry(prim.attrs, inputs[0], inputs[1], bias,  # type: ignore[attr-defined]
                            outputs[0])
    else:
        geo = conv.geometry_nd(prim.attrs, inputs[0], inputs[1], bias,  # type: ignore[attr-defined]
                               outputs[0])
    if geo is None:
        return None
    result = []
    for variant in geo.variants():
        est = module.analytic_seconds(geo, variant, profile)
        eff = module.efficiency(variant, profile, geo)
        extra = module.held_bytes(geo, variant)
        held = f"; holds {extra / 2**20:.2f} MB of transformed weights" if extra else ""
        result.append(Algorithm(variant, est * eff, note=f"{CONV_NOTES[variant]} "
                                f"(roofline {est * 1e6:.1f} us x measured efficiency {eff:.2f})"
                                f"{held}", extra_bytes=extra))
    return result


def algorithms(step: Step, inputs: Sequence[TensorSpec | None], outputs: Sequence[TensorSpec],
               profile: Any) -> list[Algorithm]:
    prim = step.prim
    if isinstance(prim, Kernel) and (prim.domain, prim.op_type) == ("", "Conv"):
        offered = conv_algorithms(step, inputs, outputs, profile)
        if offered:
            return offered
        # shapes/dtypes no numba variant covers run the reference numpy kernel: slower
        return [Algorithm("default", profile.estimate(step, inputs, outputs) * 4,
                          note="reference numpy Conv kernel")]
    est = profile.estimate(step, inputs, outputs)
    if isinstance(prim, MatMul) and len(inputs) >= 2 and inputs[0] is not None and \
            inputs[1] is not None:
        from walle_backend_numba import matmul

        bias = inputs[2] if len(inputs) > 2 else None
        if matmul.mk_fits(prim, inputs[0], inputs[1], bias, outputs[0]):
            eff = mk_efficiency(profile)
            packed = matmul.mk_packed_bytes(inputs[1])
            return [Algorithm("default", est, note="BLAS sgemm + numba epilogue"),
                    Algorithm("mk", est * eff, note="register-tiled micro-kernel, epilogue in "
                              f"the tile (BLAS estimate x measured ratio {eff:.2f})"
                              + ("; B packed in column panels" if packed else ""),
                              extra_bytes=packed)]
    return [Algorithm("default", est)]


def mk_efficiency(profile: Any) -> float:
    """The micro-kernel's time over BLAS's on the calibration MatMul (1.0 unmeasured)."""
    extra = getattr(profile, "extra", None) or {}
    mk, blas = extra.get("matmul.linear.mk"), extra.get("matmul.linear.default")
    if not mk or not blas:
        return 1.0
    return float(min(max(mk / blas, 0.1), 10.0))


def calibrate_extra(time_step: StepTimer) -> dict[str, float]:
    """Time each Conv variant once at its representative shape (about 0.3 s, warm JIT cache)."""
    import numpy as np

    from walle_backend_numba import conv

    f32 = from_numpy(np.float32)
    out: dict[str, float] = {}
    for name, variant, x, w, pad in conv.CALIBRATION:
        geo = conv.calibration_geom(x, w, pad)
        if variant not in geo.variants():  # im2col_tiles without the pool
            continue
        prim = Kernel("Conv", "", {"kernel_shape": list(w[2:]), "pads": [pad] * 4,
                                   "group": geo.g}, 13)
        ins: list[TensorSpec | None] = [TensorSpec(x, f32), TensorSpec(w, f32), None]
        outs = [TensorSpec((geo.n, geo.m, geo.oh, geo.ow), f32)]
        out[f"conv.{name}.{variant}"] = time_step(prim, ins, outs, Algorithm(variant, 0.0))
    from walle_backend_numba import nhwc

    for name, variant, x, w, pad, g in nhwc.CALIBRATION:
        ngeo = nhwc.calibration_geom(variant, x, w, pad, g)
        attrs = {"kernel_shape": list(w[:2]), "pads": [pad] * 4, "group": g, "layout": "NHWC"}
        if ngeo.nchw_in:
            attrs["input_layout"] = "NCHW"
        prim = Kernel("Conv", "", attrs, 13)
        ins = [TensorSpec(x, f32), TensorSpec(w, f32), None]
        outs = [TensorSpec((ngeo.n, ngeo.oh, ngeo.ow, ngeo.m), f32)]
        out[f"conv.{name}.{variant}"] = time_step(prim, ins, outs, Algorithm(variant, 0.0))
    # a Linear layer (a BERT encoder's attention output projection) both ways
    mm = MatMul()
    mm_ins: list[TensorSpec | None] = [TensorSpec((128, 256), f32), TensorSpec((256, 256), f32),
                                       TensorSpec((256,), f32)]
    for variant in ("default", "mk"):
        out[f"matmul.linear.{variant}"] = time_step(mm, mm_ins, [TensorSpec((128, 256), f32)],
                                                    Algorithm(variant, 0.0))
    return out
