"""The metric registry: every logged metric once, metrics.csv's columns in their order, and the
lists the trainer, the report, the dashboard and the closing line take from it."""
from wcntk.analysis import dashboard, report
from wcntk.core import metric_registry as registry
from wcntk.run import outcome


def test_each_metric_once_with_a_known_family_split_and_stage():
    assert len(set(registry.METRIC_NAMES)) == len(registry.METRICS)
    for m in registry.METRICS:
        assert m.family in registry.FAMILIES and m.split in registry.SPLITS
        assert m.cadence in ("log", "corr") and m.fit in (None, "final", "initial")
        assert (m.fit is None) == (m.rank is None)
    assert sorted(m.rank for m in registry.FITTED) == list(range(len(registry.FITTED)))


def test_metrics_csv_columns_in_their_order():
    assert registry.METRIC_NAMES == [
        "net/train_loss", "net/train_acc", "net/test_loss", "net/test_acc",
        "twin/train_loss", "twin/train_acc", "twin/test_loss", "twin/test_acc",
        "lin/func_rmse_train", "lin/func_rmse_test", "lin/func_mse_train", "lin/func_mse_test",
        "lin/taylor_rmse_train", "lin/taylor_rmse_test", "lin/loss_gap_train", "lin/loss_gap_test",
        "lin/param_rel_change", "lin/ntk_rel_change", "corr/C02", "corr/C02_max", "corr/C03", "corr/C03_max",
        "corr/C11", "corr/C11_max", "corr/step_ratio_2", "corr/step_ratio_3"]


def test_users_take_their_lists_from_the_registry():
    assert report.DEFAULT_METRICS == (
        "final/lin/func_rmse_test", "final/lin/func_mse_test", "final/lin/taylor_rmse_test",
        "final/lin/param_rel_change", "final/lin/ntk_rel_change", "final/lin/loss_gap_test",
        "initial/corr/C02", "initial/corr/C03", "initial/corr/C11", "initial/corr/step_ratio_2",
        "initial/corr/step_ratio_3")
    assert report.DEVIATIONS == ("final/lin/func_rmse_test", "final/lin/loss_gap_test")
    assert report.CORRELATIONS == ("initial/corr/C02", "initial/corr/C11")
    assert dashboard.FINAL_METRICS == tuple(m.split("/", 1)[1] for m in report.DEFAULT_METRICS[:6])
    assert dashboard.INIT_METRICS == tuple(m.split("/", 1)[1] for m in report.DEFAULT_METRICS[6:])
    assert outcome.HEADLINE_METRICS == ("lin/func_rmse_test", "corr/C02")
