"""wcntk: weak correlations and the linearization of wide networks (see README.md).

The public API, for notebooks and scripts (README, "Python API"; docs/api.md)::

    import wcntk
    model = wcntk.build_model(wcntk.ModelConfig(width=512), (784,), 10, seed=0)
    f, theta0 = wcntk.functional(model), wcntk.params_of(model)
    ntk = wcntk.empirical_ntk(f, theta0, x)                 # [n, k, n, k]
    corr = wcntk.derivative_correlations(f, theta0, x, lr=1.0)
    record = wcntk.run_job({"width": 64, "steps": 100, "wandb": {"mode": "disabled"}}, "runs/a")
    record.status, record.final["corr/C02"]                 # a wcntk.Record (wcntk.Status.OK, …)
    assert wcntk.load_record("runs/a/summary.json") == record
    wcntk.make_report("outputs/sweeps/width_scaling")

Names are imported on first use (PEP 562), so `import wcntk` stays cheap and the record readers
and the report never import torch through it.
"""
import importlib
import warnings

# torch's forward-mode AD loads its decompositions through torch.jit.script on first use,
# which warns about torch's own internals on every run; not actionable for our users.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

# public name -> the module that defines it
_EXPORTS = {
    # networks and θ₀
    "ModelConfig": "wcntk.core.layers", "build_model": "wcntk.core.models",
    "functional": "wcntk.core.layers", "params_of": "wcntk.core.layers",
    # the measurements
    "LinearizedModel": "wcntk.core.linearization", "empirical_ntk": "wcntk.core.ntk",
    "derivative_correlations": "wcntk.core.correlations", "implementation_for": "wcntk.core.implementations",
    "METRIC_NAMES": "wcntk.core.metric_registry",
    # training
    "DataConfig": "wcntk.training.data", "load_dataset": "wcntk.training.data",
    "OptimizerConfig": "wcntk.training.config", "TrainConfig": "wcntk.training.config",
    "Trainer": "wcntk.training.trainer",
    # a recorded run and its record
    "RunConfig": "wcntk.run.config", "run_job": "wcntk.run.job",
    "Record": "wcntk.run.record", "Status": "wcntk.core.status", "load_record": "wcntk.run.record",
    "read_record": "wcntk.run.record",
    # the sweep report
    "make_report": "wcntk.analysis.report", "collect": "wcntk.analysis.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'wcntk' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
