"""Reproduction of the paper's claims C1–C5 (``vcreg reproduce``).

``run_reproduction(preset="quick", only="C1,C5", out="reports/quick")`` runs the experiments,
caches their work units (an interrupted run resumes), and writes ``report.md``, ``report.html``
(figures inlined) and ``results.json`` (every number, with settings and versions). Verdicts are
computed by :mod:`vcreg.experiments.verdicts` from the measured data.
"""

from __future__ import annotations

from vcreg.experiments.parallel import default_jobs
from vcreg.experiments.presets import CLAIM_IDS, PRESETS, resolve_settings
from vcreg.experiments.runner import EXPERIMENT_MODULES, parse_only, run_reproduction
from vcreg.experiments.verdicts import Verdict

__all__ = [
    "CLAIM_IDS",
    "PRESETS",
    "EXPERIMENT_MODULES",
    "Verdict",
    "default_jobs",
    "parse_only",
    "resolve_settings",
    "run_reproduction",
]
