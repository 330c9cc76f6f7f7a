"""docs/plugins/hooks.md documents every hook with its exact signature (as datasette does)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from walle_core.plugin import hookspecs

HOOKS_DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins" / "hooks.md"
SPECS = hookspecs.hook_names()


def normalise(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("name", SPECS)
def test_every_hook_is_documented_with_its_signature(name: str) -> None:
    doc = HOOKS_DOC.read_text(encoding="utf-8")
    signature = hookspecs.signature_text(name)
    assert f"## {name}" in doc, f"{name} has no section in {HOOKS_DOC.name}"
    assert normalise(signature) in normalise(doc), f"{HOOKS_DOC.name} lacks: {signature}"


def test_doc_mentions_no_hook_that_does_not_exist() -> None:
    documented = re.findall(r"^## (walle_\w+)", HOOKS_DOC.read_text(encoding="utf-8"), re.M)
    assert sorted(documented) == SPECS
