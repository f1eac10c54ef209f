"""The estimate covers the whole command (issue #30 item 6): every step that takes time has an
estimate, printed before any work, and each long step shows progress on a terminal.

Timings are not asserted here (benchmarks/bench_measure_estimate.py compares estimate and run
per step); these tests check that the estimate exists for every measured step, comes first,
and follows the options.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vcreg import independence as ind
from vcreg.cli import main
from vcreg.independence import measurement
from vcreg.independence.cost import measure_plan


def _z(n: int = 120, d: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def test_every_measured_step_was_estimated_before_any_work(monkeypatch):
    events = []
    real = measurement.pairwise_hsic_test

    def spy(*args, **kwargs):
        events.append("pairwise")
        return real(*args, **kwargs)

    monkeypatch.setattr(measurement, "pairwise_hsic_test", spy)
    y = np.arange(120) % 3
    rep = ind.measure_embeddings(
        _z(), labels=y, n_permutations=19, on_plan=lambda p: events.append(("plan", p))
    )
    assert events[0][0] == "plan" and events[1] == "pairwise"  # the plan comes first, once
    plan = events[0][1]
    cost = rep["cost"]
    assert set(plan["steps"]) == set(cost["steps_seconds"]) == set(cost["steps_cpu_seconds"])
    assert set(plan["steps"]) == {"pairwise", "dhsic", "health", "labels"}
    assert plan["seconds"] == pytest.approx(sum(plan["steps"].values()))
    assert cost["seconds"] == pytest.approx(sum(cost["steps_seconds"].values()))
    assert plan["n"] == plan["n_total"] == 120 and plan["d"] == 6
    low = ind.measure_embeddings(_z(), method="lowrank", with_dhsic=False)["cost"]
    assert set(low["estimate"]["steps"]) == set(low["steps_seconds"])
    assert set(low["steps_seconds"]) == {"pairwise", "lowrank_accuracy", "health"}


def test_the_plan_follows_the_options():
    base = measure_plan(2048, 512)
    assert base["method"] == "lowrank" and base["steps"]["dhsic"] > base["steps"]["health"] > 0
    more = measure_plan(2048, 512, n_permutations=999)["steps"]["dhsic"]
    stat = measure_plan(2048, 512, test="none")["steps"]["dhsic"]  # the statistic only
    assert 0 < stat < base["steps"]["dhsic"]
    assert (more - stat) / (base["steps"]["dhsic"] - stat) == pytest.approx(999 / 199)
    assert "dhsic" not in measure_plan(2048, 512, with_dhsic=False)["steps"]
    assert measure_plan(300, 512)["method"] == "exact"
    wide = measure_plan(2048, 2048)["steps"]
    assert all(wide[k] > base["steps"][k] for k in ("pairwise", "dhsic", "health"))
    assert measure_plan(2048, 512, cuda=True)["seconds"] < base["seconds"]


def test_cli_prints_the_whole_estimate_first_and_the_time_taken(tmp_path: Path):
    np.save(tmp_path / "z.npy", _z(300, 8))
    res = CliRunner().invoke(
        main, ["measure", str(tmp_path / "z.npy"), "--out", str(tmp_path / "o"),
               "--max-samples", "200", "--permutations", "19"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("WARNING: SUBSAMPLED -- 200 of 300 rows")
    est = lines[1]
    assert est.startswith("estimate: ") and " in all for n = 200, d = 8 " in est
    for step in ("pairwise HSIC + p-values", "dHSIC test", "dead units, mutual dependence",
                 "writing results"):  # fmt: skip
        assert step in est, step
    took = next(ln for ln in lines if ln.startswith("took "))
    for step in ("pairwise", "dhsic", "health", "write"):
        assert f" {step} " in took
    rep = json.loads((tmp_path / "o" / "independence.json").read_text())
    assert "write" not in rep["cost"]["steps_seconds"]  # the file is written before that step ends
    res = CliRunner().invoke(
        main, ["measure", str(tmp_path / "z.npy"), "--out", str(tmp_path / "p"), "--no-dhsic"]
    )
    assert res.exit_code == 0 and res.output.startswith("estimate: ")
    assert "dHSIC test" not in res.output.splitlines()[0]


def test_model_estimate_includes_encoding_and_bars_show_on_request(capsys):
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 6))
    loader = DataLoader(TensorDataset(torch.randn(200, 5), torch.arange(200) % 4), batch_size=20)
    plans = []
    rep = ind.measure_model(
        net, loader, max_samples=120, sample="reservoir", labels=True, n_permutations=19,
        on_plan=plans.append, progress=True,
    )  # fmt: skip
    assert len(plans) == 1
    plan = plans[0]
    assert list(plan["steps"])[0] == "encode" and plan["n"] == 120 and plan["n_total"] == 200
    assert plan["d"] == 6 and plan["steps"]["encode"] >= 0
    assert set(plan["steps"]) == set(rep["cost"]["steps_seconds"])
    err = capsys.readouterr().err
    assert "encoding batches" in err and "measure: pairwise HSIC + p-values (" in err
    assert "steps done" in err
    ind.measure_model(net, loader, max_samples=120, with_dhsic=False)
    assert "encoding batches" not in capsys.readouterr().err  # no bars unless asked
