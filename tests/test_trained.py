"""``vcreg measure RUN_DIR`` / ``encoder.safetensors`` (vcreg.trained): the run's data, encoded.

Reference: the test split encoded with a plain loop over the run's encoder, saved with np.save,
read back with vcreg.io and measured with measure_embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from vcreg import independence as ind
from vcreg.cli import main
from vcreg.io import load_array
from vcreg.trained import is_trained_source, load_trained, measure_trained
from vcreg.training import load_run

CFG = {
    "epochs": 1,
    "batch_size": 64,
    "device": "cpu",
    "threads": 1,
    "data": {"name": "mnist1d", "options": {"num_samples": 400, "ood": False}},
    "encoder": {"name": "cnn1d", "repr_dim": 8, "options": {"channels": [4, 8, 8]}},
    "projector": {"spec": "16-16"},
    "optimizer": {"lr": 3e-3},
    "monitor": {"every": 0},
    "evaluation": {"independence_samples": 64, "max_iter": 100},
}
FAST = ["--no-dhsic", "--no-progress", "--method", "exact"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("trained_run")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    res = CliRunner().invoke(
        main, ["train", "-c", str(cfg), "--out", str(tmp / "run"), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    return tmp / "run"


def _measure(*args: str) -> dict:
    res = CliRunner().invoke(main, ["measure", *args])
    assert res.exit_code == 0, res.output
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "independence.json").read_text())


def test_measure_run_folder_equals_the_saved_array(run: Path, tmp_path: Path):
    rep = _measure(str(run), "--out", str(tmp_path / "m"), "--labels", "labels", *FAST)
    _, model, _, bundle = load_run(run)
    x, y = bundle.test.tensors
    with torch.no_grad():
        z = torch.cat([model.encoder(x[i : i + 256]) for i in range(0, len(x), 256)]).numpy()
    np.save(tmp_path / "z.npy", z)
    ref = ind.measure_embeddings(
        load_array(tmp_path / "z.npy").array, y.numpy(), "exact", with_dhsic=False
    )
    assert rep["input"]["n_samples_used"] == len(x) and rep["input"]["split"] == "test"
    assert rep["input"]["trained"]["kind"] == "run"
    for key in ("pairwise_nhsic", "pairwise_hsic", "effective_rank", "feature_std", "labels"):
        assert rep[key] == ref[key], key
    # the exported encoder of the same run, on the same data (which the file never chooses: the
    # run's 400 MNIST-1D signals are asked for with --data-samples), gives the same report
    assert (
        CliRunner().invoke(main, ["export", str(run), "--out", str(tmp_path / "e")]).exit_code == 0
    )
    exp = _measure(
        str(tmp_path / "e.safetensors"), "--out", str(tmp_path / "me"), "--labels", "labels",
        "--data-samples", "400", *FAST,
    )  # fmt: skip
    assert exp["input"]["trained"]["kind"] == "export"
    for key in ("pairwise_nhsic", "pairwise_hsic", "effective_rank", "labels"):
        assert exp[key] == rep[key], key


def test_layer_split_and_sampling(run: Path, tmp_path: Path):
    rep = _measure(
        str(run),
        "--out",
        str(tmp_path / "l"),
        "--layer",
        "body.0",
        "--dataset",
        "train",
        "--max-samples",
        "50",
        *FAST,
    )
    assert rep["input"]["layer"] == "body.0" and rep["input"]["split"] == "train"
    assert rep["input"]["n_features"] == 8 and rep["input"]["n_samples_used"] == 50
    assert rep["notes"][0].startswith("SUBSAMPLED: a uniform random 50 of the")
    trained = load_trained(run)
    assert rep["input"]["rows_seen"] == rep["input"]["n_samples_total"] == len(trained.bundle.train)
    assert rep["input"]["subsampled"]
    again = measure_trained(
        run, "train", layer="body.0", max_samples=50, method="exact", with_dhsic=False, device="cpu"
    )
    assert again["pairwise_nhsic"] == rep["pairwise_nhsic"]  # seeded: the same rows


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layer", "body.9"], "no submodule named 'body.9'"),
        (["--dataset", "validation"], "unknown dataset 'validation'"),
        (["--key", "z"], "--key is for array files"),
        (["--labels", "y.npy"], "--labels labels"),
        (["--data-samples", "400"], "exported encoder (.safetensors) only"),
    ],
)
def test_bad_options_are_clear_errors(run: Path, tmp_path: Path, extra, message):
    res = CliRunner().invoke(
        main, ["measure", str(run), "--out", str(tmp_path / "x"), *FAST, *extra]
    )
    assert res.exit_code != 0 and message in res.output and "Traceback" not in res.output


def test_array_files_refuse_model_options(tmp_path: Path):
    np.save(tmp_path / "z.npy", np.random.default_rng(0).normal(size=(30, 3)))
    res = CliRunner().invoke(main, ["measure", str(tmp_path / "z.npy"), "--layer", "fc"])
    assert res.exit_code != 0 and "need a run folder" in res.output
    assert not is_trained_source(tmp_path / "z.npy") and is_trained_source(tmp_path)


def test_folder_without_checkpoint_is_a_clear_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(
        main, ["measure", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code != 0 and "checkpoint" in res.output and "Traceback" not in res.output


def test_max_samples_far_beyond_the_split_needs_memory_for_the_rows_only(run: Path, tmp_path):
    """`vcreg measure RUN --max-samples 100000000`: the reservoir used to be sized by
    max_samples (51 GB on a 1,000-row split); under an address-space limit of 1 GiB more than
    the process had mapped it must measure the whole split."""
    import subprocess
    import sys

    child = (
        "import resource, sys\n"
        "import matplotlib.pyplot, torch, vcreg.metrics, vcreg.trained\n"  # map the libraries
        "from vcreg.cli import main\n"
        "with open('/proc/self/status') as fh:\n"
        "    size = next(int(l.split()[1]) * 1024 for l in fh if l.startswith('VmSize'))\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, size + 2**30))\n"
        "main(sys.argv[1:])\n"
    )
    out = tmp_path / "m"
    args = [str(run), "--out", str(out), "--max-samples", "100000000", *FAST]
    proc = subprocess.run(
        [sys.executable, "-c", child, "measure", *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-2000:]
    rep = json.loads((out / "independence.json").read_text())
    split = len(load_trained(run).bundle.test)
    assert rep["input"]["n_samples_used"] == rep["input"]["rows_seen"] == split
    assert not rep["input"]["subsampled"]
