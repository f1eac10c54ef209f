"""Training configuration: nested dataclasses, YAML loading, ``--set`` overrides, validation.

A config is a tree of sections (``data``, ``augmentation``, ``encoder``, ``projector``, ``loss``,
``optimizer``, ``schedule``, ``monitor``, ``evaluation``) under top-level run settings (``epochs``,
``batch_size``, ``seed``, ``device``, ...). :meth:`TrainConfig.from_dict` checks every key, type
and value and raises ONE ``ValueError`` listing all problems, before any data is loaded.
Overrides use dotted paths: ``optimizer.lr=3e-3``, ``projector.spec=512-512``, ``epochs=10``;
values are parsed as YAML (``true``, ``[1, 2]``, ``1e-3`` all work).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import re
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from vcreg import losses
from vcreg._device import check_device_name
from vcreg._suggest import did_you_mean
from vcreg.configs import resolve as resolve_config
from vcreg.data import AUGMENTATIONS, DATASETS, canonical_dataset_name
from vcreg.functional import wmse_size_problems
from vcreg.models import ENCODERS
from vcreg.projectors import _ACTIVATIONS, PROJECTOR_KINDS, canonical_projector_kind, parse_spec

__all__ = [
    "TrainConfig",
    "DataConfig",
    "AugmentationConfig",
    "EncoderConfig",
    "ProjectorConfig",
    "LossConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "MonitorConfig",
    "EvaluationConfig",
    "OPTIMIZERS",
    "projector_out_dim",
    "saved_config",
]

OPTIMIZERS = ("adam", "adamw", "sgd", "lars")


@dataclass
class DataConfig:
    """Dataset (``vcreg.data.load_dataset``): ``options`` go to the loader (e.g. MNIST-1D
    ``num_samples``, ``ood``); ``train_samples`` keeps only the first N training samples;
    ``num_workers > 0`` loads batches with a DataLoader (image datasets), 0 = in-memory batches."""

    name: str = "mnist1d"
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    train_samples: int | None = None
    num_workers: int = 0


@dataclass
class AugmentationConfig:
    """Two random views per sample (``vcreg.data.make_augmentation``). ``name="default"`` uses
    the dataset's recipe; ``params`` override the recipe's fields; ``"none"`` disables it.
    ``on_device``: augment whole batches on the training device, each sample with its own
    parameters (``vcreg.training.feeding``); "auto" = on CUDA, off on CPU."""

    name: str = "default"
    params: dict[str, Any] = field(default_factory=dict)
    on_device: bool | Literal["auto"] = "auto"


@dataclass
class EncoderConfig:
    """Encoder ``f`` (``vcreg.models.build_encoder``); ``repr_dim`` is the representation size d."""

    name: str = "cnn1d"
    repr_dim: int = 64
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProjectorConfig:
    """Projector ``g``: ``kind="mlp"`` (``spec`` widths, trainable or ``frozen`` at its random
    init, seeded from the run seed), ``"random_features"`` (element-wise random Fourier features,
    ``features_per_dim``/``kernel``/``bandwidth``, feature ``scale`` "standardized" (each cosine
    feature standardized over the batch, so VICReg's variance hinge can be met; the default),
    "unit" (sqrt(2)·cos) or "kernel" (sqrt(2/m)·cos), ``standardize`` the input per batch first;
    never trained; see ``vcreg.projectors.RandomFeatureProjector``) or ``"identity"`` (Z = X)."""

    kind: str = "mlp"
    spec: str | int | list[int] = "2048-2048"
    frozen: bool = False
    batch_norm: bool = True
    activation: str = "relu"
    features_per_dim: int = 64
    kernel: Literal["gaussian", "laplacian"] = "gaussian"
    bandwidth: float = 1.0
    scale: Literal["standardized", "unit", "kernel"] = "standardized"
    standardize: bool = False
    # checked with the types; "random-features" (the ICA spelling) is read as "random_features"
    _CHOICES: ClassVar[dict[str, Any]] = {"kind": lambda: PROJECTOR_KINDS}
    _CANONICAL: ClassVar[dict[str, Any]] = {"kind": canonical_projector_kind}


@dataclass
class LossConfig:
    """Loss and its weights: ``name`` is a name of the loss registry
    (``vcreg.losses.available_losses()``; more via ``vcreg.losses.register_loss``), ``params``
    keyword arguments of its class: vicreg ``lambda_, mu, nu, gamma, eps`` (official 25/25/1);
    vcreg ``mu, nu, gamma, eps`` plus ``invariance`` (weight of an MSE between views, default 0 =
    pure VCReg on each view, averaged); barlow ``lambda_`` (0.0051); wmse ``w_size``
    (≥ 2·embedding dim, divides the batch), ``w_iter``; infonce ``temperature`` (0.5; SimCLR's
    NT-Xent, the reproduction's contrastive control without VCReg)."""

    name: str = "vicreg"
    params: dict[str, Any] = field(default_factory=dict)
    # checked with the types: the registry is the one list of names
    _CHOICES: ClassVar[dict[str, Any]] = {"name": losses.available_losses}


@dataclass
class OptimizerConfig:
    """``lr`` is the peak learning rate (after warm-up). ``exclude_bias_and_norm``: biases and
    normalization parameters (1-d tensors) get no weight decay and (LARS) no trust-ratio
    adaptation, as in the official VICReg / Barlow Twins code. ``eta``: LARS trust coefficient."""

    name: Literal["adam", "adamw", "sgd", "lars"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eta: float = 0.001
    exclude_bias_and_norm: bool = True


@dataclass
class ScheduleConfig:
    """Per-step learning rate: linear warm-up from 0 over ``warmup_epochs`` (fractions allowed),
    then cosine decay to ``final_lr_ratio·lr`` (``kind="cosine"``) or constant."""

    kind: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    final_lr_ratio: float = 0.001


@dataclass
class MonitorConfig:
    """Online monitoring every ``every`` epochs (0 = never; the first and the last epoch are
    always measured when ``every > 0``) on the first ``samples`` test samples (fixed held-out subset):
    mean pairwise HSIC (biased, Gaussian kernels, median bandwidth), mean normalized HSIC, dHSIC,
    and a ``probe`` accuracy ("knn": cosine k-NN with ``knn_k`` neighbours, or "linear":
    closed-form ridge classifier) fitted on ``probe_train_samples`` training samples.
    ``dhsic_median``: also dHSIC under per-variable median bandwidths (R dHSIC's default,
    ``bandwidth="dhsic"``) and its floor 1/n (``dhsic_median``, ``dhsic_floor``; NaN when
    saturated)."""

    every: int = 5
    samples: int = 256
    hsic: bool = True
    dhsic: bool = True
    dhsic_median: bool = False
    probe: Literal["knn", "linear", "none"] = "knn"
    knn_k: int = 20
    probe_train_samples: int = 2000


@dataclass
class EvaluationConfig:
    """``vcreg evaluate``: multinomial logistic regression (torch L-BFGS, on standardized
    frozen representations of the whole training set, ``C`` inverse regularization) scored on the
    test set and every OOD set, plus independence measures on ``independence_samples`` test
    samples."""

    C: float = 1.0
    max_iter: int = 1000
    ood: bool = True
    independence_samples: int = 512
    batch_size: int = 1024


@dataclass
class TrainConfig:
    """A full SSL training run (see ``configs/*.yaml`` and docs/sections/training.md).

    ``batch_size`` is the GLOBAL batch (split over DDP ranks). ``device``: "auto" (CUDA when
    available), "cpu", "cuda", "cuda:N". ``amp``: "auto" (bf16 autocast on CUDA, off on CPU),
    "bf16" or "off". ``checkpoint_every``: epochs between checkpoints (also written on
    SIGINT/SIGTERM and at the end). ``tensorboard``: "auto" (if installed), true or false.
    ``threads``: torch CPU threads (None = torch default).
    """

    name: str | None = None
    seed: int = 0
    device: str = "auto"
    epochs: int = 50
    batch_size: int = 256
    amp: Literal["auto", "bf16", "off"] = "auto"
    checkpoint_every: int = 1
    tensorboard: bool | Literal["auto"] = "auto"
    threads: int | None = None
    data: DataConfig = field(default_factory=DataConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None = None) -> TrainConfig:
        """Build and validate; raises one ``ValueError`` listing every problem found."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise TypeError(f"a config must be a mapping, got {type(data).__name__}")
        errors: list[str] = []
        cfg = _build(cls, data, "", errors)
        if not errors:
            cfg._clamp_warmup()
            errors.extend(cfg.problems())
        if errors:
            raise ValueError(_format_errors(errors))
        return cfg

    @classmethod
    def from_yaml(
        cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()
    ) -> TrainConfig:
        """Load ``path`` (YAML; or the name of a shipped config, :func:`vcreg.configs.resolve`)
        and apply ``key.sub=value`` overrides."""
        path = resolve_config(path)
        try:
            data = yaml.load(path.read_text(), Loader=_Loader) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} must contain a mapping at the top level")
        return cls.from_dict(apply_overrides(data, overrides))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (round-trips through :meth:`from_dict`)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, overrides: list[str] | tuple[str, ...] | dict[str, Any]) -> TrainConfig:
        """A new validated config with dotted overrides (``["optimizer.lr=1e-3"]`` or
        ``{"optimizer.lr": 1e-3}``)."""
        if isinstance(overrides, dict):
            data = self.to_dict()
            for key, value in overrides.items():
                _set_path(data, key, value)
            return TrainConfig.from_dict(data)
        return TrainConfig.from_dict(apply_overrides(self.to_dict(), overrides))

    def _clamp_warmup(self) -> None:
        """A warm-up longer than the run (``--set epochs=1`` on a config with a 2-epoch
        warm-up: the natural smoke test) is clamped to the run with a warning, not an error."""
        s = self.schedule
        if _is_number(s.warmup_epochs) and self.epochs >= 1 and s.warmup_epochs > self.epochs:
            warnings.warn(
                f"schedule.warmup_epochs={s.warmup_epochs:g} is longer than the run "
                f"(epochs={self.epochs}): clamped to {self.epochs} (the learning rate warms up "
                "over the whole run)",
                UserWarning,
                stacklevel=4,
            )
            s.warmup_epochs = float(self.epochs)

    # -- cross-field validation -----------------------------------------------------------------
    def problems(self) -> list[str]:
        """Value problems (types are checked by :meth:`from_dict`); empty when valid."""
        return [
            *self._run_problems(),
            *self._data_problems(),
            *self._model_problems(),
            *self._projector_problems(),
            *self._loss_problems(),
            *self._optimizer_problems(),
            *self._monitor_problems(),
        ]

    def _run_problems(self) -> list[str]:
        p: list[str] = []
        if self.epochs < 1:
            p.append(f"epochs: must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            p.append(
                f"batch_size: must be >= 2 (variance/covariance need at least 2 samples), "
                f"got {self.batch_size}"
            )
        if self.checkpoint_every < 1:
            p.append(f"checkpoint_every: must be >= 1, got {self.checkpoint_every}")
        if self.threads is not None and self.threads < 1:
            p.append(f"threads: must be >= 1, got {self.threads}")
        try:
            check_device_name(self.device)
        except ValueError as exc:
            p.append(f"device: {exc}")
        return p

    def _data_problems(self) -> list[str]:
        d, a, p = self.data, self.augmentation, []
        try:
            canonical_dataset_name(d.name)
        except ValueError:
            hint = did_you_mean(d.name, DATASETS)
            p.append(f"data.name: unknown dataset {d.name!r}{hint}; available: {list(DATASETS)}")
        if d.train_samples is not None and d.train_samples < 2:
            p.append(f"data.train_samples: must be >= 2, got {d.train_samples}")
        if d.train_samples is not None and d.train_samples < self.batch_size:
            p.append(
                f"data.train_samples={d.train_samples} is smaller than batch_size="
                f"{self.batch_size}: no full batch"
            )
        if d.num_workers < 0:
            p.append(f"data.num_workers: must be >= 0, got {d.num_workers}")
        if a.name != "default" and a.name.lower() not in (*AUGMENTATIONS, "identity"):
            p.append(
                f"augmentation.name: unknown augmentation {a.name!r}; available: "
                f"{['default', *AUGMENTATIONS]}"
            )
        return p

    def _model_problems(self) -> list[str]:
        e, p = self.encoder, []
        if e.name not in ENCODERS:
            hint = did_you_mean(e.name, ENCODERS)
            p.append(f"encoder.name: unknown encoder {e.name!r}{hint}; available: {list(ENCODERS)}")
        if e.repr_dim < 1:
            p.append(f"encoder.repr_dim: must be >= 1, got {e.repr_dim}")
        return p

    def _optimizer_problems(self) -> list[str]:
        o, s, p = self.optimizer, self.schedule, []
        if not (o.lr > 0 and math.isfinite(o.lr)):
            p.append(f"optimizer.lr: must be a positive finite number, got {o.lr}")
        if not o.weight_decay >= 0:
            p.append(f"optimizer.weight_decay: must be >= 0, got {o.weight_decay}")
        if not 0 <= o.momentum < 1:
            p.append(f"optimizer.momentum: must be in [0, 1), got {o.momentum}")
        if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
            p.append(f"optimizer.betas: must be two numbers in [0, 1), got {o.betas}")
        if not o.eta > 0:
            p.append(f"optimizer.eta: LARS trust coefficient must be > 0, got {o.eta}")
        if not 0 <= s.warmup_epochs <= self.epochs:
            p.append(
                f"schedule.warmup_epochs: must be in [0, epochs={self.epochs}], "
                f"got {s.warmup_epochs}"
            )
        if not 0 <= s.final_lr_ratio <= 1:
            p.append(f"schedule.final_lr_ratio: must be in [0, 1], got {s.final_lr_ratio}")
        return p

    def _monitor_problems(self) -> list[str]:
        m, ev, p = self.monitor, self.evaluation, []
        if m.every < 0:
            p.append(f"monitor.every: must be >= 0 (0 = off), got {m.every}")
        if m.samples < 10:
            p.append(f"monitor.samples: must be >= 10, got {m.samples}")
        if m.knn_k < 1:
            p.append(f"monitor.knn_k: must be >= 1, got {m.knn_k}")
        if m.probe_train_samples < 10:
            p.append(f"monitor.probe_train_samples: must be >= 10, got {m.probe_train_samples}")
        if not ev.C > 0:
            p.append(f"evaluation.C: must be > 0, got {ev.C}")
        if ev.max_iter < 1:
            p.append(f"evaluation.max_iter: must be >= 1, got {ev.max_iter}")
        if ev.independence_samples < 10:
            p.append(
                f"evaluation.independence_samples: must be >= 10, got {ev.independence_samples}"
            )
        if ev.batch_size < 1:
            p.append(f"evaluation.batch_size: must be >= 1, got {ev.batch_size}")
        return p

    def _projector_problems(self) -> list[str]:
        pr, p = self.projector, []
        if pr.kind == "mlp":
            try:
                parse_spec(pr.spec)
            except (ValueError, TypeError) as exc:
                p.append(f"projector.spec: {exc}")
            if pr.activation not in _ACTIVATIONS:
                p.append(
                    f"projector.activation: unknown activation {pr.activation!r}; "
                    f"choose one of {sorted(_ACTIVATIONS)}"
                )
        elif pr.frozen:
            p.append(f"projector.frozen: only applies to kind 'mlp' (kind is {pr.kind!r})")
        if pr.kind == "random_features":
            if pr.features_per_dim < 1:
                p.append(f"projector.features_per_dim: must be >= 1, got {pr.features_per_dim}")
            if not (pr.bandwidth > 0 and math.isfinite(pr.bandwidth)):
                p.append(f"projector.bandwidth: must be a positive number, got {pr.bandwidth}")
        return p

    def _loss_problems(self) -> list[str]:
        lo, p = self.loss, []
        valid = losses.loss_params(lo.name)
        bad = sorted(set(lo.params) - valid)
        if bad:
            p.append(
                f"loss.params: unknown parameter(s) {bad} for loss {lo.name!r}; "
                f"valid: {sorted(valid)}"
            )
        for key, val in lo.params.items():
            if key in valid and key != "w_size" and not _is_number(val):
                p.append(f"loss.params.{key}: must be a number, got {val!r}")
            elif key in valid and _is_number(val) and val < 0:
                p.append(f"loss.params.{key}: must be >= 0, got {val}")
        if lo.name == "wmse" and not bad:
            p.extend(self._wmse_problems())
        return p

    def _wmse_problems(self) -> list[str]:
        params, p = self.loss.params, []
        w_size = params.get("w_size", 128)
        k = projector_out_dim(self)
        if w_size is not None and not (isinstance(w_size, int) and not isinstance(w_size, bool)):
            p.append(f"loss.params.w_size: must be an int or null, got {w_size!r}")
        elif k is not None:
            p.extend(
                f"loss.params.w_size: {msg} (embedding dim {k} from the projector)"
                for msg in wmse_size_problems(w_size, self.batch_size, k)
            )
        if int(params.get("w_iter", 1)) < 1:
            p.append(f"loss.params.w_iter: must be >= 1, got {params['w_iter']}")
        return p


def saved_config(data: dict[str, Any], source: str) -> dict[str, Any]:
    """A config read back from a checkpoint, with the defaults of the code that wrote it.

    A random-feature projector saved before ``projector.scale`` existed used ``sqrt(2/m)·cos``
    (``"kernel"``); filling today's default instead would rebuild a different model.
    """
    proj = data.get("projector") if isinstance(data, dict) else None
    if isinstance(proj, dict) and proj.get("kind") in ("random_features", "random-features"):
        if "scale" not in proj:
            warnings.warn(
                f"{source}: random-feature projector saved without 'scale' (older vcreg); "
                "reading it as scale='kernel' (sqrt(2/m)·cos), the formula of that version",
                stacklevel=2,
            )
            data = {**data, "projector": {**proj, "scale": "kernel"}}
    return data


def projector_out_dim(cfg: TrainConfig) -> int | None:
    """Embedding dimension k implied by the config (None if the spec is invalid)."""
    pr = cfg.projector
    if pr.kind == "identity":
        return cfg.encoder.repr_dim
    if pr.kind == "random_features":
        return cfg.encoder.repr_dim * pr.features_per_dim
    try:
        return parse_spec(pr.spec)[-1]
    except (ValueError, TypeError):
        return None


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# -- generic typed construction ------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return {list: "a list", dict: "a mapping"}.get(origin, str(tp))
    return {int: "an int", float: "a number", str: "a string", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """(ok, converted value) for a value against a type annotation."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in typing.get_args(tp)), value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, out = _coerce(value, arg)
            if ok:
                return True, out
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is Any:
        return True, value
    if origin is list:
        if isinstance(value, list | tuple):
            (arg,) = typing.get_args(tp) or (Any,)
            outs = []
            for v in value:
                ok, out = _coerce(v, arg)
                if not ok:
                    return False, value
                outs.append(out)
            return True, outs
        return False, value
    if origin is dict:
        return isinstance(value, dict), copy.deepcopy(value)
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is str:
        return isinstance(value, str), value
    return isinstance(value, tp), value


def _build(cls: type, data: Any, prefix: str, errors: list[str]) -> Any:
    if not isinstance(data, dict):
        errors.append(f"{prefix.rstrip('.') or 'config'}: must be a mapping, got {data!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            hint = did_you_mean(key, names, prefix)
            errors.append(f"{prefix}{key}: unknown key{hint}; valid: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        tp, value = hints[name], data[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{prefix}{name}.", errors)
            continue
        ok, out = _coerce(value, tp)
        canonical = getattr(cls, "_CANONICAL", {}).get(name)
        if ok and canonical is not None:
            with contextlib.suppress(ValueError):
                out = canonical(out)
        choices = getattr(cls, "_CHOICES", {}).get(name)
        if ok and choices is not None and out not in choices():
            ok, tp = False, Literal[tuple(choices())]  # same message as a fixed Literal
        if ok:
            kwargs[name] = out
        else:
            hint = ""
            if isinstance(value, str) and typing.get_origin(tp) is Literal:
                hint = did_you_mean(value, typing.get_args(tp))
            errors.append(f"{prefix}{name}: expected {_type_name(tp)}, got {value!r}{hint}")
    return cls(**kwargs)


def _format_errors(errors: list[str]) -> str:
    n = len(errors)
    head = f"invalid training config ({n} problem{'s' if n > 1 else ''}):"
    return "\n".join([head, *(f"  - {e}" for e in errors)])


# -- YAML + overrides ----------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` (no dot) as a float, as users expect."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """Parse an override's value as YAML (``3e-3`` -> float, ``[1, 2]`` -> list, ``x-y`` -> str)."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def _set_path(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"cannot set {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to a (deep-copied) config dict."""
    out = copy.deepcopy(data)
    bad = []
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].strip():
            bad.append(item)
            continue
        key, text = item.split("=", 1)
        _set_path(out, key.strip(), parse_value(text.strip()))
    if bad:
        raise ValueError(f"overrides must look like key.sub=value, got {bad}")
    return out
