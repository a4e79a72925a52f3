"""Training: the Trainer (network + twin side by side), datasets, the CUDA-graph step, progress output.
Imports only wcntk.core.
"""
