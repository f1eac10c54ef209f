"""The trainer's callback interface: what callbacks see, what they may add, how they stop a run."""

from __future__ import annotations

import json

import pytest
import torch

from vcreg.training import Callback, TrainConfig, load_checkpoint, train
from vcreg.training.callbacks import TrainState


def tiny(**over) -> dict:
    cfg = {
        "epochs": 3,
        "batch_size": 64,
        "seed": 1,
        "device": "cpu",
        "threads": 1,
        "data": {"name": "mnist1d", "options": {"num_samples": 500, "ood": False}},
        "encoder": {"name": "cnn1d", "repr_dim": 8, "options": {"channels": [8, 8, 8]}},
        "projector": {"spec": "16-16"},
        "monitor": {"every": 0},
    }
    cfg.update(over)
    return cfg


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_train_start(self, state: TrainState) -> None:
        self.calls.append(("start", state.epoch, state.steps_per_epoch))

    def on_step_end(self, state: TrainState) -> None:
        self.calls.append(("step", state.epoch, state.step, state.loss))

    def on_epoch_end(self, state: TrainState) -> None:
        assert isinstance(state.model.encoder, torch.nn.Module)
        assert state.optimizer.param_groups[0]["lr"] == state.lr
        # the weights the callback sees are the live ones: a parameter norm, saved for later
        norm = float(sum(p.detach().double().pow(2).sum() for p in state.model.parameters()))
        state.metrics["param_sq_norm"] = norm
        self.calls.append(("epoch", state.epoch, dict(state.metrics), len(state.history)))

    def on_train_end(self, state: TrainState) -> None:
        self.calls.append(("end", len(state.history)))


def test_hooks_order_state_and_added_metrics(tmp_path):
    rec = Recorder()
    res = train(tiny(), out_dir=tmp_path, progress=False, callbacks=[rec])
    kinds = [c[0] for c in rec.calls]
    spe = res.extra["steps_per_epoch"]
    assert kinds == ["start"] + (["step"] * spe + ["epoch"]) * 3 + ["end"]
    steps = [c for c in rec.calls if c[0] == "step"]
    assert [(c[1], c[2]) for c in steps] == [(e, s) for e in range(3) for s in range(spe)]
    epochs = [c for c in rec.calls if c[0] == "epoch"]
    # the epoch metrics a callback sees are the trainer's (1-based epoch, mean of step losses)
    for e, (_, idx, metrics, n_before) in enumerate(epochs):
        assert idx == e and metrics["epoch"] == e + 1 and n_before == e
        losses = [c[3] for c in steps if c[1] == e]
        assert metrics["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-12)
    # what the callback added is in the history, metrics.jsonl and the checkpoint
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["param_sq_norm"] for m in lines] == [c[2]["param_sq_norm"] for c in epochs]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["history"][-1]["param_sq_norm"] > 0
    final = sum(float(p.detach().double().pow(2).sum()) for p in res.encoder.parameters()) + sum(
        float(p.detach().double().pow(2).sum()) for p in res.projector.parameters()
    )
    assert final == pytest.approx(epochs[-1][2]["param_sq_norm"], rel=1e-9)


class StopAt(Callback):
    def __init__(self, epoch: int, step: int) -> None:
        self.at = (epoch, step)

    def on_step_end(self, state: TrainState) -> None:
        if (state.epoch, state.step) == self.at:
            state.should_stop = True


def test_should_stop_checkpoints_and_resume_is_exact(tmp_path):
    ref = train(tiny(), out_dir=tmp_path / "ref", progress=False)
    part = train(tiny(), out_dir=tmp_path / "run", progress=False, callbacks=[StopAt(1, 2)])
    assert part.status == "interrupted"
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == (1, 3)
    done = train(tiny(), out_dir=tmp_path / "run", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "ref" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = [
        {k: v for k, v in m.items() if k not in ("time_s", "samples_per_s")} for m in ref.history
    ]
    assert [{k: v for k, v in m.items() if k in strip[0]} for m in done.history] == strip


def test_duck_typed_callbacks_and_bad_objects():
    seen = []

    class OnlyEpochs:  # no base class: any object with one of the hooks is a callback
        def on_epoch_end(self, state):
            seen.append(state.epoch)

    train(tiny(epochs=2), progress=False, callbacks=[OnlyEpochs()])
    assert seen == [0, 1]
    with pytest.raises(TypeError, match="callbacks must be objects with one of"):
        train(tiny(), progress=False, callbacks=[lambda state: None])


def test_builtin_monitor_is_a_callback_before_user_callbacks():
    cfg = tiny(epochs=1, monitor={"every": 1, "samples": 64, "probe_train_samples": 64})
    got = {}

    class Peek(Callback):
        def on_epoch_end(self, state):
            got.update(state.metrics)

    res = train(TrainConfig.from_dict(cfg), progress=False, callbacks=[Peek()])
    assert "knn_acc" in got and "pairwise_hsic_mean" in got
    assert got["knn_acc"] == res.history[-1]["knn_acc"]
