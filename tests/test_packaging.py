"""Packaging: pyproject.toml declares every third-party import, its console scripts resolve, the
installed package runs from any directory, there is one pytest config, and the library's parts
import only downwards."""
import ast
import importlib
import importlib.metadata
import json
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


def inherit_site_packages(python: str) -> None:
    """Give the venv of `python` this interpreter's third-party packages (torch, hydra, …): a .pth
    file naming each site-packages dir on sys.path. (`venv --system-site-packages` would give the
    *base* interpreter's: from inside a venv, not the packages of the venv running the tests.) The
    named dirs' own .pth files are not run, so an editable wcntk there stays out of the venv."""
    own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    dirs = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
    (Path(own) / "outer_site_packages.pth").write_text("".join(f"{d}\n" for d in dirs))


@pytest.mark.slow
def test_a_built_wheel_runs_without_the_checkout(tmp_path):
    """The wheel carries the configs (wcntk/conf): installed into a fresh venv and started from a
    directory outside the checkout, `python -m wcntk` runs, and the record knows no checkout."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("wcntk-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    inherit_site_packages(python)
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
                    str(wheel)], check=True, capture_output=True, timeout=300)   # the outer wcntk is no wheel
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    (tmp_path / "elsewhere").mkdir()
    proc = subprocess.run([python, "-m", "wcntk", "debug=default", "dataset=digits", "steps=2",
                           f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path / "elsewhere", env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["provenance"]["git_commit"] is None
    where = subprocess.run([python, "-c", "import wcntk; print(wcntk.__file__)"], cwd=tmp_path / "elsewhere",
                           env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(tmp_path / "venv"))


@pytest.mark.slow  # a fresh interpreter (imports torch: ~4 s)
def test_the_public_api_resolves_every_name_lazily():
    code = ("import sys, wcntk; assert 'torch' not in sys.modules; "
            "missing = [n for n in wcntk.__all__ if getattr(wcntk, n, None) is None]; "
            "assert not missing, missing; print(len(wcntk.__all__))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and int(proc.stdout) >= 20, proc.stderr
    import wcntk
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        wcntk.no_such_name  # noqa: B018


def test_the_readme_notebook_example_runs_through_the_public_api():
    import torch

    import wcntk
    model = wcntk.build_model(wcntk.ModelConfig(width=16, activation="erf"), (6,), 3, seed=0)
    f, theta0 = wcntk.functional(model), wcntk.params_of(model)
    x = torch.randn(4, 6)
    assert wcntk.empirical_ntk(f, theta0, x).shape == (4, 3, 4, 3)
    assert set(wcntk.derivative_correlations(f, theta0, x, lr=1.0)) == {"C02", "C03", "C11"}
    assert wcntk.LinearizedModel(f, theta0)(theta0, x).shape == (4, 3)


def module_imports(path: Path) -> set[str]:
    """The wcntk modules a module imports (dotted, relative imports resolved, lazy ones too)."""
    own = ["wcntk", *path.relative_to(ROOT / "wcntk").with_suffix("").parts]
    package = own[:-1] if own[-1] != "__init__" else own[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m in MODULES}


MODULES = {".".join(["wcntk", *p.relative_to(ROOT / "wcntk").with_suffix("").parts]).removesuffix(".__init__")
           for p in (ROOT / "wcntk").rglob("*.py")}


def test_no_import_circle_in_the_package():
    """Module-level imports between wcntk's modules form no cycle (a package imports its
    __init__, which counts)."""
    graph = {".".join(["wcntk", *p.relative_to(ROOT / "wcntk").with_suffix("").parts]).removesuffix(
        ".__init__"): module_imports(p) for p in (ROOT / "wcntk").rglob("*.py")}
    assert "wcntk.core.resnet" in graph["wcntk.core.models"]
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, " → ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def readme_python_block() -> str:
    """The code block of README.md's "From Python" section, as written."""
    section = (ROOT / "README.md").read_text().split("## From Python", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_the_readme_python_block_runs_twice_in_a_fresh_directory(tmp_path):
    """README "From Python", top to bottom, in an empty directory, then again: both end without a
    traceback, the second keeps the finished runs, and the report reads them."""
    (tmp_path / "block.py").write_text(readme_python_block())
    env = os.environ | {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
                        "PYTHONWARNINGS": "error::RuntimeWarning"}   # a one-width report's plots warned
    for attempt in ("first", "second"):
        proc = subprocess.run([sys.executable, "block.py"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (attempt, proc.stderr)
    assert proc.stdout.count("wcntk: skipped (already ok)") == 2, proc.stdout
    runs = (tmp_path / "outputs" / "notebook" / "report" / "runs.csv").read_text().splitlines()
    assert len(runs) == 3 and all(",ok," in line for line in runs[1:]), runs


def test_make_report_on_a_missing_dir_says_so_in_one_line(tmp_path):
    import wcntk
    with pytest.raises(FileNotFoundError) as err:
        wcntk.make_report(tmp_path / "outputs" / "sweeps" / "width_scaling")
    assert str(err.value) == (f"{tmp_path}/outputs/sweeps/width_scaling is not a directory: a report reads "
                              f"the summary.json files below a sweep's dir (or a dir of runs)")
