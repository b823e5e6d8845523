"""The kit uses huggingface_hub's public API only: no module imports a private (underscored) part of it."""

from __future__ import annotations

import ast
from pathlib import Path

import gpt4allj_kit

PACKAGE = Path(gpt4allj_kit.__file__).parent


def _hub_import_parts(node: ast.AST) -> list[str] | None:
    """The dotted parts and names a huggingface_hub import names after the package, else None."""
    if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "huggingface_hub":
        return [*(node.module or "").split(".")[1:], *(alias.name for alias in node.names)]
    if isinstance(node, ast.Import):
        names = [
            alias.name.split(".") for alias in node.names if alias.name.split(".")[0] == "huggingface_hub"
        ]
        return [part for name in names for part in name[1:]] if names else None
    return None


def test_no_module_imports_a_private_huggingface_hub_module() -> None:
    imports, private = 0, []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "huggingface_hub._" in text:
            private.append(f"{path.relative_to(PACKAGE)}: huggingface_hub._")
        for node in ast.walk(ast.parse(text)):
            parts = _hub_import_parts(node)
            if parts is None:
                continue
            imports += 1
            if any(part.startswith("_") for part in parts):
                private.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert imports > 10  # the scan sees the kit's hub imports
    assert not private, private
