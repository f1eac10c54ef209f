"""Trainer: resume equivalence, NaN handling, config validation, checkpoints, LARS, schedule."""

from __future__ import annotations

import math
import os
import pickle
import signal

import numpy as np
import pytest
import torch

from vcreg.training import (
    LARS,
    Callback,
    CheckpointError,
    TrainConfig,
    TrainingDivergedError,
    load_checkpoint,
    lr_at,
    save_checkpoint,
    train,
)
from vcreg.training.config import ScheduleConfig

TIME_KEYS = {"time_s", "samples_per_s"}


def tiny(**over) -> dict:
    """A few-hundred-sample MNIST-1D run: 2 epochs x 7 steps on a small CNN."""
    cfg = {
        "epochs": 2,
        "batch_size": 64,
        "seed": 3,
        "device": "cpu",
        "threads": 1,
        "data": {"name": "mnist1d", "options": {"num_samples": 600, "ood": False}},
        "encoder": {"name": "cnn1d", "repr_dim": 8, "options": {"channels": [8, 16, 16]}},
        "projector": {"spec": "32-32"},
        "optimizer": {"name": "adam", "lr": 3e-3},
        "schedule": {"warmup_epochs": 0.5},
        "monitor": {"every": 1, "samples": 64, "probe_train_samples": 128, "knn_k": 5},
    }
    for key, value in over.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return cfg


def tiny_monitored(**over) -> dict:
    return tiny(**over)


def _strip(history):
    return [{k: v for k, v in m.items() if k not in TIME_KEYS} for m in history]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    res = train(tiny_monitored(), out_dir=out, progress=False)
    return out, res


def test_reference_run_writes_files(reference):
    out, res = reference
    assert res.status == "completed" and res.epochs_completed == 2
    for name in ("checkpoint.pt", "metrics.jsonl", "config.yaml", "run.json"):
        assert (out / name).is_file()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert all(math.isfinite(m["loss"]) for m in res.history)
    assert "knn_acc" in res.history[-1] and 0 <= res.history[-1]["knn_acc"] <= 1
    for key in ("pairwise_hsic_mean", "pairwise_nhsic_mean", "dhsic"):
        assert key in res.history[-1]
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 2 and state["step"] == 0


