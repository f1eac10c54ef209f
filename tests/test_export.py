"""``vcreg export`` and ``vcreg.models.load_encoder``: a bit-exact round trip of a trained run."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from vcreg import independence as ind
from vcreg.cli import main
from vcreg.models import load_encoder, read_export_config
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


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export_run")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    res = CliRunner().invoke(
        main, ["train", "-c", str(cfg), "--out", str(tmp / "run"), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    return tmp / "run"


def test_export_round_trips_bit_exactly(run, tmp_path):
    out = tmp_path / "enc.safetensors"
    res = CliRunner().invoke(main, ["export", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file() and (tmp_path / "enc.json").is_file()
    _, model, state, bundle = load_run(run)
    enc = load_encoder(out)
    assert not enc.training
    ref = {k[len("encoder.") :]: v for k, v in state["model"].items() if k.startswith("encoder.")}
    got = enc.state_dict()
    assert got.keys() == ref.keys()
    for k, v in ref.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v), k
    x = bundle.test.tensors[0][:32]
    with torch.no_grad():
        assert torch.equal(enc(x), model.encoder.eval()(x))
    meta = json.loads((tmp_path / "enc.json").read_text())
    assert meta == read_export_config(out)
    assert meta["encoder"] == {
        "name": "cnn1d",
        "input_shape": list(bundle.input_shape),
        "repr_dim": 8,
        "options": {"channels": [4, 8, 8]},
    }
    assert meta["source"]["checkpoint_sha256"] == state["sha256"]
    assert meta["projector"] is None
    assert not any(k.startswith("projector.") for k in load_file(out))


def test_export_with_projector_is_a_whole_model_state(run, tmp_path):
    out = tmp_path / "model.safetensors"
    res = CliRunner().invoke(main, ["export", str(run), "--out", str(out), "--projector"])
    assert res.exit_code == 0, res.output
    _, model, _, _ = load_run(run)
    tensors = load_file(out)
    assert tensors.keys() == model.state_dict().keys()
    model.load_state_dict(tensors, strict=True)
    assert read_export_config(out)["projector"]["spec"] == "16-16"


def test_export_refuses_to_overwrite(run, tmp_path):
    out = tmp_path / "enc.safetensors"
    runner = CliRunner()
    assert runner.invoke(main, ["export", str(run), "--out", str(out)]).exit_code == 0
    before = out.read_bytes()
    res = runner.invoke(main, ["export", str(run), "--out", str(out)])
    assert res.exit_code != 0 and "refusing to overwrite" in res.output
    assert out.read_bytes() == before
    res = runner.invoke(main, ["export", str(run), "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output


def test_bad_inputs_have_clear_errors(run, tmp_path):
    res = CliRunner().invoke(main, ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "e")])
    assert res.exit_code != 0 and "not found" in res.output
    with pytest.raises(FileNotFoundError, match="not found"):
        load_encoder(tmp_path / "missing.safetensors")
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="not a vcreg export"):
        load_encoder(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="cannot read"):
        load_encoder(junk)


def test_evaluate_and_measure_accept_an_exported_encoder(run, tmp_path):
    import numpy as np

    from vcreg.evaluation import encode

    out = tmp_path / "enc.safetensors"
    runner = CliRunner()
    assert runner.invoke(main, ["export", str(run), "--out", str(out)]).exit_code == 0
    # the run's MNIST-1D had 400 signals: a count is the user's to give, never the file's
    res = runner.invoke(main, ["evaluate", str(out), "--no-ood", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "ignoring the file's data.options.num_samples=400" in res.output
    res = runner.invoke(
        main,
        ["evaluate", str(out), "--no-ood", "--device", "cpu", "--overwrite"]
        + ["--data-samples", "400"],
    )
    assert res.exit_code == 0, res.output
    assert "ignoring" not in res.output
    ev = json.loads((tmp_path / "enc.eval.json").read_text())
    res = runner.invoke(main, ["evaluate", str(run), "--no-ood", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    ref = json.loads((run / "eval.json").read_text())
    # the same encoder on the same data with the same settings: the same measurements
    assert ev["in_domain_acc"] == ref["in_domain_acc"]
    assert ev["independence"] == ref["independence"]
    assert ev["source"]["checkpoint_sha256"] == ref["checkpoint"]["sha256"]
    res = runner.invoke(main, ["evaluate", str(out), "--no-ood", "--device", "cpu"])
    assert res.exit_code != 0 and "--overwrite" in res.output
    # measure: the run's test set, encoded by the exported encoder
    mdir = tmp_path / "measured"
    res = runner.invoke(
        main,
        [
            "measure",
            str(out),
            "--out",
            str(mdir),
            "--no-dhsic",
            "--no-progress",
            "--labels",
            "labels",
            "--data-samples",
            "400",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((mdir / "independence.json").read_text())
    _, model, _, bundle = load_run(run)
    z = encode(model.encoder, bundle.test.tensors[0], 256, torch.device("cpu")).double().numpy()
    assert report["input"]["n_samples_total"] == len(z) == len(bundle.test)
    assert report["input"]["n_features"] == 8
    assert report["labels"]["n_classes"] == len(np.unique(bundle.test.tensors[1].numpy()))
    np.testing.assert_allclose(
        np.load(mdir / "pairwise_hsic.npy"), ind.pairwise_hsic(z, normalized=False), rtol=1e-9
    )


def test_a_config_yaml_that_disagrees_with_the_checkpoint_is_named(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "eval.json").unlink(missing_ok=True)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cfg["optimizer"]["lr"] = 0.5
    cfg["epochs"] = 7
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    runner = CliRunner()
    res = runner.invoke(main, ["export", str(copy), "--out", str(tmp_path / "e.safetensors")])
    assert res.exit_code == 0, res.output
    assert (
        "config.yaml disagrees with the config stored in the checkpoint at epochs, " in res.output
    )
    assert "optimizer.lr (" in res.output and "using the checkpoint's" in res.output
    # the export and the evaluation use the checkpoint's config
    assert read_export_config(tmp_path / "e.safetensors")["train_config"]["optimizer"]["lr"] == 3e-3
    res = runner.invoke(main, ["evaluate", str(copy), "--no-ood", "--device", "cpu"])
    assert res.exit_code == 0 and "optimizer.lr" in res.output, res.output
    (copy / "config.yaml").write_text("epochs: [unclosed")
    res = runner.invoke(main, ["evaluate", str(copy), "--no-ood", "--overwrite"])
    assert res.exit_code == 0 and "config.yaml is not a valid config" in res.output, res.output
