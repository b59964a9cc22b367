"""Layers one way (issue 14): a module imports only from its own layer or the layers below it.

Read from the top: an entry point runs the engine, the engine runs stages, stages call the domain
packages, which build on the core models and geometry, which build on the base. Every import in
``prep`` counts, also those inside functions and under ``TYPE_CHECKING`` (ast, nothing executed).

    layer           packages / modules
    entry           prep.cli, prep.app, prep.hydra_callbacks
    engine          prep.runner, prep.asset_checks, prep.config.validate (checks that open models)
    stages          prep.stages (one module per stage; no stage module imports another)
    stage contract  prep.pipeline (registry, StageContext, manifests), prep.resume
    domain          prep.track, prep.vision, prep.export, prep.report, prep.importers,
                    prep.datasets, prep.download
    core            prep.models, prep.geometry, prep.render
    base            prep.config, prep.errors, prep.progress, prep.subject, prep.io, prep.logger,
                    prep.wandb_runs, prep.assets, prep (its version)

A module belongs to the layer of the longest entry that names it. Helpers shared by stages live
below them (``SubjectDir``, ``prep.vision.landmarks.files``, ``prep.track.bfm_inputs``, ...).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS = (
    ("entry", ("prep.cli", "prep.app", "prep.hydra_callbacks")),
    ("engine", ("prep.runner", "prep.asset_checks", "prep.config.validate")),
    ("stages", ("prep.stages",)),
    ("stage contract", ("prep.pipeline", "prep.resume")),
    (
        "domain",
        (
            "prep.track",
            "prep.vision",
            "prep.export",
            "prep.report",
            "prep.importers",
            "prep.datasets",
            "prep.download",
        ),
    ),
    ("core", ("prep.models", "prep.geometry", "prep.render")),
    (
        "base",
        (
            "prep.config",
            "prep.errors",
            "prep.progress",
            "prep.subject",
            "prep.io",
            "prep.logger",
            "prep.wandb_runs",
            "prep.assets",
            "prep",
        ),
    ),
)


def layer_of(module: str) -> int:
    """Index in `LAYERS` (0 = top) of the longest entry that is `module` or a package above it."""
    best, depth = None, -1
    for k, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and name.count(".") > depth:
                best, depth = k, name.count(".")
    if best is None:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS")
    return best


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under ``root/prep``."""
    out = {}
    for path in sorted((root / "prep").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The ``prep`` modules `module` imports (a name imported from a package counts as its
    submodule when there is one)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in known else base)
    return {m for m in out if m == "prep" or m.startswith("prep.")}


def violations(root: Path = ROOT) -> list[str]:
    known = modules(root)
    found = []
    for module, path in known.items():
        here = layer_of(module)
        for target in sorted(imports(module, path, known)):
            there = layer_of(target)
            if there < here:
                found.append(f"{module} ({LAYERS[here][0]}) imports {target} ({LAYERS[there][0]})")
            stage = module.startswith("prep.stages.") and target.startswith("prep.stages.")
            if stage and target != module:
                found.append(f"stage module {module} imports stage module {target}")
    return found


def test_layers_import_one_way():
    found = violations()
    assert not found, "imports against the layers (see this test's docstring):\n" + "\n".join(found)


def test_the_walk_sees_upward_and_stage_to_stage_imports(tmp_path):
    """An upward import, hidden in a function or under TYPE_CHECKING, and a stage importing
    another stage are caught; imports down and within a layer pass."""
    files = {
        "prep/__init__.py": "",
        "prep/models/__init__.py": "",
        "prep/models/a.py": "def f():\n    from prep.stages.crop import run\n",
        "prep/models/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from prep.track import fit\n",
        "prep/models/c.py": "from prep.models import a\nfrom prep.io.files import load_npz\n",
        "prep/stages/__init__.py": "",
        "prep/stages/crop.py": "from prep.stages import landmarks\nfrom prep.pipeline import X\n",
        "prep/stages/landmarks.py": "import prep.vision.frames\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = violations(tmp_path)
    assert found == [
        "prep.models.a (core) imports prep.stages.crop (stages)",
        "prep.models.b (core) imports prep.track (domain)",
        "stage module prep.stages.crop imports stage module prep.stages.landmarks",
    ]
