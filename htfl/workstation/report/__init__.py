"""``htfl report``: what a run recorded in ``results/<id>/``, drawn.

``load`` reads a results dir (only the columns it draws), ``series`` derives every number
shown (the mean accuracy by :mod:`htfl.workstation.accuracy`, the run's own definition),
``figures`` draws them with matplotlib, ``page`` writes the self-contained HTML page and
``build`` puts it together, atomically.
"""

from htfl.workstation.report.build import render
from htfl.workstation.report.load import ReportError

__all__ = ["ReportError", "render"]
