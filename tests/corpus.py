"""The shared corpus of RASP programs every compiled model must agree with the interpreter on.

Each entry: (name, RASP source, vocabulary).  The s-op compiled is the last one the
source assigns.  Vocabularies have 4 tokens (brackets for Dyck) so that exhaustive
checks over all inputs up to length 6 stay cheap.

EXPRESSION_OUTPUTS and EXAMPLE_OUTPUTS give each entry's expected outputs on a few
inputs, worked out from LANGUAGE.md (not frozen from a run); ``corpus()`` joins them, and
both the interpreter (test_reference_outputs.py) and the compiled models
(test_compiler_corpus.py) are checked against them.
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
        elif "addition" in path.stem:
            vocab = "019+"
        elif "inference" in path.stem:
            vocab = "aAB<,?"
        out.append((path.stem, text, vocab))
    if not out:
        raise FileNotFoundError(f"no examples/*.rasp under {EXAMPLES_DIR}")
    return out


# Expected outputs, per corpus entry (EXPRESSIONS and example_programs()): 2-4
# (input, output) pairs, each input a string of vocabulary tokens (one per character).
# Every entry has a length-1 input and one where the program does something worth
# checking (ties, defaults, empty selections, means of one value, banker's rounding).
# The values follow LANGUAGE.md section 4 and the library's meaning (section 5): a mean
# over one selected value is that value unchanged (an int stays an int), over two or
# more it is a float; an empty selection gives the default.  Types matter: 0 and 0.0
# are different outputs for the interpreter.
T, F = True, False
EXPRESSION_OUTPUTS: dict[str, list[tuple[str, list]]] = {
    "reverse": [("a", ["a"]), ("abc", ["c", "b", "a"]), ("abbd", ["d", "b", "b", "a"])],
    "histogram": [("c", [1]), ("abab", [2, 2, 2, 2]), ("aabac", [3, 3, 1, 3, 1])],
    # equal tokens keep their input order (stable)
    "sort": [("d", ["d"]), ("dcba", ["a", "b", "c", "d"]), ("badab", ["a", "a", "b", "b", "d"])],
    "sort_neg_indices": [("b", ["b"]), ("abcd", ["d", "c", "b", "a"]), ("aab", ["b", "a", "a"])],
    # ties in the key: the a's at 1 and 3 keep their order, then the b's at 0 and 2
    "sort_indices_by_tokens": [("a", [0]), ("dcba", [3, 2, 1, 0]), ("baba", [1, 3, 0, 2])],
    # position 0 selects nothing (default 0), position 1 one value (kept an int)
    "mean_before": [("a", [0]), ("ab", [0, 0]), ("abcd", [0, 0, 0.5, 1.0])],
    "mean_after_default": [("a", [-1]), ("abc", [1.5, 2, -1]), ("abcd", [2.0, 2.5, 3, -1])],
    "shift_tokens": [("a", ["_"]), ("abc", ["_", "a", "b"])],
    "shift_indices": [("a", [99]), ("abc", [1, 2, 99])],
    "mark_first": [("b", [T]), ("abcb", [F, T, F, F]), ("acd", [F, F, F])],
    "mark_last": [("b", [T]), ("bab", [F, F, T]), ("cda", [F, F, F])],
    "count": [("a", [1]), ("bcd", [0, 0, 0]), ("abaa", [3, 3, 3, 3])],
    "contains": [("c", [T]), ("abd", [F, F, F]), ("abca", [T, T, T, T])],
    # one position: the mean of one value is the value, 0 (an int)
    "average_indices": [("a", [0]), ("ab", [0.5, 0.5]), ("abc", [1.0, 1.0, 1.0])],
    "max_mirror": [("a", [0]), ("abc", [2, 1, 2]), ("abcd", [3, 2, 2, 3])],
    "min_mirror": [("a", [0]), ("abcd", [0, 1, 1, 0]), ("aaaaa", [0, 1, 2, 1, 0])],
    # banker's rounding: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4
    "round_half": [("a", [0]), ("abcd", [0, 2, 2, 4])],
    "length": [("a", [1]), ("abc", [3, 3, 3])],
    "has_focus": [("a", [T]), ("bcd", [F, F, F]), ("bab", [T, T, T])],
    "load_from_location": [("d", ["d"]), ("abcd", ["d", "c", "b", "a"])],
    # no "a": every row selects nothing and gets the default 0
    "select_from_first": [("a", [0]), ("baca", [1, 1, 1, 1]), ("bcd", [0, 0, 0])],
    "select_from_last": [("b", [0]), ("babb", [3, 3, 3, 3]), ("acd", [0, 0, 0])],
    "select_next_identical": [("a", [-1]), ("abab", [2, 3, -1, -1]), ("aaa", [1, 2, -1])],
    "frac_prevs": [
        ("a", [1]),
        ("b", [0]),
        ("abca", [1, 0.5, 1 / 3, 0.5]),
        ("bbab", [0, 0.0, 1 / 3, 0.25]),
    ],
    "tokens_int_sum": [("3", [3]), ("0123", [0, 3, 6, 9]), ("3210", [3, 4, 5, 6])],
    # "3113": the 1s select the two 1s (mean 1.0, a float), the 3s select all four
    "tokens_int_mean": [("2", [2]), ("0123", [0, 0.5, 1.0, 1.5]), ("3113", [2.0, 1.0, 1.0, 2.0])],
    "string_concat": [("a", ["a!"]), ("abd", ["a!", "b!", "d!"])],
    "ternary_mixed": [("a", ["x"]), ("abca", ["x", "b", "c", "x"])],
    "in_list": [("b", [F]), ("abcd", [T, F, T, F])],
    "lookup_dict": [("d", [0]), ("abcd", [0, 2, 6, 12]), ("dcba", [0, 3, 4, 3])],
    "atom_in_sop": [("b", [T]), ("acd", [F, F, F]), ("aab", [T, T, T])],
    "index_broadcast": [("c", ["c"]), ("dab", ["d", "d", "d"])],
    "index_negative": [("c", ["c"]), ("dab", ["b", "b", "b"])],
    "not_selector": [("a", [0]), ("aab", [1, 1, 2]), ("abcd", [3, 3, 3, 3])],
    # the keys holding "a" together with key 0, counted once each
    "or_selector_width": [("b", [1]), ("bab", [2, 2, 2]), ("aba", [2, 2, 2]), ("bcd", [1, 1, 1])],
    "and_selector_agg": [("a", [-1]), ("aaaa", [-1, 0, 0.5, 1.0]), ("abab", [-1, -1, 0, 1])],
    "two_input_mlp": [("a", [F]), ("aaab", [F, F, T, F])],
    "chain_mlp": [("a", [1]), ("abcd", [4, 7, 6, 5])],
    "width_then_compare": [("d", [F]), ("abcd", [F, F, T, T]), ("dcaa", [T, T, F, F])],
    # prefix means i / 2, rounded half to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2
    "mean_then_round": [("a", [0]), ("aaaaaa", [0, 0, 1, 2, 2, 2])],
    "division": [("a", [0.0]), ("abcd", [0.0, 0.25, 0.5, 0.75])],
    "power_mod": [("a", [0]), ("abcd", [0, 1, 1, 0])],
    "cat1_chain_select": [("a", [1]), ("abcab", [1, 1, 1, 2, 2]), ("cdcd", [1, 2, 3, 4])],
    "mlp_through_not": [("a", [T]), ("aaaa", [T, T, F, F]), ("aaa", [T, T, T])],
    "width_difference_select": [("a", [0]), ("abab", [0, 0, 1, 1]), ("cab", [0, 1, 0])],
    "shift_left_default": [("a", ["_"]), ("abc", ["_", "a", "b"])],
    "run_of_repeats": [("a", [0]), ("aabbb", [0, 1, 1, 2, 3])],
    "half_reverse": [("a", ["a"]), ("abc", ["c", "b", "c"]), ("abcd", ["d", "c", "c", "d"])],
    # equal rank means equal token; a token seen once selects nothing ("none"); a token
    # seen three times would average strings, an error
    "same_rank_other": [("a", ["none"]), ("abca", ["a", "none", "none", "a"])],
    "shift_by_two_indices": [("a", [-5]), ("abcd", [-5, -5, 0, 1])],
    "double_shift": [("a", ["_"]), ("abcd", ["_", "_", "a", "b"])],
    "mirror_keys": [("a", [0]), ("abcd", [3, 2, 1, 0])],
    "every_other": [
        ("a", ["a"]),
        ("abcd", ["a", ".", "b", "."]),
        ("abcdc", ["a", ".", "b", ".", "c"]),
    ],
    "max_hist_index": [("a", [1]), ("aaab", [3, 3, 3, 3]), ("abcd", [1, 1, 2, 3])],
    "or_mean_two_pairs": [("a", [0]), ("ba", [0.5, 1]), ("abc", [0, 0.5, 1.0])],
    # key 0 is always selected, so the default never shows
    "or_mean_consts": [("b", [0]), ("bab", [0.5, 0.5, 0.5]), ("bbaa", [5 / 3] * 4)],
    # every key index is below the length: every row selects something
    "has_focus_or": [("b", [T]), ("bcd", [T, T, T])],
    # key 0 when its token is unique, and a "b" query selects itself
    "or_categorical_joint": [
        ("a", ["a"]),
        ("b", ["b"]),
        ("aab", ["-", "-", "b"]),
        ("cad", ["c", "c", "c"]),
    ],
    # the second selector only adds keys the first already has
    "mean_or_overlap_joint": [("a", [0]), ("aab", [1.0, 1.0, 2]), ("abc", [1.0, 1.0, 1.0])],
    "gate_groups": [("d", [F]), ("abab", [F, F, T, T]), ("dcab", [T, F, T, T])],
}

EXAMPLE_OUTPUTS: dict[str, list[tuple[str, list]]] = {
    "count_a": [("a", [1]), ("abaa", [1, 1, 2, 3]), ("bcd", [0, 0, 0])],
    # BOS positions get 0; "§§a": the second "§" is also BOS
    "double_histogram": [
        ("§", [0]),
        ("§abc", [0, 3, 3, 3]),
        ("§aabbc", [0, 2, 2, 2, 2, 1]),
        ("§§a", [0, 0, 1]),
    ],
    # tokens other than brackets step 0: "a" alone is balanced
    "dyck1": [
        ("(", ["P"]),
        (")", ["F"]),
        ("())(", ["P", "T", "F", "F"]),
        ("a(b)", ["T", "P", "P", "T"]),
    ],
    "dyck2": [
        ("{", ["P"]),
        ("}", ["F"]),
        ("({)}", ["P", "P", "F", "F"]),
        ("(){}", ["P", "T", "P", "T"]),
    ],
    "frac_prevs": [("a", [1]), ("abca", [1, 0.5, 1 / 3, 0.5]), ("bbab", [0, 0.0, 1 / 3, 0.25])],
    "histogram": [("a", [1]), ("abca", [2, 1, 1, 2]), ("§§b", [2, 2, 1])],
    # index 0 is the marker whatever it holds; 1/mean - 1 is a float
    "histogram_bos": [("a", [0.0]), ("abab", [1.0, 2.0, 1.0, 2.0]), ("§aa", [0.0, 2.0, 2.0])],
    # 9 + 1 carries into the padding 0; 19 + 91 = 110 carries through a 9 + 1 + 1;
    # "+9": the first number is empty
    "long_addition": [
        ("1", [0]),
        ("09+01", [0, 0, 0, 1, 0]),
        ("019+091", [0, 0, 0, 0, 1, 1, 0]),
        ("+9", [0, 9]),
    ],
    # no facts prove nothing; a rule before the fact it uses still applies
    "inference": [
        ("a", ["F"]),
        ("a<A?", ["F"] * 4),
        ("a<A,a<A?", ["T"] * 8),
        ("A<B,a<A,a<B?", ["T"] * 12),
    ],
    "max_prefix": [("b", ["b"]), ("acbda", ["a", "c", "c", "d", "d"]), ("dab", ["d", "d", "d"])],
    "reverse": [("a", ["a"]), ("abc", ["c", "b", "a"]), ("abcd", ["d", "c", "b", "a"])],
    "shift_and_compare": [("a", [F]), ("aabc", [F, T, F, F]), ("aaa", [F, T, T])],
    "sort": [("c", ["c"]), ("dbca", ["a", "b", "c", "d"]), ("baab", ["a", "a", "b", "b"])],
    # index 0 is the marker whatever it holds: it stays, the rest is sorted after it
    "sort_bos": [
        ("a", ["a"]),
        ("dcab", ["d", "a", "b", "c"]),
        ("abab", ["a", "a", "b", "b"]),
        ("ba", ["b", "a"]),
    ],
    # one token and no BOS: its target is 1, so position 0 selects nothing and gets "§";
    # "§ab": a and b tie on count, first appearance first
    "sort_by_frequency": [
        ("a", ["§"]),
        ("§", ["§"]),
        ("§aabbbc", ["§", "b", "a", "c", "§", "§", "§"]),
        ("§ab", ["§", "a", "b"]),
    ],
}


def corpus() -> list[tuple[str, str, str, list[tuple[str, list]]]]:
    """Every entry of EXPRESSIONS and example_programs() with its expected outputs.

    An entry without expected outputs is a KeyError, never an entry checked against nothing.
    """
    out = [(n, src, v, EXPRESSION_OUTPUTS[n]) for n, src, v in EXPRESSIONS]
    out += [(n, src, v, EXAMPLE_OUTPUTS[n]) for n, src, v in example_programs()]
    return out
