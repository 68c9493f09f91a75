"""The shared corpus of RASP programs every compiled model must agree with the interpreter on.

Each entry: (name, RASP source, vocabulary).  The s-op compiled is the last one the
source assigns.  Vocabularies have 4 tokens (brackets for Dyck) so that exhaustive
checks over all inputs up to length 6 stay cheap.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"

LETTERS = "abcd"
DIGITS = "0123"

# (name, source, vocab)
EXPRESSIONS: list[tuple[str, str, str]] = [
    ("reverse", "r = aggregate(select(indices, length - indices - 1, ==), tokens);", LETTERS),
    ("histogram", "h = selector_width(select(tokens, tokens, ==));", LETTERS),
    ("sort", "s = sort(tokens, tokens);", LETTERS),
    ("sort_neg_indices", "s = sort(tokens, -indices);", LETTERS),
    ("sort_indices_by_tokens", "s = sort(indices, tokens);", LETTERS),
    ("mean_before", "m = aggregate(select(indices, indices, <), indices);", LETTERS),
    ("mean_after_default", "m = aggregate(select(indices, indices, >), indices, -1);", LETTERS),
    ("shift_tokens", 's = shift(tokens, 1, "_");', LETTERS),
    ("shift_indices", "s = shift(indices, -1, 99);", LETTERS),
    ("mark_first", 'm = mark_first_instance(tokens, "b");', LETTERS),
    ("mark_last", 'm = mark_last_instance(tokens, "b");', LETTERS),
    ("count", 'c = count(tokens, "a");', LETTERS),
    ("contains", 'c = contains(tokens, "c");', LETTERS),
    ("average_indices", "a = average(indices);", LETTERS),
    ("max_mirror", "m = max(indices, length - indices - 1);", LETTERS),
    ("min_mirror", "m = min(indices, length - indices - 1);", LETTERS),
    ("round_half", "r = round(indices + 0.5);", LETTERS),
    ("length", "l = length;", LETTERS),
    ("has_focus", 'h = has_focus(select(tokens, "a", ==));', LETTERS),
    ("load_from_location", "l = load_from_location(tokens, length - indices - 1);", LETTERS),
    ("select_from_first", 's = aggregate(select_from_first(tokens, "a"), indices);', LETTERS),
    ("select_from_last", 's = aggregate(select_from_last(tokens, "b"), indices);', LETTERS),
    (
        "select_next_identical",
        "s = aggregate(select_next_identical(tokens), indices, -1);",
        LETTERS,
    ),
    (
        "frac_prevs",
        'f = aggregate(select(indices, indices, <=), indicator(tokens == "a"));',
        LETTERS,
    ),
    ("tokens_int_sum", "tokens = tokens_int; s = tokens + indices * 2;", DIGITS),
    (
        "tokens_int_mean",
        "tokens = tokens_int; m = aggregate(select(tokens, tokens, <=), tokens);",
        DIGITS,
    ),
    ("string_concat", 'c = tokens + "!";', LETTERS),
    ("ternary_mixed", 't = "x" if tokens == "a" else tokens;', LETTERS),
    ("in_list", 'i = tokens in ["a", "c"];', LETTERS),
    ("lookup_dict", 'd = {"a": 1, "b": 2, "c": 3, "d": 4}[tokens] * indices;', LETTERS),
    ("atom_in_sop", 'z = "b" in tokens;', LETTERS),
    ("index_broadcast", "f = tokens[0];", LETTERS),
    ("index_negative", "f = tokens[-1];", LETTERS),
    ("not_selector", "w = selector_width(not select(tokens, tokens, ==));", LETTERS),
    (
        "or_selector_width",
        'w = selector_width(select(tokens, "a", ==) or select(indices, 0, ==));',
        LETTERS,
    ),
    (
        "and_selector_agg",
        "p = aggregate(select(tokens, tokens, ==) and select(indices, indices, <), indices, -1);",
        LETTERS,
    ),
    ("two_input_mlp", 'x = (tokens == "a") and (indices > 1);', LETTERS),
    ("chain_mlp", "x = ((indices * 3) % 4) + length;", LETTERS),
    ("width_then_compare", "w = selector_width(select(tokens, tokens, <)) > 1;", LETTERS),
    ("mean_then_round", "m = round(aggregate(select(indices, indices, <=), indices));", LETTERS),
    ("division", "d = indices / length;", LETTERS),
    ("power_mod", "p = (indices ^ 2) % 3;", LETTERS),
    (
        "cat1_chain_select",
        's = indicator(tokens == "a") - indicator(tokens == "b");'
        " w = selector_width(select(s, s, ==) and select(indices, indices, <=));",
        LETTERS,
    ),
    (
        "mlp_through_not",
        'p = (tokens == "a") and (indices > 1); q = (not p) or (length == 3);',
        LETTERS,
    ),
    (
        "width_difference_select",
        'a = selector_width(select(tokens, "a", ==) and select(indices, indices, <=));'
        ' b = selector_width(select(tokens, "b", ==) and select(indices, indices, <=));'
        ' d = a - b + indicator(tokens == "c");'
        " w = selector_width(select(d, d, ==) and select(indices, indices, <));",
        LETTERS,
    ),
    (
        "shift_left_default",
        'x = aggregate(select(indices, indices - 1, ==), tokens, "_");',
        LETTERS,
    ),
    (
        "run_of_repeats",
        'prev = aggregate(select(indices, indices - 1, ==), tokens, "^");'
        " same = prev == tokens;"
        " r = selector_width(select(same, True, ==) and select(indices, indices, <=));",
        LETTERS,
    ),
    (
        "half_reverse",
        "l = length; h = indices < l / 2;"
        " r = aggregate(select(indices, length - indices - 1, ==), tokens) if h else tokens;",
        LETTERS,
    ),
    (
        "same_rank_other",
        "k = selector_width(select(tokens, tokens, <));"
        ' r = aggregate(select(k, k, ==) and select(indices, indices, !=), tokens, "none");',
        LETTERS,
    ),
    (
        "shift_by_two_indices",
        "r = aggregate(select(indices + 2, indices, ==), indices, -5);",
        LETTERS,
    ),
    (
        "double_shift",
        'x = shift(shift(tokens, 1, "_"), 1, "_");',
        LETTERS,
    ),
    (
        "mirror_keys",
        "r = aggregate(select(length - indices - 1, indices, ==), indices);",
        LETTERS,
    ),
    (
        "every_other",
        'r = aggregate(select(indices * 2, indices, ==), tokens, ".");',
        LETTERS,
    ),
    (
        "max_hist_index",
        "r = max(selector_width(select(tokens, tokens, ==)), indices);",
        LETTERS,
    ),
    (
        "or_mean_two_pairs",
        "m = aggregate(select(tokens, tokens, <) or select(indices, indices, ==), indices);",
        LETTERS,
    ),
    (
        "or_mean_consts",
        'm = aggregate(select(tokens, "a", ==) or select(indices, 0, ==), indices, -1);',
        LETTERS,
    ),
    (
        "has_focus_or",
        'h = has_focus(select("a", tokens, ==) or select(indices, length, <));',
        LETTERS,
    ),
    (
        "or_categorical_joint",
        "w = selector_width(select(tokens, tokens, ==));"
        " r = aggregate((select(w, 1, ==) and select(indices, 0, ==)) or"
        ' (select(tokens, "b", ==) and select(indices, indices, ==)), tokens, "-");',
        LETTERS,
    ),
    (
        "mean_or_overlap_joint",
        "w = selector_width(select(tokens, tokens, ==));"
        " m = aggregate(select(w, w, <=) or select(tokens, tokens, ==), indices);",
        LETTERS,
    ),
    (
        "gate_groups",
        'x = ((tokens in ["a", "b"]) and (indices > 1)) or (tokens == "d" and length > 2);',
        LETTERS,
    ),
]


def example_programs() -> list[tuple[str, str, str]]:
    """Every examples/*.rasp with its vocabulary (brackets for Dyck programs)."""
    out = []
    for path in sorted(EXAMPLES_DIR.glob("*.rasp")):
        text = path.read_text()
        vocab = LETTERS
        if "dyck2" in path.stem:
            vocab = "(){}"
        elif "dyck" in path.stem:
            vocab = "()ab"
        elif "hist" in path.stem or "freq" in path.stem:
            vocab = "§abc"
        out.append((path.stem, text, vocab))
    return out