def test_resume_after_epoch_is_exact(reference, tmp_path):
    ref_out, ref = reference
    first = train(tiny_monitored(), out_dir=tmp_path, progress=False, stop_after_epochs=1)
    assert first.status == "interrupted" and first.epochs_completed == 1
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    # a different process-wide RNG state must not matter: the checkpoint restores it
    torch.manual_seed(12345)
    np.random.seed(7)  # noqa: NPY002
    done = train(tiny_monitored(), out_dir=tmp_path, resume=True, progress=False)
    assert done.status == "completed"
    _assert_same_weights(
        load_checkpoint(ref_out / "checkpoint.pt")["model"],
        load_checkpoint(tmp_path / "checkpoint.pt")["model"],
    )
    assert _strip(done.history) == _strip(ref.history)
    ref_lines = [
        _strip([__import__("json").loads(s)])
        for s in (ref_out / "metrics.jsonl").read_text().splitlines()
    ]
    new_lines = [
        _strip([__import__("json").loads(s)])
        for s in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    assert ref_lines == new_lines


def test_sigint_mid_epoch_then_resume_is_exact(reference, tmp_path):
    ref_out, ref = reference

    class Interrupt(Callback):
        def on_step_end(self, state):
            if (state.epoch, state.step) == (0, 3):
                os.kill(os.getpid(), signal.SIGINT)

    part = train(tiny_monitored(), out_dir=tmp_path, progress=False, callbacks=[Interrupt()])
    assert part.status == "interrupted"
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == (0, 4)
    done = train(tiny_monitored(), out_dir=tmp_path, resume=True, progress=False)
    _assert_same_weights(
        load_checkpoint(ref_out / "checkpoint.pt")["model"],
        load_checkpoint(tmp_path / "checkpoint.pt")["model"],
    )
    assert _strip(done.history) == _strip(ref.history)


def test_resume_refuses_other_config_and_overwrite(reference, tmp_path):
    ref_out, _ = reference
    with pytest.raises(ValueError, match="optimizer.lr"):
        train(tiny(**{"optimizer.lr": 1e-2}), out_dir=ref_out, resume=True, progress=False)
    with pytest.raises(FileExistsError, match="resume"):
        train(tiny(), out_dir=ref_out, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(tiny(), out_dir=tmp_path / "empty", resume=True, progress=False)


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = tiny(**{"monitor.every": 0})

    class Poison(Callback):  # poisons the live model after epoch 1 was checkpointed
        def on_step_end(self, state):
            if (state.epoch, state.step) == (1, 2):
                with torch.no_grad():
                    next(iter(state.model.encoder.parameters())).fill_(float("nan"))

    with pytest.raises(TrainingDivergedError, match=r"epoch 2, step 4.*last good checkpoint"):
        train(cfg, out_dir=tmp_path, progress=False, callbacks=[Poison()])
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_huge_learning_rate_diverges_with_clear_message():
    cfg = tiny(
        **{
            "optimizer.lr": 1e30,
            "optimizer.name": "sgd",
            "monitor.every": 0,
            "schedule.warmup_epochs": 0.0,
        }
    )
    with pytest.raises(TrainingDivergedError, match="diverged.*Lower optimizer.lr"):
        train(cfg, progress=False)


@pytest.mark.parametrize(
    "over",
    [
        {"loss.name": "vcreg", "loss.params": {"invariance": 1.0}},
        {"loss.name": "barlow"},
        {"loss.name": "wmse", "loss.params": {"w_size": 32}, "projector.spec": "16-16"},
        {
            "projector.frozen": True,
            "optimizer.name": "lars",
            "optimizer.lr": 0.1,
            "optimizer.weight_decay": 1e-4,
        },
        {
            "projector.kind": "random_features",
            "projector.features_per_dim": 4,
            "optimizer.name": "adamw",
            "optimizer.weight_decay": 0.05,
        },
    ],
)
def test_losses_projectors_optimizers_train(over):
    cfg = tiny(**{"epochs": 1, "monitor.every": 0, **over})
    res = train(cfg, progress=False)
    assert res.status == "completed" and math.isfinite(res.final_metrics["loss"])
    if over.get("projector.frozen"):
        fresh = train(
            tiny(**{"epochs": 1, "monitor.every": 0, **over, "optimizer.lr": 1e-9}), progress=False
        )
        # frozen projector: identical random weights whatever the training did
        for (n, a), (_, b) in zip(
            res.projector.named_parameters(), fresh.projector.named_parameters(), strict=True
        ):
            assert torch.equal(a, b), n


def test_config_validation_lists_every_problem():
    bad = tiny(
        **{
            "batch_size": 1,
            "optimizer.lr": "fast",
            "loss.name": "simclr",
            "encoder.depth": 3,
            "colour": "red",
        }
    )
    with pytest.raises(ValueError) as info:
        TrainConfig.from_dict(bad)
    msg = str(info.value)
    for needle in (
        "colour: unknown key",
        "encoder.depth: unknown key",
        "optimizer.lr: expected",
        "loss.name: expected",
    ):
        assert needle in msg, msg
    # value problems are reported together once the types are right
    with pytest.raises(ValueError) as info:
        TrainConfig.from_dict(
            tiny(
                **{
                    "batch_size": 1,
                    "loss.name": "wmse",
                    "loss.params": {"w_size": 16},
                    "projector.spec": "32-32",
                    "epochs": 0,
                    "optimizer.momentum": 1.5,
                }
            )
        )
    msg = str(info.value)
    assert "problems" in msg
    for needle in (
        "batch_size: must be >= 2",
        "w_size >= 2*embedding dim = 64",
        "epochs: must be",
        "optimizer.momentum",
    ):
        assert needle in msg, msg


def test_train_validates_before_loading_data(monkeypatch):
    import vcreg.data

    def boom(*a, **k):
        raise AssertionError("data loaded before validation")

    monkeypatch.setattr(vcreg.data, "load_dataset", boom)
    with pytest.raises(ValueError, match="batch_size"):
        train(tiny(batch_size=1), progress=False)


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\noptimizer:\n  lr: 1e-3\nprojector:\n  spec: 64-64\n")
    cfg = TrainConfig.from_yaml(
        path, ["optimizer.lr=3e-3", "projector.frozen=true", "loss.params={lambda_: 5}"]
    )
    assert cfg.optimizer.lr == pytest.approx(3e-3) and isinstance(cfg.optimizer.lr, float)
    assert cfg.projector.frozen is True and cfg.projector.spec == "64-64"
    assert cfg.loss.params == {"lambda_": 5}
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="key.sub=value"):
        TrainConfig.from_yaml(path, ["nonsense"])
    with pytest.raises(FileNotFoundError):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


def test_checkpoint_corrupted_and_foreign(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"config": {}, "epoch": 1, "step": 0, "model": {"w": torch.ones(3)}})
    assert load_checkpoint(good)["epoch"] == 1
    # truncated file
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_checkpoint(trunc)
    (tmp_path / "junk.pt").write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pt")
    # a pickle that would run code when unpickled unsafely: refused, nothing executed
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "vcreg-checkpoint", "version": 1, "model": Evil()}, evil)
    with pytest.raises(CheckpointError, match="refusing"):
        load_checkpoint(evil)
    assert not marker.exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)
    assert not marker.exists()
    # a torch file that is not a vcreg checkpoint
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, other)
    with pytest.raises(CheckpointError, match="not a vcreg checkpoint"):
        load_checkpoint(other)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"config": {}, "epoch": 1, "step": 0, "model": {}})
    before = path.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"config": {}, "epoch": 2, "step": 0, "model": {}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_lars_matches_reference_formula():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    b = torch.nn.Parameter(torch.randn(4))
    opt = LARS(
        [{"params": [w]}, {"params": [b], "weight_decay": 0.0, "lars_adaptation": False}],
        lr=0.5,
        weight_decay=0.1,
        momentum=0.9,
        eta=0.02,
    )
    w_ref, b_ref = w.detach().clone(), b.detach().clone()
    mu_w, mu_b = torch.zeros_like(w_ref), torch.zeros_like(b_ref)
    for _ in range(3):
        gw, gb = torch.randn(4, 3), torch.randn(4)
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        # official VICReg LARS, written out
        d = gw + 0.1 * w_ref
        d = d * (0.02 * w_ref.norm() / d.norm())
        mu_w = 0.9 * mu_w + d
        w_ref = w_ref - 0.5 * mu_w
        mu_b = 0.9 * mu_b + gb
        b_ref = b_ref - 0.5 * mu_b
        torch.testing.assert_close(w.detach(), w_ref)
        torch.testing.assert_close(b.detach(), b_ref)


