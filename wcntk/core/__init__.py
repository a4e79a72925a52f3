"""The measurement core: networks, θ₀, losses, the linearized twin, NTK, derivative correlations,
deviation metrics, and the registry of every logged metric. Pure torch; never imports Hydra or the
layers above.
"""
