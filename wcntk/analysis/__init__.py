"""Analysis of finished runs: the sweep report, power-law and asymptotic fits, theory's expected
exponents, the W&B dashboard and .wandb record reader.
"""
