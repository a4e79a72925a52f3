"""The run layer: config schema and validation, one job, its record (summary.json), lifecycle and
signals, provenance, W&B/CSV logs, sweep outcome. May use Hydra/OmegaConf.
"""
