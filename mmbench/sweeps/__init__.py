"""Sweeps: sweep files and the command-line override grammar (``files``, ``overrides``), executors (inline, local,
SLURM through submitit: ``executors``) and submission, status and cancelling (``submission``).

``from mmbench.sweeps import load_sweep`` (the flat layout's module) still works for this release, with a
DeprecationWarning: import from ``mmbench.sweeps.files``.
"""

from mmbench._moved import forward_to

__getattr__ = forward_to("mmbench.sweeps", "mmbench.sweeps.files")
