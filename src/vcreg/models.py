"""Encoders f (inputs -> representation X in R^d) for SSL training.

``build_encoder(name, input_shape, repr_dim, **options) -> nn.Module`` with ``.out_dim == repr_dim``
and ``.input_shape``; forward maps (B, *input_shape) -> (B, repr_dim). The representation (the
projector's input, whose pairwise independence the paper measures) is the encoder's output.

- ``"cnn1d"``: small 1-D CNN for MNIST-1D (input (C, L)): three Conv1d(k=5)-BN-ReLU blocks with
  ``channels`` (default 32, 64, 64) and strides 1, 2, 2, flattened, then Linear -> repr_dim.
  Flattening keeps the position information that distinguishes MNIST-1D digits after pooling
  would blur it; ~0.5 M multiply-adds per signal, so CPU training is dominated by the projector.
- ``"smallcnn"``: 2-D CNN for small images (Fashion-MNIST, any (C, H, W)): four Conv3x3-BN-ReLU
  blocks with ``channels`` (default 32, 64, 128, 128), strides 1, 2, 2, 2, global average pool,
  Linear -> repr_dim.
- ``"resnet18"``: torchvision ResNet-18 with the CIFAR stem (3x3 conv stride 1, no max-pool), fc
  removed; the 512-d average-pooled feature is the representation (repr_dim=512), otherwise a
  Linear(512, repr_dim) is appended. Any (C, H, W) works (C sets the stem's input channels).
- ``"mlp"``: vector data (input (D,)): Linear-BN-ReLU blocks of widths ``hidden`` (default
  256, 256), then Linear -> repr_dim.

:class:`SSLModel` is ``projector(encoder(x))``; :func:`build_model` builds it from a training
config (``TrainConfig``'s ``seed``, ``encoder`` and ``projector`` sections), initialised
deterministically from the run seed.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from vcreg._exportfile import ExportFileError, check_config, check_hash, read_header
from vcreg._seed import mix_seed
from vcreg.projectors import MLPProjector, RandomFeatureProjector

if TYPE_CHECKING:  # type only: models sit below training in the layer order
    from vcreg.training.config import TrainConfig

__all__ = [
    "ENCODERS",
    "Encoder",
    "SSLModel",
    "build_encoder",
    "build_model",
    "build_projector",
    "load_encoder",
    "read_export_config",
]

ENCODERS = ("cnn1d", "smallcnn", "resnet18", "mlp")

# `vcreg export` files: safetensors with SSLModel's key names ("encoder.<name>", optionally
# "projector.<name>") and the metadata {"format": EXPORT_FORMAT, "version", "config": JSON,
# "sha256": content hash} (vcreg._exportfile; version 1 files have no hash)
EXPORT_FORMAT = "vcreg-encoder"
EXPORT_VERSION = 2


class Encoder(nn.Module):
    """``body`` followed by an optional linear head; records ``out_dim`` and ``input_shape``."""

    def __init__(
        self, body: nn.Module, out_dim: int, input_shape: tuple[int, ...], strict_shape: bool
    ):
        super().__init__()
        self.body = body
        self.out_dim = int(out_dim)
        self.input_shape = tuple(input_shape)
        # flatten-based encoders need the exact shape; pooled CNNs only the channel count
        self.strict_shape = strict_shape

    def forward(self, x: Tensor) -> Tensor:
        n = len(self.input_shape)
        ok = x.ndim == n + 1 and (
            tuple(x.shape[1:]) == self.input_shape
            if self.strict_shape
            else x.shape[1] == self.input_shape[0]
        )
        if not ok:
            raise ValueError(
                f"encoder expects input of shape (B, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        return self.body(x)


def _positive_ints(name: str, values: Sequence[int]) -> list[int]:
    vals = list(values)
    if not vals or any(not isinstance(v, int) or v < 1 for v in vals):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {values!r}")
    return vals


def _cnn1d(
    input_shape: tuple[int, ...],
    repr_dim: int,
    channels: Sequence[int] = (32, 64, 64),
    kernel_size: int = 5,
) -> nn.Module:
    if len(input_shape) != 2:
        raise ValueError(f"cnn1d needs input_shape (C, L), got {input_shape}")
    chans = _positive_ints("channels", channels)
    c_in, length = input_shape
    layers: list[nn.Module] = []
    for i, c_out in enumerate(chans):
        stride = 1 if i == 0 else 2
        layers += [
            nn.Conv1d(
                c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
            ),
            nn.BatchNorm1d(c_out),
            nn.ReLU(inplace=True),
        ]
        c_in = c_out
    conv = nn.Sequential(*layers)
    with torch.no_grad():
        flat = conv.eval()(torch.zeros(1, *input_shape)).numel()
    conv.train()
    return nn.Sequential(conv, nn.Flatten(), nn.Linear(flat, repr_dim))


def _smallcnn(
    input_shape: tuple[int, ...], repr_dim: int, channels: Sequence[int] = (32, 64, 128, 128)
) -> nn.Module:
    if len(input_shape) != 3:
        raise ValueError(f"smallcnn needs input_shape (C, H, W), got {input_shape}")
    chans = _positive_ints("channels", channels)
    c_in = input_shape[0]
    layers: list[nn.Module] = []
    for i, c_out in enumerate(chans):
        layers += [
            nn.Conv2d(c_in, c_out, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
        c_in = c_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, repr_dim))


def _resnet18(input_shape: tuple[int, ...], repr_dim: int, cifar_stem: bool = True) -> nn.Module:
    from torchvision.models import resnet18

    if len(input_shape) != 3:
        raise ValueError(f"resnet18 needs input_shape (C, H, W), got {input_shape}")
    net = resnet18(weights=None)
    if cifar_stem:
        net.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif input_shape[0] != 3:
        net.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity() if repr_dim == 512 else nn.Linear(512, repr_dim)
    return net


def _mlp(
    input_shape: tuple[int, ...], repr_dim: int, hidden: Sequence[int] = (256, 256)
) -> nn.Module:
    if len(input_shape) != 1:
        raise ValueError(f"mlp needs input_shape (D,), got {input_shape}")
    dims = [input_shape[0], *_positive_ints("hidden", hidden)] if hidden else [input_shape[0]]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-1], repr_dim))
    return nn.Sequential(*layers)


_BUILDERS = {"cnn1d": _cnn1d, "smallcnn": _smallcnn, "resnet18": _resnet18, "mlp": _mlp}


def build_encoder(name: str, input_shape: Sequence[int], repr_dim: int, **options: Any) -> Encoder:
    """Build the named encoder; options: cnn1d ``channels``, ``kernel_size``; smallcnn
    ``channels``; resnet18 ``cifar_stem=True``; mlp ``hidden``. Unknown names/options -> ValueError.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown encoder {name!r}; available: {list(ENCODERS)}")
    shape = tuple(int(s) for s in input_shape)
    if any(s < 1 for s in shape):
        raise ValueError(f"input_shape must contain positive sizes, got {tuple(input_shape)}")
    if isinstance(repr_dim, bool) or not isinstance(repr_dim, int) or repr_dim < 1:
        raise ValueError(f"repr_dim must be a positive int, got {repr_dim!r}")
    valid = set(inspect.signature(_BUILDERS[name]).parameters) - {"input_shape", "repr_dim"}
    bad = sorted(set(options) - valid)
    if bad:
        raise ValueError(f"unknown option(s) {bad} for encoder {name!r}; valid: {sorted(valid)}")
    body = _BUILDERS[name](shape, repr_dim, **options)
    return Encoder(body, repr_dim, shape, strict_shape=name in ("cnn1d", "mlp"))


