"""Packaging: pyproject.toml declares every third-party import, its console scripts resolve, the
installed package runs from any directory, there is one pytest config, and the library's parts
import only downwards."""
import ast
import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def top_level_imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in a file, wherever they appear (lazy ones too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


# The library's parts, bottom first: a module may import its own part and the parts below it.
PARTS = ("core", "training", "run", "analysis")


def imported_parts(path: Path) -> set[str]:
    """The wcntk parts a module imports (relative or absolute, lazy imports included)."""
    own = path.relative_to(ROOT / "wcntk").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = own[:len(own) - node.level]           # the package the dots lead to
            dotted = [*base, *(node.module or "").split(".")]
            found |= {dotted[0]} if dotted and dotted[0] in PARTS else set()
        elif isinstance(node, ast.ImportFrom | ast.Import):
            for name in [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]:
                parts = (name or "").split(".")
                if parts[0] == "wcntk" and len(parts) > 1 and parts[1] in PARTS:
                    found.add(parts[1])
    return found


def test_parts_import_only_downwards_and_the_core_never_hydra():
    checked = 0
    for path in (ROOT / "wcntk").rglob("*.py"):
        own = path.relative_to(ROOT / "wcntk").parts
        if own[0] not in PARTS:
            continue
        above = set(PARTS[PARTS.index(own[0]) + 1:])
        upward = imported_parts(path) & above
        assert not upward, f"{path.relative_to(ROOT)} imports {upward}"
        if own[0] in ("core", "training"):
            assert not top_level_imports(path) & {"hydra", "omegaconf"}, path
        checked += 1
    assert checked > 30


def test_every_third_party_import_of_the_package_is_a_declared_dependency():
    declared = {normalize(Requirement(r).name) for r in PROJECT["project"]["dependencies"]}
    sources = [ROOT / "run.py", *(ROOT / "wcntk").rglob("*.py")]
    imported = set().union(*(top_level_imports(p) for p in sources))
    third_party = imported - set(sys.stdlib_module_names) - {"wcntk", "__future__"}
    assert {"torch", "hydra", "wandb"} <= third_party  # the scan sees the package's imports
    providers = importlib.metadata.packages_distributions()
    missing = {module: providers.get(module) for module in third_party
               if not {normalize(d) for d in providers.get(module, [])} & declared}
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"


@pytest.mark.parametrize("script, target", sorted(PROJECT["project"]["scripts"].items()))
def test_console_scripts_resolve_to_a_cli_with_help(script, target, capsys):
    module, function = target.split(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0 and "usage:" in capsys.readouterr().out


def test_one_pytest_config_with_the_slow_marker():
    for other in ("pytest.ini", "tox.ini", "setup.cfg"):
        assert not (ROOT / other).exists() or "[pytest]" not in (ROOT / other).read_text()
    options = PROJECT["tool"]["pytest"]["ini_options"]
    assert any(m.startswith("slow:") for m in options["markers"])
    assert "--durations=" in options["addopts"]


def test_requirements_install_the_package_with_its_tools():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert "-e .[dev]" in lines
    dev = {normalize(Requirement(r).name) for r in PROJECT["project"]["optional-dependencies"]["dev"]}
    assert {"ruff", "wcntk"} <= dev


@pytest.mark.slow
def test_installed_modules_run_from_any_directory(tmp_path):
    """Outside the checkout and without PYTHONPATH, `python -m wcntk.…` imports the installed
    package (`pip install -r requirements.txt`)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    version = importlib.metadata.version("wcntk")
    assert version == PROJECT["project"]["version"]
    proc = subprocess.run([sys.executable, "-m", "wcntk.analysis.report", str(tmp_path / "nothing")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "not a directory" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "wcntk.analysis.wandb_records", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no run-*.wandb file" in proc.stderr, proc.stderr
