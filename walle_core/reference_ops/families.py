"""Imports every op-family module so that their ``@register`` decorators run."""

from walle_core.reference_ops import (  # noqa: F401
    activations,
    attention,
    binary,
    conv,
    elementwise,
    generators,
    indexing,
    matmul,
    misc,
    movement,
    normalization,
    pool,
    recurrent,
    reductions,
    resize,
    sequences,
    signal,
)
