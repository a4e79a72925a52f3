"""wcntk.analysis.dashboard offline: the W&B workspace specification and the not-logged-in exit."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dashboard():
    """wcntk.analysis.dashboard, imported by the test worker that runs these tests only (it loads
    wandb-workspaces and pydantic: about 1.5 s)."""
    from wcntk.analysis import dashboard
    return dashboard


def spec(workspace) -> dict:
    """The JSON the W&B server would receive for this view."""
    return json.loads(workspace._to_model().model_dump_json(by_alias=True, exclude_none=True))


def panels(workspace, section: str) -> list:
    return next(s for s in workspace.sections if s.name == section).panels


def test_workspace_spec_log_axes_and_metric_keys(dashboard):
    w = dashboard.build_workspace("ent", "proj", "lr_scaling", "| setting | slope |", width_key="width")
    assert (w.entity, w.project, w.name) == ("ent", "proj", "wcntk lr_scaling")
    assert [s.name for s in w.sections] == ["the claim, by network", "width scaling: at init",
                                            "width scaling: final", "deviation vs correlation",
                                            "deviation vs step", "slopes"]
    data = spec(w)
    sections = {s["name"]: s["panels"] for s in data["spec"]["section"]["panelBankConfig"]["sections"]}
    init = [p["config"] for p in sections["width scaling: at init"]]
    assert [c["yAxis"] for c in init] == [f"summary:initial/{m}" for m in dashboard.INIT_METRICS]
    final = [p["config"] for p in sections["width scaling: final"]]
    assert [c["yAxis"] for c in final] == [f"summary:{m}" for m in dashboard.FINAL_METRICS]
    for c in init + final:
        assert c["xAxis"] == "config:width.value" and c["xAxisLogScale"] and c["yAxisLogScale"]
    dev = [p["config"] for p in sections["deviation vs correlation"]]
    pairs = {(f"summary:initial/{c}", f"summary:{d}")
             for d in dashboard.DEVIATIONS for c in dashboard.CORRELATIONS}
    assert {(c["xAxis"], c["yAxis"]) for c in dev} == pairs
    assert all(c["xAxisLogScale"] and c["yAxisLogScale"] for c in dev)
    steps = sections["deviation vs step"]
    assert {p["viewType"] for p in steps} == {"Run History Line Plot"}
    assert [p["config"]["metrics"] for p in steps] == [[m] for m in dashboard.TRAJECTORIES]
    assert all(p["config"]["groupBy"] == "width.value" and p["config"]["yLogScale"] for p in steps)
    assert all(p["config"]["xAxis"] == "step" for p in steps)  # the runner's step metric, not W&B's _step
    (md,) = sections["slopes"]
    assert md["viewType"] == "Markdown Panel" and md["config"]["value"] == "| setting | slope |"
    (runset,) = data["spec"]["section"]["runSets"]
    assert runset["filters"]["filters"] == [{"key": {"section": "run", "name": "group"}, "op": "=",
                                             "value": "lr_scaling", "disabled": False}]
    # runs grouped by network; the claim's section: the correlations and the deviation vs width,
    # and the deviation vs each correlation
    assert runset["grouping"] == [{"section": "config", "name": "model.value.kind"}]
    claim = [(p["config"]["xAxis"], p["config"]["yAxis"]) for p in sections["the claim, by network"]]
    assert claim == [("config:width.value", "summary:initial/corr/C02"),
                     ("config:width.value", "summary:initial/corr/C11"),
                     ("config:width.value", "summary:lin/func_rmse_test"),
                     ("summary:initial/corr/C02", "summary:lin/func_rmse_test"),
                     ("summary:initial/corr/C11", "summary:lin/func_rmse_test")]


def test_nested_width_key(dashboard):
    w = dashboard.build_workspace("e", "p", "g", "", width_key="model.width", name="mine")
    assert w.name == "mine"
    cfg = spec(w)["spec"]["section"]["panelBankConfig"]["sections"][0]["panels"][0]["config"]
    assert cfg["xAxis"] == "config:model.value.width"


def test_slope_markdown_from_report_dir(tmp_path, dashboard):
    assert "python -m wcntk.analysis.report" in dashboard.slope_markdown(None)
    with pytest.raises(FileNotFoundError):
        dashboard.slope_markdown(tmp_path)
    (tmp_path / "slopes.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    (tmp_path / "deviation_vs_correlation.md").write_text("| c |\n|---|\n| 3 |\n")
    (tmp_path / "claim.md").write_text("| network | verdict |\n|---|---|\n| cnn | consistent |\n")
    md = dashboard.slope_markdown(tmp_path)
    assert md.index("| cnn | consistent |") < md.index("| 1 | 2 |")   # the claim first
    assert "| 1 | 2 |" in md and "| 3 |" in md and "docs/theory.md" in md and "DESIGN" not in md


@pytest.mark.slow
def test_cli_without_login_fails_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path / "cfg"), WANDB_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "wcntk.analysis.dashboard", "--entity", "e",
                           "--project", "p", "--group", "g"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not logged in to W&B" in lines[0] and "wandb login" in lines[0]
