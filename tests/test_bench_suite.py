"""``rasp-compiler bench-suite``: model directories with circuits and an index."""

from __future__ import annotations

import json

from corpus import EXAMPLES_DIR

from rasp_compiler import cli, load_model


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


CORPUS = """
EXPRESSIONS = [
    ("reverse", "r = aggregate(select(indices, length - indices - 1, ==), tokens);", "abcd"),
    ("broken", "x = aggregate(select(indices, indices, ==), ;", "abcd"),
    ("histogram", "h = selector_width(select(tokens, tokens, ==));", "ab"),
]
"""


def test_bench_suite_writes_models_circuits_and_an_index(capsys, tmp_path):
    corpus = tmp_path / "corpus.py"
    corpus.write_text(CORPUS)
    out = tmp_path / "suite"
    code, stdout, err = _main(
        capsys, "bench-suite", str(out), "--max-len", "5", "--corpus", str(corpus),
        "--only", "reverse,sort,corpus/broken,corpus/histogram",
    )  # fmt: skip
    assert code == 0, err
    index = json.loads((out / "index.json").read_text())
    assert index["format"] == "rasp-compiler-bench-suite" and index["max_len"] == 5
    models = {(m["group"], m["program"]): m for m in index["models"]}
    assert set(models) == {("examples", "reverse"), ("examples", "sort"),
                           ("corpus", "reverse"), ("corpus", "broken"),
                           ("corpus", "histogram")}  # fmt: skip
    broken = models["corpus", "broken"]
    assert broken["dir"] is None and broken["circuit"] is None
    assert "syntax error" in broken["error"] and "\n" not in broken["error"]
    assert "corpus/broken: " in stdout and "4 models, 1 failed" in stdout
    sort = models["examples", "sort"]
    assert sort["vocab"] == list("abcdefghijklmnopqrstuvwxyz") and sort["sop"] == "sorted_tokens"
    for key in ("reverse", "sort"):
        m = models["examples", key]
        model = load_model(out / m["dir"])  # checks circuit.json against config.json's hash
        assert model.config.n_layers == m["layers"] and model.config.n_params == m["n_params"]
        circuit = json.loads((out / m["circuit"]).read_text())
        heads = [c for c in circuit["components"] if c["kind"] == "head"]
        assert len(heads) == m["heads"] and circuit["sop"] == m["sop"]
    assert load_model(out / "examples/reverse").run("abc") == ["c", "b", "a"]
    assert models["corpus", "histogram"]["vocab"] == ["a", "b"]
    # a second run into the same folder replaces the suite
    code, _, err = _main(capsys, "bench-suite", str(out), "--max-len", "4", "--only", "reverse")
    assert code == 0, err
    index = json.loads((out / "index.json").read_text())
    assert [(m["group"], m["max_len"]) for m in index["models"]] == [("examples", 4), ("corpus", 4)]


def test_bench_suite_errors_are_one_line(capsys, tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code, _, err = _main(capsys, "bench-suite", str(tmp_path / "other"), "--only", "reverse")
    assert code == 1 and "not empty" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    code, _, err = _main(capsys, "bench-suite", str(tmp_path / "s"), "--only", "nonesuch")
    assert code == 1 and "nonesuch" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.py"
    bad.write_text("EXPRESSIONS = 3\n")
    code, _, err = _main(capsys, "bench-suite", str(tmp_path / "s"), "--corpus", str(bad))
    assert code == 1 and "EXPRESSIONS" in err and len(err.strip().splitlines()) == 1
    empty = tmp_path / "none"
    code, _, err = _main(
        capsys, "bench-suite", str(tmp_path / "s"), "--examples", str(empty),
        "--corpus", str(empty / "c.py"),
    )  # fmt: skip
    assert code == 1 and "neither" in err
    assert not (tmp_path / "s").exists()


def test_every_example_states_its_vocabulary():
    from rasp_compiler.cli_bench import _programs

    programs = _programs(EXAMPLES_DIR, EXAMPLES_DIR / "missing.py")
    assert {p[1] for p in programs} == {p.stem for p in EXAMPLES_DIR.glob("*.rasp")}
    assert all(p[4] for p in programs)
