"""The ground-truth circuit (circuit.json), checked causally: zeroing a component (a
head's output, an MLP job's hidden units) changes, over many inputs, exactly the s-ops
the circuit puts downstream of it and nothing else.  S-ops are read back from the
residual stream with the trace's read-outs (rasp_compiler.trace.collect.read_sops)."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from check import example_vocab, seeded_inputs
from corpus import EXAMPLES_DIR, EXPRESSIONS

from rasp_compiler import compile_program, load_model, save_model
from rasp_compiler.circuits import build_circuit, circuit_for, downstream, planned_program
from rasp_compiler.compiler.assemble import build_layout
from rasp_compiler.compiler.pipeline import compile_sop, make_plan, names_of, parse_vocab
from rasp_compiler.errors import ModelFileError, RaspError
from rasp_compiler.language.interpret import evaluate_many
from rasp_compiler.language.lower import choose_sop, load_program, load_source
from rasp_compiler.trace import trace_program
from rasp_compiler.trace.collect import _planner, read_sops

MAX_LEN = 6
N_INPUTS = 48
#: corpus programs with split selectors, chains of MLPs, several heads per s-op
CORPUS = (
    "or_selector_width",
    "width_difference_select",
    "half_reverse",
    "same_rank_other",
    "chain_mlp",
    "mean_or_overlap_joint",
    "run_of_repeats",
    "index_negative",
)
#: (program, what a head averages or copies, s-op): downstream in the circuit, yet
#: never changed by zeroing the component, because the program's own logic masks it
MASKED = {
    # the head counting a's before each position: running_max is "a" where one was seen
    # and no b, c or d was -- but then the token itself is an a, which running_max keeps
    # when no a was seen, so zeroing the head never changes running_max
    ("max_prefix", "tokens:a", "running_max"),
}


def _clauses(n: int, seed: str) -> list[str]:
    """Inputs of examples/inference.rasp up to 16 tokens: a fact about "a" and any rule,
    or any chain of two rules, asking about each set (a zeroed count reads as the
    largest, so a rule must also read a set the fact misses to show it);
    then ``n`` random ones (clause lists, and a quarter random strings).  Random tokens
    alone are almost never clauses: nothing would be proved, and no ablation could show
    what proving reads."""
    import random

    rng = random.Random(seed)
    out = [f"a<{x},{y}<{z},a<{q}?" for x, y, z, q in itertools.product("ABC", repeat=4)]
    chains = itertools.product("ABC", itertools.permutations("ABC"), "ABC")
    out += [f"a<{w},{x}<{y},{y}<{z},a<{q}?" for w, (x, y, z), q in chains]
    for i in range(n):
        if i % 4 == 3:  # a length that is no multiple of 4 (or a stray token)
            out.append("".join(rng.choice("abcABC<,?") for _ in range(rng.randint(1, 16))))
            continue
        sets = rng.sample("ABC", 3)
        clauses = ["a<" + sets[0]] + [f"{x}<{y}" for x, y in zip(sets, sets[1:])]
        clauses = [c for c in clauses if rng.random() < 0.7]
        if rng.random() < 0.5:  # any rule: a cycle or "A<A" makes a set add itself
            clauses.append(rng.choice("ABC") + "<" + rng.choice("ABC"))
        rng.shuffle(clauses)
        clauses = clauses[:3]
        question = rng.choice("aab") + "<" + rng.choice("ABC") + "?"
        out.append(",".join([*clauses, question]))
    return out


#: examples checked at a longer max length, on their own inputs
OWN_INPUTS = {"inference": (16, _clauses)}

#: the reference's BOS width, which the compiler rewrites to a selector_width
BOS_WIDTH = (
    "bos = aggregate(select(tokens, tokens, ==) or select(indices, 0, ==),"
    " indicator(indices == 0)); hist = round(1 / bos) - 1;"
)
CASES = (
    [(p.stem, p) for p in sorted(EXAMPLES_DIR.glob("*.rasp")) if p.stem not in OWN_INPUTS]
    + [(name, src) for name, src, _ in EXPRESSIONS if name in CORPUS]
    + [("bos_width", BOS_WIDTH)]
)


def _program(case: str | Path) -> tuple[object, str, dict[int, str], object]:
    if isinstance(case, Path):
        session, vocab = load_program(case), example_vocab(case)
    else:
        session = load_source(case)
        vocab = next((v for _, src, v in EXPRESSIONS if src == case), "abc")
    name, sop = choose_sop(session, None, "<test>")
    return sop, vocab, names_of(session), name


class Reader:
    """Every s-op of a model read back from its residual on a batch of inputs."""

    def __init__(self, sop, model, names, inputs):
        spec = model.spec
        self.shared = planned_program(sop, spec.max_len)
        self.model, self.names = model, names
        plan = make_plan(self.shared, spec.vocab, spec.max_len, names, dtype=spec.dtype)
        self.planner = _planner(self.shared, spec.vocab, spec.max_len, names, plan)
        self.index = build_layout(plan).index()
        self.inputs, self.values = [], []
        for inp in inputs:
            try:
                self.values.append(evaluate_many([self.shared], inp))
            except RaspError:
                continue
            self.inputs.append(inp)

    def read(self) -> list[dict[int, object]]:
        """Per input: the trace of each s-op, by its number in the circuit."""
        tokens, mask = self.model.encode(self.inputs)
        with torch.no_grad():
            out = self.model.transformer(tokens, mask, return_residuals=True)
        residuals = [r.double().numpy() for r in out.residuals]
        rows = []
        for b, values in enumerate(self.values):
            traces = read_sops(
                self.shared, self.planner, values, [r[b] for r in residuals], self.index,
                self.names,
            )  # fmt: skip
            rows.append(dict(enumerate(traces)))  # numbered as the circuit lists s-ops
        return rows


@contextlib.contextmanager
def ablated(model, component: dict) -> Iterator[None]:
    """``component`` zeroed: a head's W_O, or the W_out rows of an MLP job's units."""
    block = model.transformer.blocks[component["layer"]]
    if component["kind"] == "head":
        weight, where = block.attn.W_O, component["head"]
    else:
        weight, where = block.mlp.W_out, slice(*component["units"])
    saved = weight.data[where].clone()
    weight.data[where] = 0
    try:
        yield
    finally:
        weight.data[where] = saved


def _shown(trace) -> str:
    return repr((trace.decoded, trace.classes))


@pytest.mark.parametrize(("name", "case"), CASES, ids=[n for n, _ in CASES])
def test_ablating_a_component_changes_exactly_its_downstream_sops(name, case):
    _check_ablations(name, case)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OWN_INPUTS))
def test_ci_sample_ablations_on_an_examples_own_inputs(name):
    # 147 inputs at max length 16 (about 80 s): slow, and in CI's sample
    _check_ablations(name, EXAMPLES_DIR / f"{name}.rasp")


def _check_ablations(name: str, case: str | Path) -> None:
    sop, vocab, names, sop_name = _program(case)
    max_len, make_inputs = OWN_INPUTS.get(name, (MAX_LEN, None))
    model = compile_sop(
        sop, parse_vocab(vocab), max_len, names=names, sop_name=sop_name, allow_partial=True
    )
    circuit = build_circuit(sop, model, names)
    inputs = (
        seeded_inputs(vocab, N_INPUTS, name, MAX_LEN)
        if make_inputs is None
        else make_inputs(N_INPUTS // 4, name)
    )
    reader = Reader(sop, model, names, inputs)
    assert len(reader.inputs) >= N_INPUTS // 2
    base = reader.read()
    held = {s["id"] for s in circuit["sops"] if s["encoding"] is not None}
    for row in base:  # the unablated model holds every s-op the circuit says it holds
        assert {i for i, t in row.items() if t.agrees is not None} == held
        assert all(t.agrees is not False for t in row.values()), name
    checked = 0
    for comp in circuit["components"]:
        if comp["kind"] not in ("head", "mlp", "bos_cleanup"):
            continue
        if comp.get("output_kind"):  # counts keys for the output's int/float kind only:
            checked += 1  # no s-op's value depends on it (verify checks the kinds)
            continue
        with ablated(model, comp):
            rows = reader.read()
        changed = {
            i for before, after in zip(base, rows) for i in held
            if _shown(before[i]) != _shown(after[i])
        }  # fmt: skip
        expected = downstream(circuit, comp["id"])
        if comp["kind"] == "bos_cleanup":  # writes at BOS only: it may change nothing
            assert changed <= expected, (name, comp["id"])
        else:
            reads = {circuit["directions"][d] for d in comp.get("value", [])}
            masked = {
                s["id"] for s in circuit["sops"]
                if any((name, r, s["name"]) in MASKED for r in reads)
            }  # fmt: skip
            assert changed == expected - masked, (name, comp["id"], changed, expected)
            assert expected, (name, comp["id"])  # every head and job computes something
            checked += 1
    assert checked == sum(c["kind"] in ("head", "mlp") for c in circuit["components"])


def test_the_circuit_of_sort_names_its_heads_units_and_split_selector():
    path = EXAMPLES_DIR / "sort.rasp"
    sop, vocab, names, sop_name = _program(path)
    model = compile_sop(sop, parse_vocab("abcd"), 8, names=names, sop_name=sop_name)
    c = build_circuit(sop, model, names)
    assert json.loads(json.dumps(c)) == c
    by_id = {x["id"]: x for x in c["components"]}
    heads = [x for x in c["components"] if x["kind"] == "head"]
    assert [h["id"] for h in heads] == ["L0.H0", "L0.H1", "L1.H0"]
    assert [h.get("part") for h in heads] == [[1, 2], [2, 2], None]
    job = by_id["L0.M0"]
    assert job["units"][0] == 0 and job["units"][1] == model.config.layer(0).d_mlp - 1
    assert by_id["L0.bos"]["units"] == [job["units"][1], job["units"][1] + 1]
    assert by_id["L0.bos"]["positions"] == "bos"
    sops = {s["name"]: s for s in c["sops"]}
    assert sops["sorted_tokens"]["computed_by"] == ["L1.H0"]
    assert sops["target"]["computed_by"] == ["L0.M0"]
    assert sops["target"]["inputs"] == [sops["tokens"]["id"], sops["indices"]["id"]]
    assert c["output"]["sop"] == sops["sorted_tokens"]["id"]
    edges = {(e["from"], e["to"]) for e in c["edges"]}
    assert {("L0.H0", "L0.M0"), ("L0.H1", "L0.M0"), ("L0.M0", "L1.H0")} <= edges
    labels = c["directions"]
    assert len(labels) == model.config.d_model
    assert [labels[d] for d in by_id["L0.H0"]["writes"]] == ["target:x0"]
    assert downstream(c, "L0.H1") == {sops["target"]["id"], sops["sorted_tokens"]["id"]}


def test_circuit_json_is_saved_and_covered_by_the_integrity_hash(tmp_path):
    path = EXAMPLES_DIR / "reverse.rasp"
    model = compile_program(path, vocab="abc", max_len=5, allow_partial=True)
    out = tmp_path / "reverse"
    save_model(model, out)
    header = json.loads((out / "config.json").read_text())
    assert set(header["files"]) == {"README.md", "tokenizer.json", "circuit.json"}
    sop, _, names, _ = _program(path)
    saved = json.loads((out / "circuit.json").read_text())
    assert saved == build_circuit(sop, model, names)
    assert saved["format"] == "rasp-compiler-circuit" and saved["version"] == 1
    assert "`circuit.json`: the ground-truth circuit" in (out / "README.md").read_text()
    length = next(s for s in saved["sops"] if s["name"] == "length")
    assert length["encoding"] == "numerical" and length["computed_by"] == ["L0.H0"]
    load_model(out)
    (out / "circuit.json").write_text(json.dumps({**saved, "edges": []}))
    with pytest.raises(ModelFileError, match="circuit.json"):
        load_model(out)


def test_a_program_that_cannot_be_planned_again_saves_without_a_circuit(tmp_path):
    sop = choose_sop(load_source("r = aggregate(select(indices, indices, ==), tokens);"),
                     None, "<s>")[1]  # fmt: skip
    model = compile_sop(sop, ("a", "b"), 3)  # program name "<program>", no source text
    assert circuit_for(model) is not None  # compiled in this process: its plan is kept
    model.compiled_from = None  # as a model loaded from a directory without its program
    assert circuit_for(model) is None
    save_model(model, tmp_path / "m")
    assert "circuit.json" not in json.loads((tmp_path / "m" / "config.json").read_text())["files"]
    assert not (tmp_path / "m" / "circuit.json").exists()
    assert "circuit.json" not in (tmp_path / "m" / "README.md").read_text()
    load_model(tmp_path / "m")


# ------------------------------------------------------------------ inspect


def _inspect(capsys, *argv: str) -> tuple[int, str, str]:
    from rasp_compiler import cli

    code = cli.main(["inspect", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _covers(units: list[dict], model) -> bool:
    """The ranges of each layer tile its hidden units exactly, in order."""
    for layer in range(model.config.n_layers):
        ranges = [u["units"] for u in units if u["layer"] == layer]
        stops = [0] + [stop for _, stop in ranges]
        if [start for start, _ in ranges] != stops[:-1] or stops[-1] != model.config.layer(
            layer
        ).d_mlp:
            return False
    return True


def test_inspect_a_saved_model_lists_every_unit_and_the_parts_of_a_split_selector(capsys, tmp_path):
    program = str(EXAMPLES_DIR / "sort.rasp")
    code, out, err = _inspect(capsys, program, "--vocab", "abcd", "--max-len", "5", "--json")
    assert code == 0, err
    from_program = json.loads(out)
    model = compile_program(program, vocab="abcd", max_len=5)
    save_model(model, tmp_path / "sort")
    code, out, err = _inspect(capsys, str(tmp_path / "sort"))
    assert code == 0, err
    assert "hidden units:" in out and "L0.bos  BOS clean-up" in out
    assert "part 1 of 2 of target = selector_width(goes_before)" in out
    assert "part 2 of 2 of target" in out and "values read tokens:a" in out
    code, out, err = _inspect(capsys, str(tmp_path / "sort"), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["circuit"]["format"] == "rasp-compiler-circuit"
    assert _covers(info["units"], model)
    assert [u["kind"] for u in info["units"]] == ["mlp", "bos_cleanup", "bos_cleanup"]
    assert info["n_layers"] == 2 and info["certified_max_len"] is None
    assert info["units"] == from_program["units"]
    assert info["circuit"]["components"] == from_program["circuit"]["components"]


def test_inspect_program_and_saved_model_agree_and_work_without_a_circuit(capsys, tmp_path):
    program = str(EXAMPLES_DIR / "max_prefix.rasp")
    code, out, err = _inspect(capsys, program, "--vocab", "abcd", "--max-len", "4", "--json")
    assert code == 0, err
    compiled = json.loads(out)
    assert compiled["certified_max_len"]["float32"] == 4
    model = compile_program(program, vocab="abcd", max_len=4)
    assert _covers(compiled["units"], model)
    # a directory saved without circuit.json: the unit ranges come from the layer table
    sop = choose_sop(load_program(program), None, program)[1]
    bare = compile_sop(sop, parse_vocab("abcd"), 4)  # no file to plan it again from
    bare.compiled_from = None  # nor the compiler's own plan (as after load_model)
    save_model(bare, tmp_path / "m2")
    assert not (tmp_path / "m2" / "circuit.json").exists()
    code, out, err = _inspect(capsys, str(tmp_path / "m2"), "--json")
    assert code == 0, err
    bare_units = json.loads(out)["units"]
    assert json.loads(out)["circuit"] is None
    strip = [{k: u[k] for k in ("layer", "units", "component", "kind")} for u in bare_units]
    assert strip == [{k: u[k] for k in ("layer", "units", "component", "kind")}
                     for u in compiled["units"]]  # fmt: skip
    code, out, _ = _inspect(capsys, str(tmp_path / "m2"))
    assert code == 0 and "no circuit.json" in out and "hidden units:" in out


def test_inspect_flags(capsys, tmp_path):
    model = compile_program(str(EXAMPLES_DIR / "reverse.rasp"), vocab="ab", max_len=3)
    save_model(model, tmp_path / "r")
    code, _, err = _inspect(capsys, str(tmp_path / "r"), "--max-len", "4")
    assert code == 2 and "--max-len only apply" in err
    code, _, err = _inspect(capsys, str(EXAMPLES_DIR / "reverse.rasp"), "--vocab", "ab")
    assert code == 2 and "needs --max-len" in err
    code, _, err = _inspect(capsys, str(tmp_path / "nowhere"))
    assert code == 2 and "needs --vocab and --max-len" in err


def test_sops_the_compiler_rewrites_are_listed_as_it_plans_them():
    sop, vocab, names, sop_name = _program(BOS_WIDTH)
    model = compile_sop(sop, parse_vocab(vocab), 4, names=names, sop_name=sop_name)
    c = build_circuit(sop, model, names)
    sops = {s["name"]: s for s in c["sops"]}
    assert sops["hist"]["encoding"] is not None and sops["hist"]["computed_by"] == ["L0.M0"]
    assert c["output"]["sop"] == sops["hist"]["id"]
    width = sops["selectorwidth (rewrite of line 1)"]
    assert width["rewritten"] is True and width["computed_by"] == ["L0.M0"]
    assert "rewritten" not in sops["bos"]  # the node the rewrite replaced keeps its name


def test_a_width_read_only_by_an_mlp_is_held_as_its_heads_reciprocal(tmp_path):
    # y reads w's head output 1/(w+1) directly: w is never written as the number w
    path = tmp_path / "w.rasp"
    path.write_text(
        "# Vocabulary: abc\n"
        "w = selector_width(select(tokens, tokens, ==));\n"
        "y = w + indices;\n"
        'res = aggregate(select(y, indices, ==), tokens, "-");\n'
    )
    model = compile_program(path, vocab="abc", max_len=5, allow_partial=True)
    sop, _, names, _ = _program(path)
    circuit = build_circuit(sop, model, names)
    w = next(s for s in circuit["sops"] if s["name"] == "w")
    assert w["encoding"] == "reciprocal" and w["computed_by"] == ["L0.H0"]
    assert [circuit["directions"][d] for d in w["directions"]] == ["w:x0"]
    t = trace_program(path, "abc", "abc", 5, allow_partial=True)
    held = next(s for s in t.sops if s.name == "w")
    assert held.encoding == "reciprocal" and held.decoded == held.interpreter == [1, 1, 1]
    assert held.raw == pytest.approx([1 / 2] * 3, abs=1e-4)
