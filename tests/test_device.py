import pytest
import torch

from vcreg._device import resolve_device


def test_auto_and_none_pick_cuda_only_when_available():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device(None).type == want


def test_explicit_cpu_and_device_objects():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["bogus", "cuda:x", "gpu", "cpu:a"])
def test_unknown_device_names_the_choice(bad):
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_an_error_not_a_fallback():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_type_error_for_non_strings():
    with pytest.raises(TypeError, match="device must be"):
        resolve_device(3)
