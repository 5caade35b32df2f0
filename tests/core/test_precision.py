import pytest
import torch

from rest_core import precision


@pytest.fixture
def fresh_choice():
    precision.fastest_cpu_dtype.cache_clear()
    yield
    precision.fastest_cpu_dtype.cache_clear()


def test_a_cpu_without_native_bfloat16_matmuls_runs_in_float32(monkeypatch, fresh_choice):
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: False)
    assert precision.fastest_cpu_dtype() == torch.float32


@pytest.mark.parametrize("speedup, chosen", [(3.0, torch.bfloat16), (1.05, torch.float32)])
def test_native_bfloat16_is_chosen_only_where_it_measures_faster(monkeypatch, fresh_choice, speedup, chosen):
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: True)
    monkeypatch.setattr(precision, "linear_seconds", lambda dtype: speedup if dtype == torch.float32 else 1.0)
    assert precision.fastest_cpu_dtype() == chosen


def test_an_emulated_dtype_is_named_with_what_to_choose_instead(monkeypatch):
    monkeypatch.setattr(precision, "onednn_runs", lambda dtype: dtype == torch.float32)
    warning = precision.emulated_dtype_warning(torch.bfloat16, "cpu")
    assert "bfloat16" in warning and "emulated" in warning and "auto or float32" in warning
    assert precision.emulated_dtype_warning(torch.float32, "cpu") is None
    assert precision.emulated_dtype_warning(torch.bfloat16, torch.device("cuda")) is None


def test_a_dtype_onednn_runs_is_not_warned_of(monkeypatch):
    monkeypatch.setattr(precision, "onednn_runs", lambda dtype: True)
    assert precision.emulated_dtype_warning(torch.float16, "cpu") is None


def test_the_check_asks_onednn_about_this_cpu():
    assert precision.onednn_runs(torch.float32)
    assert precision.onednn_runs(torch.bfloat16) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
