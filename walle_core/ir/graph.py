"""The graph IR: typed values, nodes and graphs, with symbolic dimensions.

Frontends produce it and nothing after the frontend knows the source format. A node keeps the
op vocabulary of its source (``op_type`` + ``domain`` + the opset of that domain) because the
geometry layer is what gives ops meaning; attributes are plain Python values (and nested
:class:`Graph` objects for control flow bodies).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from walle_core.ir.dtypes import DType

Dim = int | str | None  # int: fixed; str: symbolic (named); None: unknown


@dataclass(frozen=True)
class TensorType:
    """Element type plus shape; ``shape is None`` when even the rank is unknown."""

    dtype: DType
    shape: tuple[Dim, ...] | None

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.dtype}[?]"
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"


@dataclass(eq=False)
class Value:
    """One SSA value; ``const`` holds the data of initializers and folded constants."""

    name: str
    type: TensorType | None = None
    const: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Value({self.name!r}, {self.type})"


@dataclass(eq=False)
class Node:
    """One operation; ``inputs`` has ``None`` where an optional input is omitted."""

    op_type: str
    inputs: list[Value | None]
    outputs: list[Value]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""
    name: str = ""

    def subgraphs(self) -> list[Graph]:
        found: list[Graph] = []
        for attr in self.attrs.values():
            if isinstance(attr, Graph):
                found.append(attr)
            elif isinstance(attr, list):
                found.extend(a for a in attr if isinstance(a, Graph))
        return found


@dataclass(eq=False)
class Graph:
    """A function of its inputs; ``opsets`` maps domain ("" = ai.onnx) to version."""

    name: str
    inputs: list[Value]
    outputs: list[Value]
    nodes: list[Node]
    initializers: list[Value] = field(default_factory=list)
    opsets: dict[str, int] = field(default_factory=dict)
    doc: str = ""

    def opset(self, domain: str) -> int:
        return self.opsets.get(domain, self.opsets.get("ai.onnx", 0) if domain == "" else 1)

    def walk(self) -> list[Node]:
        """Every node, including those inside control-flow bodies."""
        found: list[Node] = []
        for node in self.nodes:
            found.append(node)
            for sub in node.subgraphs():
                found.extend(sub.walk())
        return found

    def op_histogram(self) -> Counter[str]:
        return Counter(
            (f"{n.domain}::" if n.domain not in ("", "ai.onnx") else "") + n.op_type
            for n in self.walk()
        )

    def parameter_count(self) -> int:
        count = sum(int(v.const.size) for v in self.initializers if v.const is not None)
        for node in self.walk():
            if node.op_type == "Constant":
                value = node.attrs.get("value")
                if isinstance(value, np.ndarray):
                    count += int(value.size)
        return count

    def real_inputs(self) -> list[Value]:
        """Inputs a caller must feed (initializer-backed inputs have defaults)."""
        return [v for v in self.inputs if v.const is None]
