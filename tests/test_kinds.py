"""Ints and floats: the interpreter's mean is an int from one key (the value as it is)
and a float from several; the compiled model says which for an aggregate's own output."""

from __future__ import annotations

import json

import pytest
from check import all_inputs, compile_source, random_inputs

from rasp_compiler.language.interpret import evaluate
from rasp_compiler.runtime import OutputSpec
from rasp_compiler.verification import same_kinds, same_output, verify

MEANS = [
    "m = aggregate(select(indices, indices, <), indices);",
    'm = aggregate(select(indices, indices, <=), indicator(tokens == "a"));',
    "m = aggregate(select(tokens, tokens, <) or select(indices, indices, ==), indices);",
    'm = aggregate(select(tokens, "a", ==) or select(indices, 0, ==), indices, -1);',
    "m = aggregate(select(tokens, tokens, ==), indices);",
    # values held at positions (their means are listed from the positions' values)
    "m = aggregate(select(tokens, tokens, <=), indices % 3);",
]
# outputs computed from such means: one table reads each mean beside its key count
FROM_MEANS = [
    "m = aggregate(select(tokens, tokens, ==), indices) * length;",
    "m = aggregate(select(indices, indices, <), indices) - indices;",
    'm = aggregate(select(indices, indices, <=), indicator(tokens == "a")) + 1;',
]


@pytest.mark.parametrize("src", MEANS + FROM_MEANS)
def test_a_mean_output_has_the_interpreters_int_or_float_at_every_position(src):
    sop, model = compile_source(src, "abcd", 6)
    assert model.warnings == []
    assert (model.spec.output.kinds is not None) == (src in MEANS)
    inputs = all_inputs("abcd", 4) + random_inputs("abcd", 6, 200)
    got = model.run_batch(inputs)
    kinds_seen = set()
    for inp, out in zip(inputs, got, strict=True):
        want = evaluate(sop, inp)
        assert same_output(want, out) and same_kinds(want, out), (inp, want, out)
        kinds_seen |= {type(v) for v in want}
    assert kinds_seen == {int, float}  # both kinds occur, so the check compared both


def test_the_kind_decoding_survives_saving_as_json():
    _, model = compile_source(MEANS[0], "abcd", 6)
    spec = model.spec.output
    again = OutputSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.d_vocab_out == 2
    # 1/(keys + 1): no key -> the default, one key -> the value as it is, more -> a float
    assert again.decode_kind(0.0, 1.0) == 0 and type(again.decode_kind(0.0, 1.0)) is int
    assert type(again.decode_kind(2.0, 0.5)) is int
    assert again.decode_kind(2.0, 0.25) == 2.0 and type(again.decode_kind(2.0, 0.25)) is float


def test_an_output_whose_kind_the_model_cannot_tell_is_a_warning_and_counted_by_verify():
    # a mean of means: one key's value is a mean itself, an int or a float by its own
    # key count, which the model does not carry; compile says so and verify counts the
    # outputs that differ only in kind apart from mismatches
    sop, model = compile_source(
        "v = aggregate(select(tokens, tokens, !=), indices);"
        " m = aggregate(select(tokens, tokens, ==), v);",
        "abc",
        5,
    )
    assert any("an int or an equal float" in w for w in model.warnings)
    report = verify(sop, model, tuple("abc"), 5, samples=50)
    assert report.ok and report.mismatches == 0
    assert report.kind_differences > 0 and report.first_kind_difference is not None
    assert "printed with another int/float kind" in report.verdict()
