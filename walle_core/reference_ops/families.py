"""Imports every op-family module so that their ``@register`` decorators run."""

from walle_core.reference_ops import (  # noqa: F401
    activations,
    binary,
    elementwise,
    generators,
    indexing,
    movement,
    reductions,
)
