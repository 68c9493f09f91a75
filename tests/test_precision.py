"""Certified precision: a model is compiled for a dtype only if its margins survive it."""

from __future__ import annotations

import pytest
import torch
from check import all_inputs, compile_source, mismatches, random_inputs

from rasp_compiler.compiler.pipeline import compile_sop, largest_certified_length
from rasp_compiler.errors import CompileError
from rasp_compiler.language.lower import get_sop, load_source

REVERSE = "r = aggregate(select(indices, length - indices - 1, ==), tokens);"
FRAC = 'f = aggregate(select(indices, indices, <=), indicator(tokens == "a"));'


def _sop(src):
    s = load_source(src)
    return get_sop(s, s.last_sop_name())


def test_low_precision_is_refused_with_the_reason_and_line():
    with pytest.raises(CompileError) as info:
        compile_sop(_sop(REVERSE), tuple("abcd"), 64, dtype="bfloat16")
    text = info.value.render()
    assert "bfloat16" in text and ":1:" in text


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("src", [REVERSE, FRAC], ids=["reverse", "frac_prevs"])
def test_certified_models_are_exact_in_their_dtype(src, dtype):
    sop = _sop(src)
    n, reason = largest_certified_length(sop, tuple("abcd"), dtype, upto=64)
    # both programs are exact in every dtype at some length: certifying none is a failure
    assert n >= 1, f"nothing certified in {dtype}: {reason}"
    model = compile_sop(sop, tuple("abcd"), n, dtype=dtype)
    assert model.dtype == getattr(torch, dtype)
    inputs = all_inputs("abcd", min(n, 4)) + random_inputs("abcd", n, 100)
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:1]


def test_float32_is_certified_at_the_requested_length():
    sop, model = compile_source(FRAC, "abcd", 64)
    assert largest_certified_length(sop, tuple("abcd"), "float32", upto=64)[0] == 64


def test_a_counting_head_reading_a_joint_number_table_is_reported_not_certified():
    # dyck2's depth index counts keys whose scores read a table over two counts at once:
    # the bound on that table's rounding (every rounding at its worst) exceeds the
    # head's budget, so the compile says its precision is not certified (the model is
    # checked exact elsewhere; the warning says to verify), naming the line
    from pathlib import Path

    from rasp_compiler.compiler.pipeline import compile_program

    examples = Path(__file__).resolve().parent.parent / "examples"
    model = compile_program(str(examples / "dyck2.rasp"), vocab="(){}", max_len=16)
    assert any("precision not certified" in w and "dyck2.rasp:" in w for w in model.warnings)
    plain = compile_program(str(examples / "reverse.rasp"), vocab="abc", max_len=16)
    assert plain.warnings == []