def test_bias_and_norm_params_excluded_from_decay():
    from vcreg.training.config import OptimizerConfig
    from vcreg.training.optim import param_groups

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    groups = param_groups([net], OptimizerConfig(weight_decay=0.1))
    decay = {id(p) for p in groups[0]["params"]}
    assert decay == {id(net[0].weight), id(net[2].weight)}
    assert groups[1]["weight_decay"] == 0.0 and groups[1]["lars_adaptation"] is False


def test_warmup_cosine_schedule():
    sched = ScheduleConfig(kind="cosine", warmup_epochs=1, final_lr_ratio=0.01)
    lrs = [lr_at(s, 40, 10, 2.0, sched) for s in range(40)]
    assert lrs[:10] == pytest.approx([2.0 * (s + 1) / 10 for s in range(10)])
    for s in range(10, 40):
        t = (s - 10) / 29
        assert lrs[s] == pytest.approx(0.02 + (2.0 - 0.02) * 0.5 * (1 + math.cos(math.pi * t)))
    assert lrs[-1] == pytest.approx(0.02)


@pytest.mark.parametrize(
    "path", sorted(__import__("pathlib").Path(__file__).resolve().parents[1].glob("configs/*.yaml"))
)
def test_shipped_configs_are_valid(path):
    cfg = TrainConfig.from_yaml(path)
    assert cfg.name == path.stem


@pytest.mark.parametrize(
    "path", sorted(__import__("pathlib").Path(__file__).resolve().parents[1].glob("configs/*.yaml"))
)
def test_every_shipped_config_validates_with_epochs_1(path):
    """The natural smoke test: a warm-up longer than the run is clamped with a warning."""
    full = TrainConfig.from_yaml(path)
    assert full.schedule.warmup_epochs > 1  # (else this test checks nothing for this config)
    with pytest.warns(UserWarning, match=r"warmup_epochs=.* longer than the run.*clamped to 1"):
        cfg = TrainConfig.from_yaml(path, ["epochs=1"])
    assert cfg.epochs == 1 and cfg.schedule.warmup_epochs == 1.0
    lrs = [lr_at(s, 5, 5, 0.1, cfg.schedule) for s in range(5)]
    assert lrs == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])  # warms up over the whole run


def test_warmup_within_the_run_is_untouched_and_a_negative_one_is_an_error():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = TrainConfig.from_dict(tiny(**{"schedule.warmup_epochs": 2.0}))
    assert cfg.schedule.warmup_epochs == 2.0
    with pytest.raises(ValueError, match=r"schedule.warmup_epochs: must be in \[0, epochs=2\]"):
        TrainConfig.from_dict(tiny(**{"schedule.warmup_epochs": -1.0}))


def test_resume_restores_global_rng_state(tmp_path):
    """W-MSE draws its whitening sub-batches from torch's global RNG: exact resume needs it."""
    over = {
        "loss.name": "wmse",
        "loss.params": {"w_size": 32},
        "projector.spec": "16-16",
        "monitor.every": 0,
    }
    ref = train(tiny(**over), out_dir=tmp_path / "ref", progress=False)
    train(tiny(**over), out_dir=tmp_path / "cut", progress=False, stop_after_epochs=1)
    torch.manual_seed(999)  # perturb the process RNG between the two sessions
    done = train(tiny(**over), out_dir=tmp_path / "cut", resume=True, progress=False)
    _assert_same_weights(
        load_checkpoint(tmp_path / "ref" / "checkpoint.pt")["model"],
        load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["model"],
    )
    assert _strip(done.history) == _strip(ref.history)
