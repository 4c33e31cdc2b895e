"""training.export: the ONNX exports of a model, their check against PyTorch, and which engine score runs.

A tiny from-config BERT (no hub), exported for real with torch.onnx and ONNX Runtime."""

import numpy as np
import pytest

from training.export import (
    FILES, ONNX, ONNX_INT8, TORCH, ExportCheck, ExportRecord, choose_engine, export_model, quantize_int8, write_fp32,
)


@pytest.fixture(scope="module")
def tiny_model():
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    torch.manual_seed(0)
    config = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=3)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa").eval()


def rows(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(5, 300, int(rng.integers(2, 40))) for _ in range(n)]


def test_both_exports_are_checked_against_pytorch_on_the_same_rows_and_recorded(tiny_model, tmp_path):
    record = export_model(tiny_model, tmp_path, rows(), pad_id=0)
    fp32, int8 = record.check(ONNX), record.check(ONNX_INT8)
    assert (fp32.rows, int8.rows) == (120, 120) and (tmp_path / FILES[ONNX_INT8]).is_file()
    assert fp32.agreement == 1.0 and fp32.max_prob_diff < 1e-5  # the same function, in another order
    assert 0.9 <= int8.agreement <= 1.0 and 0 < int8.max_prob_diff < 0.1
    assert ExportRecord.read(tmp_path) == record  # exports.json: one writer, one reader
    assert record.metrics()["export/onnx-int8/agreement"] == int8.agreement
    assert not tiny_model.training


def test_an_export_that_computes_another_function_fails_its_check(tiny_model, tmp_path):
    import copy

    import torch

    broken = copy.deepcopy(tiny_model)
    with torch.no_grad():
        broken.classifier.weight.copy_(broken.classifier.weight.flip(0))  # the classes' rows swapped
        broken.classifier.bias.copy_(broken.classifier.bias.flip(0))
    write_fp32(broken, tmp_path / FILES[ONNX])
    quantize_int8(tmp_path / FILES[ONNX], tmp_path / FILES[ONNX_INT8])
    from training.export import check_exports

    record = check_exports(tiny_model, tmp_path, rows(), pad_id=0)
    assert record.check(ONNX_INT8).agreement < 0.9 and record.problem(ONNX, 0.995) is not None
    assert choose_engine("auto", record, 0.995, gpu=False)[0] == TORCH


def record_of(int8_agreement: float, int8_speed=900.0, fp32_speed=500.0) -> ExportRecord:
    return ExportRecord((ExportCheck(ONNX, FILES[ONNX], 1.0, 1e-7, 400, fp32_speed),
                         ExportCheck(ONNX_INT8, FILES[ONNX_INT8], int8_agreement, 0.02, 400, int8_speed)), 300.0, "cpu")


def test_auto_is_the_fastest_export_that_passed_on_cpu_and_torch_on_a_gpu():
    assert choose_engine("auto", record_of(0.998), 0.995, gpu=False) == (ONNX_INT8, [])
    assert choose_engine("auto", record_of(0.998, int8_speed=400.0), 0.995, gpu=False) == (ONNX, [])
    assert choose_engine("auto", record_of(0.998), 0.995, gpu=True) == (TORCH, [])
    assert choose_engine("auto", None, 0.995, gpu=False) == (TORCH, [])  # a model logged without exports


def test_an_int8_export_below_the_bound_is_replaced_by_the_next_engine_with_a_warning_naming_the_figure():
    engine, warnings = choose_engine("auto", record_of(0.99), 0.995, gpu=False)
    assert engine == ONNX and len(warnings) == 1
    assert "agrees with PyTorch on 99.00% of 400 validation rows, below score.int8_min_agreement=99.50%" in warnings[0]
    engine, warnings = choose_engine(ONNX_INT8, record_of(0.99), 0.995, gpu=False)
    assert engine == ONNX and warnings[0].startswith("WARNING (score): score.engine=onnx-int8: its onnx-int8 export")
    assert warnings[0].endswith("; scoring with onnx")
    assert choose_engine(ONNX_INT8, record_of(0.99), 0.98, gpu=False) == (ONNX_INT8, [])
    engine, warnings = choose_engine(ONNX_INT8, None, 0.995, gpu=False)  # no exports: down to torch, said twice
    assert engine == TORCH and len(warnings) == 2 and "logged without ONNX exports" in warnings[0]


def test_an_export_whose_file_is_missing_or_whose_check_gave_nan_is_not_used(tmp_path):
    checks = (ExportCheck(ONNX, FILES[ONNX], 1.0, float("nan"), 100, 500.0),
              ExportCheck(ONNX_INT8, FILES[ONNX_INT8], 1.0, 0.01, 100, 900.0))
    ExportRecord(checks, 100.0, "cpu").write(tmp_path)
    (tmp_path / FILES[ONNX]).write_bytes(b"onnx")  # the int8 file never arrived (a download during the upload)
    record = ExportRecord.read(tmp_path)
    assert record.check(ONNX_INT8) is None
    assert "differ from PyTorch's by up to nan" in record.problem(ONNX, 0.995)
    engine, warnings = choose_engine(ONNX_INT8, record, 0.995, gpu=False)
    assert engine == TORCH and "has no onnx-int8 export" in warnings[0] and "up to nan" in warnings[1]
    assert choose_engine("auto", record, 0.995, gpu=False)[0] == TORCH
