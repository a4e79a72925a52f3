"""wcntk: weak correlations and the linearization of wide networks (see README.md)."""
import warnings

# torch's forward-mode AD loads its decompositions through torch.jit.script on first use,
# which warns about torch's own internals on every run; not actionable for our users.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
