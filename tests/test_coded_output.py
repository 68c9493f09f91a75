"""A categorical aggregate output moved as one number (its code), not a one-hot.

``make._coded_output``: the head copies the selected key's code ``c_j = j - (n-1)/2``
and the unembedding's logit for value j is ``2 c_j x - c_j^2``, largest for the code
nearest ``x``.  The head's value path is one dimension instead of one per value.
"""

from __future__ import annotations

from check import all_inputs, compile_source, mismatches, random_inputs

from rasp_compiler.compiler.plan.make import CODED_OUTPUT_MIN_VALUES

LETTERS = "abcdefghijklmnopqrstuvwxyz"

REVERSE = """
opp_index = length - indices - 1;
reverse = aggregate(select(indices, opp_index, ==), tokens);
"""


def _checked(src: str, vocab: str, max_len: int, exhaustive: int, samples: int, seed: int = 0):
    sop, model = compile_source(src, vocab, max_len)
    inputs = all_inputs(vocab, exhaustive) + random_inputs(vocab, max_len, samples, seed)
    checked, bad = mismatches(sop, model, inputs)
    assert checked >= len(inputs) // 2 and not bad, bad[:3]
    return model


def _labels(model) -> list[str]:
    return [e["name"] for e in model.spec.layout]


def test_reverse_moves_one_number_and_is_exact():
    model = _checked(REVERSE, LETTERS[:12], 64, exhaustive=3, samples=300)
    assert any(name.endswith(":code") for name in _labels(model))
    last = model.config.layer(model.config.n_layers - 1)
    assert last.n_heads == 1 and last.d_head <= 4  # two score terms; one value, not 13
    W_U = model.transformer.unembed.W_U.detach().numpy()
    assert W_U.shape[1] == 13  # still one logit per value: 0 and a..l


def test_a_coded_output_is_smaller_than_its_one_hot():
    one_hot = compile_source(REVERSE, LETTERS[: CODED_OUTPUT_MIN_VALUES - 2], 16)[1]
    coded = compile_source(REVERSE, LETTERS[: CODED_OUTPUT_MIN_VALUES - 1], 16)[1]
    assert not any(n.endswith(":code") for n in _labels(one_hot))
    assert any(n.endswith(":code") for n in _labels(coded))
    assert coded.config.d_model < one_hot.config.d_model


def test_a_query_without_a_key_gets_the_default_from_bos():
    src = 'shifted = aggregate(select(indices, indices + 1, ==), tokens, "_");'
    model = _checked(src, LETTERS[:9], 12, exhaustive=4, samples=200)
    assert any(name.endswith(":code") for name in _labels(model))
    assert model.run("abc") == ["b", "c", "_"]


def test_a_coded_copy_of_a_copy_is_exact():
    # the copied one-hot is itself a head's output: its error, times the codes, must
    # stay inside the code's tolerance (the copied head is required more precisely)
    src = (
        REVERSE
        + """
    back = aggregate(select(indices, length - indices - 1, ==), reverse);
    """
    )
    _checked(src, LETTERS[:10], 40, exhaustive=3, samples=300, seed=1)


def test_sort_with_a_coded_output_is_exact():
    src = """
    goes_before = select(tokens, tokens, <) or (select(tokens, tokens, ==)
        and select(indices, indices, <));
    target = selector_width(goes_before);
    sorted_tokens = aggregate(select(target, indices, ==), tokens);
    """
    model = _checked(src, LETTERS[:10], 48, exhaustive=3, samples=300, seed=2)
    assert any(name.endswith(":code") for name in _labels(model))


def test_numbers_copied_from_one_key_move_as_themselves():
    # a categorical aggregate of numbers (one key per query) decodes as a number: the
    # head moves the number, not its one-hot
    src = """
    flip = select(indices, length - indices - 1, ==);
    tripled = aggregate(flip, 3 * indices + 1);
    """
    sop, model = compile_source(src, "ab", 24)
    assert model.spec.output.encoding == "numerical"
    last = model.config.layer(model.config.n_layers - 1)
    assert last.d_head <= 4  # not one value dimension per number
    inputs = all_inputs("ab", 6) + random_inputs("ab", 24, 200)
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:3]
