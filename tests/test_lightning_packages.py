"""IndependenceMonitor with `lightning`, with the standalone `pytorch_lightning`, with both.

Each case runs in a fresh interpreter where the other package is made unimportable
(``sys.modules[name] = None``, what Python does for a package that is not installed), then fits a
tiny LightningModule with that package's Trainer for 2 epochs. First, with both blocked, the
import must fail with the install hint.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("lightning")
pytest.importorskip("pytorch_lightning")

SCRIPT = """
import importlib, json, sys
sys.modules["lightning"] = sys.modules["pytorch_lightning"] = None  # neither installed
try:
    import vcreg.integrations.lightning
    neither = "imported"
except ImportError as exc:
    neither = str(exc)
for name in ("lightning", "pytorch_lightning"):
    del sys.modules[name]
for name in {blocked!r}:
    sys.modules[name] = None  # as if not installed
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from vcreg.integrations.lightning import CALLBACK_BASES, IndependenceMonitor

pl = importlib.import_module({package!r})

class M(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(6, 5)

    def training_step(self, batch, i):
        return self.encoder(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

torch.manual_seed(0)
data = DataLoader(TensorDataset(torch.randn(64, 6), torch.zeros(64)), batch_size=16)
mon = IndependenceMonitor(probe=data, samples=32)
trainer = pl.Trainer(
    max_epochs=2, callbacks=[mon], logger=False, enable_checkpointing=False,
    enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
)
trainer.fit(M(), data)
print(json.dumps({{
    "bases": [b.__module__.split(".")[0] for b in CALLBACK_BASES],
    "epochs": [h["epoch"] for h in mon.history],
    "logged": "independence/nhsic_mean" in trainer.callback_metrics,
    "neither": neither,
}}))
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )


# one interpreter per case costs ~10-30 s (torch + Lightning imports): the standalone package,
# the case this test exists for, runs by default; `lightning` alone and both together are slow
# (test_lightning.py covers `lightning` in-process too)
@pytest.mark.parametrize(
    ("package", "blocked", "bases"),
    [
        ("pytorch_lightning", ["lightning"], ["pytorch_lightning"]),
        pytest.param(
            "lightning.pytorch", ["pytorch_lightning"], ["lightning"], marks=pytest.mark.slow
        ),
        pytest.param(
            "pytorch_lightning", [], ["lightning", "pytorch_lightning"], marks=pytest.mark.slow
        ),
    ],
)
def test_callback_works_with_the_installed_package(package, blocked, bases):
    out = _run(SCRIPT.format(package=package, blocked=blocked))
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    neither = got.pop("neither")  # neither package: a clear ImportError naming both and the fix
    assert 'pip install "vcreg[lightning]"' in neither and "pytorch_lightning" in neither
    assert got == {"bases": bases, "epochs": [0, 1], "logged": True}
