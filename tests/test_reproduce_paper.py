"""The ``paper`` preset (CIFAR-10, ResNet-18, projectors 512-8192), its data checks, ``--set``
overrides and ``--estimate`` (the cost model: FLOPs against a plain formula, work per unit,
output with and without the data)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from vcreg.cli import main as cli
from vcreg.data import write_synthetic_cifar
from vcreg.experiments import resolve_settings, run_reproduction
from vcreg.experiments._training import c2_specs, train_unit
from vcreg.experiments.datafiles import missing_for_units, resolve_ood_sources
from vcreg.experiments.estimate import _count, _workload, estimate_reproduction
from vcreg.experiments.presets import PRESETS, parse_overrides
from vcreg.models import build_model
from vcreg.training import TrainConfig
from vcreg.training.trainer import build_loss

# The paper preset shrunk to seconds on a CPU: a settings override, not another code path.
SMALL = [
    "C2.encoder=smallcnn",
    "C2.repr_dim=8",
    "C2.n_train=256",
    "C2.batch_size=64",
    "C2.optimizer.lr=0.075",  # the preset's rule: 0.3 x batch / 256
    "C2.epochs=2",
    "C2.warmup_epochs=0",
    "C2.widths=[16]",
    "C2.kinds=[trained]",
    "C2.depths=[2]",
    "C2.depth_width=16",
    "C2.controls=[]",
    "C2.n_eval=48",
    "C2.probe_train=256",
    "C2.ood_samples=64",
    "C2.data_options.ood_corruptions=[gaussian_noise]",
    "C2.data_options.ood_severities=[1,5]",
]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    return write_synthetic_cifar(root, n_train=256, n_test=64, corruptions=["gaussian_noise"])


def test_paper_preset_is_the_papers_scale():
    s = resolve_settings("paper", device="cpu")
    c2 = s["C2"]
    assert (c2["dataset"], c2["encoder"], c2["repr_dim"]) == ("cifar10", "resnet18", 512)
    assert min(c2["widths"]) == 512 and max(c2["widths"]) == 8192
    assert set(c2["kinds"]) == {"trained", "frozen", "random_features"}
    assert c2["depths"] == [1, 2, 3]
    assert set(c2["controls"]) == {"nu0", "no_projector", "supervised"}
    assert len(c2["seeds"]) >= 3
    # the hinge is reachable at every width: k <= 2 n, the widest ratio measured at the hinge
    assert max(c2["widths"]) <= 2 * c2["batch_size"]
    assert c2["data_options"]["ood"] is True and c2["optimizer"]["name"] == "lars"
    assert s["C1"] == PRESETS["full"]["C1"] and s["C5"] == PRESETS["full"]["C5"]
    specs = c2_specs(c2)
    widths = {(r.kind, r.width) for r in specs if r.group == "width"}
    assert {w for k, w in widths if k == "random_features"} == set(c2["widths"])
    assert len(specs) == 22 * 3  # 15 width + 2 depth + 5 control configurations, 3 seeds
    cfg = TrainConfig.from_dict(train_unit(specs[0], c2).params["config"])  # a valid config
    assert cfg.optimizer.name == "lars" and cfg.batch_size == 4096


def test_set_overrides_top_level_and_nested_settings():
    o = parse_overrides(
        ["C2.epochs=3", "c2.widths=[16, 32]", "C2.data_options.ood_samples=9"], "paper"
    )
    assert o["C2"]["epochs"] == 3 and o["C2"]["widths"] == [16, 32]
    assert o["C2"]["data_options"] == {**PRESETS["paper"]["C2"]["data_options"], "ood_samples": 9}
    s = resolve_settings("paper", overrides=o, device="cpu")
    assert s["C4"]["train"]["epochs"] == 3  # C3/C4 train on C2's settings
    for bad, msg in [
        ("C2.epochs", "CLAIM.KEY=VALUE"),
        ("C9.x=1", "unknown setting"),
        ("C2.nope=1", "unknown setting"),
    ]:
        with pytest.raises(ValueError, match=msg):
            parse_overrides([bad], "paper")


def test_the_ood_source_is_fixed_before_the_units_and_said_loudly(cifar_root, tmp_path):
    with_c = resolve_settings("paper", device="cpu")
    assert resolve_ood_sources(with_c, cifar_root) == []
    without = resolve_settings("paper", device="cpu")
    notes = resolve_ood_sources(without, tmp_path)
    assert len(notes) == 1 and "CIFAR-10-C not found" in notes[0] and "zenodo" in notes[0]
    for s, source in ((with_c, "cifar-c"), (without, "generated")):
        assert s["C2"]["data_options"]["ood_source"] == source
        assert s["C4"]["train"]["data_options"]["ood_source"] == source  # C4 judges the same runs
    # the source is part of every training unit's key: generated-corruption units never stand
    # in for CIFAR-10-C ones
    spec = c2_specs(with_c["C2"])[0]
    assert train_unit(spec, with_c["C2"]).params != train_unit(spec, without["C2"]).params


def test_missing_data_stops_before_any_unit_naming_the_files(tmp_path, cifar_root):
    kw = dict(preset="paper", only="C2", seeds=1, device="cpu", progress=False)
    overrides = parse_overrides(SMALL, "paper")
    with pytest.raises(FileNotFoundError) as err:
        run_reproduction(
            out=tmp_path / "r", data_root=tmp_path / "empty", overrides=overrides, **kw
        )
    msg = str(err.value)
    assert "cifar10.npz" in msg and "cifar-10-python.tar.gz" in msg and "www.cs.toronto.edu" in msg
    assert not (tmp_path / "r" / "cache").exists()
    # CIFAR-10-C required (the source fixed from another root) but absent here: named too
    s = resolve_settings("paper", overrides=overrides, device="cpu")
    resolve_ood_sources(s, cifar_root)
    unit = train_unit(c2_specs(s["C2"])[0], s["C2"])
    assert missing_for_units([unit], cifar_root) == []
    (tmp_path / "noc").mkdir()
    (tmp_path / "noc" / "cifar10.npz").write_bytes((cifar_root / "cifar10.npz").read_bytes())
    (gap,) = missing_for_units([unit], tmp_path / "noc")
    assert "CIFAR-10-C/labels.npy" in gap and "zenodo" in gap
    res = CliRunner().invoke(cli, ["reproduce", "--preset", "paper", "--only", "C2", "--out",
                                   str(tmp_path / "r2"), "--data-root", str(tmp_path / "empty"),
                                   "--no-progress", *[a for x in SMALL for a in ("--set", x)]])  # fmt: skip
    assert res.exit_code == 1 and "Error:" in res.output and "Traceback" not in res.output


def _conv_linear_flops(model: nn.Module, shape) -> int:
    """2·(multiply-adds) of every convolution and linear layer in one forward pass of a sample,
    from each layer's output size (a plain formula, not the library's counter)."""
    total = 0

    def hook(mod, _inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += 2 * k * out.numel()
        elif isinstance(mod, nn.Linear):
            total += 2 * mod.in_features * out.numel()

    hooks = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return total


def test_flops_of_the_paper_model_match_the_plain_formula():
    s = resolve_settings("paper", overrides={"C2": {"batch_size": 8}}, device="cpu")
    cfg = TrainConfig.from_dict(train_unit(c2_specs(s["C2"])[0], s["C2"]).params["config"])
    model, loss = build_model(cfg, (3, 32, 32)), build_loss(cfg)
    fwd_encoder = _conv_linear_flops(model.encoder, (3, 32, 32))
    assert fwd_encoder == pytest.approx(2 * 0.5565e9, rel=0.01)  # ResNet-18, CIFAR stem
    step, fwd, saved = _count(cfg, model.to("meta"), loss.to("meta"), (3, 32, 32), 8)
    assert fwd == fwd_encoder
    full = _conv_linear_flops(build_model(cfg, (3, 32, 32)), (3, 32, 32))
    # forward + backward (input and weight gradients, none for the image) of two views
    assert 2 * 2.9 * full * 8 < step < 2 * 3.1 * full * 8
    assert saved > 8 * 2 * 64 * 32 * 32 * 4  # at least the first block's activations


def test_the_work_of_a_unit():
    s = resolve_settings("paper", device="cpu")
    c2 = s["C2"]
    unit = train_unit(c2_specs(c2)[0], c2)
    steps, encoded = _workload(unit.params, None)
    assert steps == 400 * (50_000 // 4096)
    monitored = 400 // 20 + 1  # every 20 epochs and after the first
    per_look = 512 + 50_000  # held-out samples + the ridge probe's training samples
    ood = 5 * 5 * 10_000  # without CIFAR-10-C: the 25 generated sets, all test images each
    assert encoded == (monitored + 1) * per_look + 512 + 50_000 + 10_000 + ood


def _cli_estimate(tmp_path, root, *extra):
    args = ["reproduce", "--preset", "paper", "--estimate", "--only", "C2", "--seeds", "1",
            "--data-root", str(root), "--out", str(tmp_path / "out"), "--no-progress"]  # fmt: skip
    return CliRunner().invoke(cli, [*args, *[a for x in SMALL for a in ("--set", x)], *extra])


def test_estimate_with_and_without_the_data(tmp_path, cifar_root):
    res = _cli_estimate(tmp_path, tmp_path / "nothing")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "CIFAR-10: MISSING under" in out and "cifar-10-python.tar.gz" in out
    assert "CIFAR-10-C: MISSING" in out and "zenodo.org/records/2535967" in out
    assert "CPU-hours on this hardware" in out and "vicreg/trained/16-16" in out
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written
    res = _cli_estimate(tmp_path, cifar_root)
    assert res.exit_code == 0, res.output
    assert f"CIFAR-10: found {cifar_root / 'cifar10.npz'} (npz)" in res.output
    assert "CIFAR-10-C: found" in res.output and "MISSING" not in res.output


def test_estimate_numbers_and_cached_units(tmp_path, cifar_root):
    o = parse_overrides(SMALL, "paper")
    est = estimate_reproduction("paper", only="C2", seeds=1, overrides=o, device="cpu",
                                data_root=cifar_root, out=tmp_path / "run")  # fmt: skip
    (u,) = [u for u in est["units"] if u["claim"] == "C2"]
    cal = est["calibration"][u["calibration"]]
    assert u["seconds"] == pytest.approx(
        u["steps"] * cal["step_seconds"] + u["encoded"] * cal["fwd_seconds"]
    )
    assert u["flops"] == pytest.approx(
        u["steps"] * cal["step_flops"] + u["encoded"] * cal["fwd_flops"]
    )
    assert est["total"]["device_hours"] == pytest.approx(u["seconds"] / 3600)
    assert json.loads(json.dumps(est)) == est  # JSON-ready
    # after a run, the same units are cached and cost nothing
    run_reproduction(preset="paper", only="C2", seeds=1, overrides=o, device="cpu",
                     data_root=cifar_root, out=tmp_path / "run", progress=False)  # fmt: skip
    again = estimate_reproduction("paper", only="C2", seeds=1, overrides=o, device="cpu",
                                  data_root=cifar_root, out=tmp_path / "run")  # fmt: skip
    assert again["total"]["cached"] == again["total"]["units"] == 1
    assert again["total"]["device_hours"] == 0.0
