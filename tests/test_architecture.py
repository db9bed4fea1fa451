"""The import direction the folders promise: slm imports neither dicom_node nor training, training does not
import dicom_node (dicom_node may import both).

Every import statement counts, wherever it stands: inside a function, under `if TYPE_CHECKING:`, relative
ones resolved, and importlib.import_module/__import__ with a literal name. Source is parsed with `ast`.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

from tests.support.paths import ROOT

# package -> the packages it must not import
FORBIDDEN = {"slm": {"dicom_node", "training"}, "training": {"dicom_node"}, "dicom_node": set()}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST, package: str) -> Iterator[tuple[ast.AST, str]]:
    """(statement, absolute module name) for every import in the tree; `package` resolves relative ones."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from ..y import z: counted from the module's own package
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                yield node, f"{base}.{node.module}" if node.module else base
            else:
                yield node, node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if function in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node, node.args[0].value


def violations(root: Path) -> list[str]:
    """`module (file:line): statement` for each import against the direction, in the packages under root."""
    found = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            own_package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for statement, name in imports(tree, own_package):
                if name.split(".")[0] in forbidden:
                    where = f"{path.relative_to(root).as_posix()}:{statement.lineno}"
                    found.append(f"{module} ({where}): {ast.unparse(statement)}")
    return found


def test_slm_and_training_import_nothing_downstream():
    found = violations(ROOT)
    assert not found, "imports against the direction:\n" + "\n".join(found)


def write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


def test_the_checker_names_every_import_against_the_direction_and_nothing_else(tmp_path):
    write(tmp_path, "slm/__init__.py", "")
    write(tmp_path, "slm/tasks.py", "import torch\n")
    write(tmp_path, "slm/engine.py", "from slm.tasks import TASKS\nfrom . import tasks\nfrom .tasks import TASKS\n")
    write(tmp_path, "slm/harmonizer.py", """\
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from dicom_node.config import Settings


        def default():
            import training.train as trainer
            return trainer
        """)
    write(tmp_path, "slm/rules/__init__.py", "from ..tasks import TASKS\n")
    write(tmp_path, "slm/rules/vendors.py", "import importlib\nstore = importlib.import_module('dicom_node.store')\n")
    write(tmp_path, "training/__init__.py", "")
    write(tmp_path, "training/data.py", "from slm.tasks import TASKS\n")
    write(tmp_path, "training/retrain.py", "from dicom_node.models import registry\n")
    write(tmp_path, "dicom_node/node.py", "import slm.engine\nfrom training.retrain import retrain\n")

    assert violations(tmp_path) == [
        "slm.harmonizer (slm/harmonizer.py:4): from dicom_node.config import Settings",
        "slm.harmonizer (slm/harmonizer.py:8): import training.train as trainer",
        "slm.rules.vendors (slm/rules/vendors.py:2): importlib.import_module('dicom_node.store')",
        "training.retrain (training/retrain.py:1): from dicom_node.models import registry",
    ]


def test_the_readme_layout_names_folders_and_modules_that_exist():
    """README's Layout table: every folder it names exists, and every module it names is in that folder."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) >= 10
    for where, job in rows:
        folders = [name for name in re.findall(r"`([^`]+)`", where) if name.endswith("/")]
        for folder in folders:
            assert (ROOT / folder).is_dir(), folder
        for module in re.findall(r"`([\w/]+\.py)`", job):
            places = [ROOT / module] if "/" in module else [ROOT / folder / module for folder in folders]
            assert any(place.is_file() for place in places), (where, module)
