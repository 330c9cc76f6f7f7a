"""Render the backend plugin template under a new name: ``python render.py NAME DEST``.

Standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

SKELETON = Path(__file__).resolve().parent / "skeleton"
TOKEN = "skeleton"


def render(name: str, dest: Path) -> Path:
    """Copy the skeleton to ``dest`` with ``skeleton``/``Skeleton`` replaced by ``name``."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"backend id {name!r} must be lowercase letters, digits and _")
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty")
    capitalised = "".join(part.capitalize() for part in name.split("_"))
    for source in sorted(SKELETON.rglob("*")):
        if "__pycache__" in source.parts or source.suffix == ".pyc":
            continue
        relative = str(source.relative_to(SKELETON)).replace(TOKEN, name)
        target = dest / relative
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text(encoding="utf-8")
        target.write_text(
            text.replace(TOKEN.capitalize(), capitalised).replace(TOKEN, name), encoding="utf-8"
        )
        shutil.copymode(source, target)
    return dest


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python render.py NAME DEST", file=sys.stderr)
        return 2
    try:
        dest = render(argv[0], Path(argv[1]))
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"rendered walle-backend-{argv[0]} into {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
