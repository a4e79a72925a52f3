"""The run layer: the config schema and its checks (config, capacity), the command line's checks
as a Hydra callback and the job Hydra starts (cli_checks, entry; the job validates its own
config, so no state passes between them), one recorded job: run_job, the one run path (job,
rundir), its
record (record: summary.json's one reader and writer), lifecycle and exit codes, provenance,
W&B/CSV logs (tracking), sweep outcome. May use Hydra/OmegaConf.
"""
