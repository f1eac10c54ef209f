"""Tests for vcreg.models.build_encoder: output shapes, out_dim, the ResNet-18 CIFAR stem and
input validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vcreg.models import ENCODERS, build_encoder


@pytest.mark.parametrize(
    ("name", "shape", "dim"),
    [
        ("cnn1d", (1, 40), 64),
        ("cnn1d", (3, 17), 8),
        ("smallcnn", (1, 28, 28), 128),
        ("smallcnn", (3, 32, 32), 16),
        ("resnet18", (3, 16, 16), 512),
        ("resnet18", (1, 12, 12), 100),
        ("mlp", (10,), 32),
    ],
)
def test_output_shapes_and_gradients(name: str, shape: tuple[int, ...], dim: int) -> None:
    torch.manual_seed(0)
    enc = build_encoder(name, shape, dim)
    assert enc.out_dim == dim and enc.input_shape == shape
    x = torch.randn(2, *shape)
    out = enc(x)
    assert out.shape == (2, dim) and out.dtype == torch.float32
    if (
        name != "resnet18"
    ):  # (backward through ResNet-18 is slow on CPU; its blocks are torchvision's)
        out.pow(2).mean().backward()
        assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    enc.eval()
    with torch.no_grad():
        assert torch.equal(enc(x[:2]), enc(x[:2]))  # eval mode is deterministic


def test_resnet18_cifar_stem() -> None:
    enc = build_encoder("resnet18", (3, 32, 32), 512)
    net = enc.body
    assert isinstance(net.conv1, nn.Conv2d)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert net.conv1.padding == (1, 1) and net.conv1.in_channels == 3
    assert isinstance(net.maxpool, nn.Identity) and isinstance(net.fc, nn.Identity)
    # no downsampling in the stem: layer1 sees the full 32x32 resolution
    seen: dict[str, tuple[int, ...]] = {}

    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        seen["hw"] = tuple(output.shape[-2:])

    net.layer1.register_forward_hook(hook)
    with torch.no_grad():
        enc(torch.randn(2, 3, 8, 8))
    assert tuple(seen["hw"]) == (8, 8)
    head = build_encoder("resnet18", (3, 32, 32), 128).body.fc
    assert isinstance(head, nn.Linear) and head.in_features == 512 and head.out_features == 128
    imagenet = build_encoder("resnet18", (3, 64, 64), 512, cifar_stem=False).body
    assert imagenet.conv1.kernel_size == (7, 7) and isinstance(imagenet.maxpool, nn.MaxPool2d)


def test_cnn1d_is_small() -> None:
    enc = build_encoder("cnn1d", (1, 40), 128)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv1d)]
    assert [c.out_channels for c in convs] == [32, 64, 64]
    assert sum(p.numel() for p in enc.parameters()) < 200_000
    custom = build_encoder("cnn1d", (1, 40), 16, channels=(8, 8), kernel_size=3)
    assert [m.out_channels for m in custom.modules() if isinstance(m, nn.Conv1d)] == [8, 8]


def test_bad_input() -> None:
    assert set(ENCODERS) == {"cnn1d", "smallcnn", "resnet18", "mlp"}
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("vit", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="unknown option"):
        build_encoder("cnn1d", (1, 40), 10, width=3)
    with pytest.raises(ValueError, match="repr_dim"):
        build_encoder("cnn1d", (1, 40), 0)
    with pytest.raises(ValueError, match="input_shape"):
        build_encoder("cnn1d", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="channels"):
        build_encoder("smallcnn", (1, 28, 28), 10, channels=())
    enc = build_encoder("cnn1d", (1, 40), 10)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 1, 40\)"):
        enc(torch.randn(2, 1, 41))
    img = build_encoder("smallcnn", (1, 28, 28), 10)
    assert img(torch.randn(2, 1, 32, 32)).shape == (2, 10)  # pooled CNNs accept other sizes
    with pytest.raises(ValueError, match="expects input"):
        img(torch.randn(2, 3, 28, 28))
