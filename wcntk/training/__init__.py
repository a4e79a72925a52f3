"""Training: the Trainer (network + twin side by side), its settings and their checks (config, a
leaf), datasets, the CUDA-graph step, progress output. Imports only wcntk.core.
"""
