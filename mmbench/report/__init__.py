"""The report: run records as frames (``frames``), leaderboards (``leaderboards``), the paper's figures
(``figures``) and the whole report folder (``build``).

``from mmbench.report import build_report`` (the flat layout's module) still works for this release, with a
DeprecationWarning: import from ``mmbench.report.build``.
"""

from mmbench._moved import forward_to

__getattr__ = forward_to("mmbench.report", "mmbench.report.build")