class SSLModel(nn.Module):
    """``projector(encoder(x))``; ``encoder(x)`` is the representation (the paper's X)."""

    def __init__(self, encoder: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    def forward(self, x: Tensor) -> Tensor:
        return self.projector(self.encoder(x))


def build_projector(cfg: TrainConfig) -> nn.Module:
    """The projector of a config's ``projector`` section on ``encoder.repr_dim`` inputs.

    Random weights (frozen MLP, random features) are seeded from ``mix_seed(cfg.seed, 2 | 3)``.
    """
    pr, d = cfg.projector, cfg.encoder.repr_dim
    if pr.kind == "mlp":
        return MLPProjector(
            d,
            pr.spec,
            batch_norm=pr.batch_norm,
            activation=pr.activation,
            frozen=pr.frozen,
            seed=mix_seed(cfg.seed, 2) % 2**62,
        )
    if pr.kind == "random_features":
        return RandomFeatureProjector(
            d,
            pr.features_per_dim,
            kernel=pr.kernel,
            bandwidth=pr.bandwidth,
            seed=mix_seed(cfg.seed, 3) % 2**31,
            scale=pr.scale,
            standardize=pr.standardize,
        )
    projector = nn.Identity()
    projector.out_dim = d  # type: ignore[assignment]
    return projector


def build_model(cfg: TrainConfig, input_shape: tuple[int, ...]) -> SSLModel:
    """Encoder + projector from a training config; the encoder is initialised from
    ``mix_seed(cfg.seed, 1)`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mix_seed(cfg.seed, 1))
        encoder = build_encoder(
            cfg.encoder.name, input_shape, cfg.encoder.repr_dim, **cfg.encoder.options
        )
    return SSLModel(encoder, build_projector(cfg))


def read_export_config(path: str | Path) -> dict[str, Any]:
    """The model config stored in a ``vcreg export`` file (``{"encoder": {"name",
    "input_shape", "repr_dim", "options"}, ...}``), after the file's content hash is verified
    and the config checked against the export schema (``vcreg._exportfile``); ValueError
    (one line) if the file is not one, is damaged, or declares out-of-bounds sizes."""
    path = Path(path)
    header = read_header(path)
    meta = header.metadata
    if meta.get("format") != EXPORT_FORMAT or "config" not in meta:
        raise ValueError(
            f"{path} is a safetensors file but not a vcreg export (no {EXPORT_FORMAT!r} "
            f"metadata); write one with `vcreg export RUN --out {path.name}`"
        )
    version = meta.get("version", "")
    if not (version.isdigit() and len(version) < 6):
        raise ExportFileError(f"{path}: invalid export version {version[:20]!r}")
    if int(version) > EXPORT_VERSION:
        raise ValueError(f"{path} was written by a newer vcreg (export version {version}); upgrade")
    check_hash(path, header, int(version))
    try:
        config = json.loads(meta["config"])
    except json.JSONDecodeError:
        raise ExportFileError(f"{path}: its config metadata is not valid JSON") from None
    return check_config(config, path)


def _tensor_index(path: Path, prefix: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` of the file's ``prefix.*`` tensors, read from the header."""
    return {
        k[len(prefix) :]: (tuple(v["shape"]), v["dtype"])
        for k, v in read_header(path).index.items()
        if k.startswith(prefix)
    }


_ST_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
              torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32"}  # fmt: skip


def _check_fits(path: Path, name: str, encoder: nn.Module) -> None:
    """The encoder (built on the meta device: nothing allocated) has exactly the file's tensors,
    shapes and dtypes: what loading then allocates is bounded by the file's own size."""
    want = {k: (tuple(v.shape), _ST_DTYPES.get(v.dtype)) for k, v in encoder.state_dict().items()}
    have = _tensor_index(path, "encoder.")
    diff = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
    if diff:
        k = diff[0]
        raise ValueError(
            f"{path}: the stored weights do not fit the {name!r} encoder its config describes "
            f"({len(diff)} tensor(s) differ; {k!r}: config {want.get(k)}, file {have.get(k)})"
        )


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> Encoder:
    """The encoder of a ``vcreg export`` file, in eval mode, with bit-identical weights.

    The file is verified (:func:`read_export_config`), the architecture built on the meta
    device from its metadata with :func:`build_encoder` and checked against the file's tensor
    index, then materialized and filled with the ``encoder.*`` tensors (strict): a file cannot
    make vcreg allocate more than its own weights.
    """
    path = Path(path)
    enc = read_export_config(path)["encoder"]
    try:
        with torch.device("meta"), torch.random.fork_rng(devices=[]):
            encoder = build_encoder(
                enc["name"], enc["input_shape"], enc["repr_dim"], **enc.get("options", {})
            )
    except (TypeError, ValueError) as exc:
        raise ExportFileError(f"{path}: invalid encoder in its metadata: {exc}") from None
    _check_fits(path, enc["name"], encoder)
    persistent = set(encoder.state_dict())
    if any(n not in persistent for n, _ in encoder.named_buffers()):  # would stay uninitialized
        with torch.random.fork_rng(devices=[]):
            encoder = build_encoder(
                enc["name"], enc["input_shape"], enc["repr_dim"], **enc.get("options", {})
            )
    else:
        encoder = encoder.to_empty(device="cpu")
    try:
        with safe_open(str(path), framework="pt") as fh:
            state = {k: fh.get_tensor(f"encoder.{k}") for k in persistent}
    except (SafetensorError, OSError) as exc:
        raise ExportFileError(
            f"cannot read {path}: not a readable safetensors file ({exc})"
        ) from None
    encoder.load_state_dict(state, strict=True)
    return encoder.to(device).eval()
