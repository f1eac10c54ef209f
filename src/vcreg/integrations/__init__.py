"""Integrations with training frameworks, each an optional extra (``pip install "vcreg[NAME]"``).

- :mod:`vcreg.integrations.lightning`: ``IndependenceMonitor``, a PyTorch Lightning callback.

Nothing here is imported by ``import vcreg``.
"""
