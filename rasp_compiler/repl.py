r"""The interactive RASP read-eval-print loop, printing results the way the reference does.

Each entry is read line by line until it parses (Lark reports an unexpected end of
input while a statement is unfinished), then run in one :class:`Session`.  What the
reference prints, we print::

    >> reverse = aggregate(select(indices, length - indices - 1, ==), tokens);
         s-op: reverse
     <TAB> Example: reverse("hello") = [o, l, l, e, h] (strings)

(``<TAB>`` is a tab character, as in the reference.)

Selectors print their matrix on the running example, atoms print ``value: x =  3``,
functions ``console function: f(a, b)``, and ``sop("abc");`` prints ``\t =  [c, b, a]``.
REPL commands (LANGUAGE.md section 2) change the running examples and what is shown.
An error prints its rendered message (file:line:col and a caret) and the session goes
on, whatever the entry (an internal error is reported as one, and the session goes on
too).  Prompts (``>> ``, ``.. ``) are shown only when the input is a terminal.

An entry is at most MAX_SOURCE_BYTES (:mod:`rasp_compiler.limits`); a longer one is
discarded with an error.  A short entry is parsed after every line, so a mistake is
reported at once; once an entry is long (REPL_EAGER_LINES lines or REPL_EAGER_BYTES),
it is parsed again only after a line that leaves every bracket closed and ends with
``;`` or ``}``, or at the end of input, so reading it costs time linear in its size.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO, cast

import numpy as np

from .draw import make_draw_hook
from .errors import RaspError, RaspTypeError, RaspValueError, Source
from .language import ir
from .language import syntax as S
from .language.display import format_atom, format_selector, format_sop, type_suffix
from .language.interpret import evaluate
from .language.ir import Atom
from .language.lower import Function, Session, StatementResult
from .language.parser import IncompleteInputError, parse
from .limits import MAX_INPUT_LEN, MAX_SOURCE_BYTES

__all__ = ["Repl"]

PROMPT, CONTINUE = ">> ", ".. "
Example = str | list[Atom]
#: Up to this size an unfinished entry is parsed after every line it gets.
REPL_EAGER_LINES, REPL_EAGER_BYTES = 50, 8192


class Repl:
    """One REPL session: a :class:`Session` plus the running examples and display switches.

    ``out`` receives everything the REPL prints; ``name`` names its input in error
    messages (line numbers count from the first line read); ``draw_dir`` is where
    ``draw(...)`` writes its pictures (default: the current directory).
    """

    def __init__(
        self,
        out: TextIO | None = None,
        name: str = "<stdin>",
        draw_dir: str | Path | None = None,
    ):
        self.out = out if out is not None else sys.stdout
        self.name = name
        self.sop_example: Example = "hello"
        self.selector_example: Example = "hello"
        self.show_sop_examples = True
        self.show_selector_examples = True
        self.full_seq_display = False
        self.session = Session(
            base_dir=None,
            draw_hook=make_draw_hook(
                lambda: self.session.names(),
                draw_dir,
                echo=self.print,
                default_input=lambda: self.sop_example,
            ),
        )
        self._line = 0  # lines read so far
        self._offsets: dict[Source, int] = {}  # entry source -> lines before it

    def print(self, *parts: object) -> None:
        print(*parts, file=self.out, flush=True)

    # ------------------------------------------------------------ the loop

    def run(self, read_line: Callable[[str], str | None], interactive: bool = False) -> int:
        """Read, run and print entries until end of input or ``exit``; returns 0.

        ``read_line(prompt)`` returns one line (without its newline) or None at the end.
        """
        if interactive:
            self.print("RASP (rasp_compiler) -- exit with 'exit' or Ctrl-D")
            self.print("running example is:", self.sop_example)
        buffer: list[str] = []
        size = depth = 0  # the entry's bytes so far; its open brackets
        while True:
            try:
                line = read_line(CONTINUE if buffer else PROMPT)
            except KeyboardInterrupt:
                self.print("")
                buffer, size, depth = [], 0, 0
                continue
            if line is None:  # end of input
                if buffer and "".join(buffer).strip():
                    self.run_text("\n".join(buffer) + "\n", final=True)
                if interactive:
                    self.print("")
                return 0
            buffer.append(line)
            size += len(line.encode("utf-8", "replace")) + 1
            if size > MAX_SOURCE_BYTES:
                self.print(
                    f"{self.name}:{self._line + 1}: input error: this entry is longer than the "
                    f"limit of {MAX_SOURCE_BYTES:,} bytes; it was discarded"
                )
                self._line += len(buffer)
                buffer, size, depth = [], 0, 0
                continue
            opened, last = _scan_line(line)
            depth += opened
            long_entry = len(buffer) > REPL_EAGER_LINES or size > REPL_EAGER_BYTES
            if long_entry and (depth > 0 or last not in (";", "}")):
                continue  # a long entry cannot be complete yet: do not parse it again
            status = self.run_text("\n".join(buffer) + "\n", final=False)
            if status == "more":
                continue
            buffer, size, depth = [], 0, 0
            if status == "exit":
                return 0

    def run_text(self, text: str, final: bool = True) -> str:
        """Parse and run one entry.  Returns "more" (unfinished and not ``final``),
        "exit" (an exit command ran) or "done"."""
        start = self._line
        source_name = self.name
        try:
            program = parse(text, source_name)
        except IncompleteInputError as err:
            if not final:
                return "more"
            self._line += text.count("\n")
            self._report(err, start)
            return "done"
        except RaspError as err:
            self._line += text.count("\n")
            self._report(err, start)
            return "done"
        except Exception as exc:  # noqa: BLE001 - a bug must not end the session
            self._line += text.count("\n")
            self.print(f"internal error (a bug in rasp_compiler): {type(exc).__name__}: {exc}")
            return "done"
        self._line += text.count("\n")
        self._offsets[program.source] = start
        for st in program.statements:
            try:
                if self._run_statement(program, st) == "exit":
                    return "exit"
            except RaspError as err:
                self._report(err)
            except KeyboardInterrupt:
                self.print("interrupted")
                return "done"
            except RecursionError:
                self.print("error: the computation nests too deeply")
            except Exception as exc:  # noqa: BLE001 - a bug must not end the session
                self.print(f"internal error (a bug in rasp_compiler): {type(exc).__name__}: {exc}")
        return "done"

    # ------------------------------------------------------------ statements

    def _run_statement(self, program: S.Program, st: object) -> str:
        match st:
            case S.SetExample(subset=subset, example=expr):
                example = _as_example(self.session.evaluate(expr), expr)
                if subset in (None, "s-op"):
                    self.sop_example = example
                if subset in (None, "selector"):
                    self.selector_example = example
            case S.ShowExample(subset=subset):
                if subset in (None, "s-op"):
                    self.print("\ts-op example:", _format_example(self.sop_example))
                if subset in (None, "selector"):
                    self.print("\tselector example:", _format_example(self.selector_example))
            case S.ToggleExamples(subset=subset, on=on):
                if subset in (None, "s-op"):
                    self.show_sop_examples = on
                if subset in (None, "selector"):
                    self.show_selector_examples = on
            case S.ToggleFullSeqDisplay(on=on):
                self.full_seq_display = on
            case S.Exit():
                return "exit"
            case _:
                one = S.Program(program.span, (st,), program.source)  # type: ignore[arg-type]
                for result in self.session.execute(one, keep_going=True):
                    if result.kind == "error":  # in a loaded file: reported, the file went on
                        self._report(result.value)  # type: ignore[arg-type]
                    elif result.kind == "command":  # in a loaded file: applies here too
                        if self._run_statement(program, result.value) == "exit":
                            return "exit"
                    else:
                        self._print_result(st, result)
        return "done"

    def _print_result(self, st: object, result: StatementResult) -> None:
        match result.kind:
            case "expr":
                assert isinstance(st, S.ExprStmt)
                if self._print_application(st.expr, result.value):
                    return
                name = st.expr.id if isinstance(st.expr, S.Name) else "out"
                self.print_named(name, result.value)
            case "assign" | "def":
                self.print_named(result.name or "out", result.value)
            case "load":
                assert isinstance(result.value, dict)
                for name, value in result.value.items():
                    self.print_named(name, value, examples=False)
            case "draw":
                sop, inp = cast("tuple[ir.SOp, Example | None]", result.value)
                values = evaluate(sop, inp if inp is not None else self.sop_example)
                self.print("\t = ", format_sop(cast("list[Atom]", values)))

    def _print_application(self, expr: S.Expr, value: object) -> bool:
        """``sop(input);`` / ``sel(input);``: print the value as the reference does."""
        if not (isinstance(expr, S.Call) and len(expr.args) == 1 and isinstance(value, list)):
            return False
        callee = self.session.evaluate(expr.func)
        if isinstance(callee, ir.SOp):
            self.print("\t = ", format_sop(value))
            return True
        if isinstance(callee, ir.Selector):
            inp = self.session.evaluate(expr.args[0])
            self.print("\t = ")
            self._print_matrix(np.array(value, dtype=bool), inp)  # type: ignore[arg-type]
            return True
        return False

    # ------------------------------------------------------------ printing values

    def print_named(self, name: str, value: object, examples: bool = True) -> None:
        """One named value, as the reference REPL prints it."""
        match value:
            case ir.SOp():
                self.print("     s-op:", name)
                if examples and self.show_sop_examples:
                    self._sop_example(name, value)
            case ir.Selector():
                self.print("     selector:", name)
                if examples and self.show_selector_examples:
                    self.print(" \t Example:")
                    self._selector_example(value)
            case Function():
                self.print(f"     console {value}")
            case list() | dict() if _is_flat(value):
                kind = "list" if isinstance(value, list) else "dict"
                self.print(f"     {kind}: {name} = {_format_container(value)}")
            case list():
                self.print(f"     list: {name} = [")
                for item in value:
                    self.print_named(name, item, examples=False)
                self.print("     ]")
            case dict():
                self.print(f"     dict: {name} = {{")
                for key, item in value.items():
                    self.print_named(f"{name}[{_format_value(key)}]", item, examples=False)
                self.print("     }")
            case str() | bool() | int() | float():
                self.print("    value:", f"{name} = ", _format_value(value))
            case _:
                self.print(f"     {name}: {getattr(value, 'name', value)} (built-in)")

    def _sop_example(self, name: str, sop: ir.SOp) -> None:
        desc = f"{name}({_format_example(self.sop_example)}) ="
        try:
            values = evaluate(sop, self.sop_example)
        except RaspError as err:
            self.print(f" \t Example: {desc} error:")
            self._report(err)
            return
        assert isinstance(values, list)
        if not self.full_seq_display:
            self.print(" \t Example:", desc, format_sop(values))
            return
        if len(values) > 1 and len(set(values)) == 1:
            self.print(
                " \t Example:", desc, format_sop(values), "[skipped full display: identical values]"
            )
            return
        example = list(self.sop_example)
        shown_in, shown_out = _clean_bools(example), _clean_bools(values)
        width = max(len(v) for v in shown_in + shown_out)
        self.print(" \t Example:")
        line_in = " ".join(v.rjust(width) for v in shown_in)
        line_out = " ".join(v.rjust(width) for v in shown_out)
        self.print(" \t\tinput:  ", line_in, "\t", type_suffix(example))
        self.print(" \t\toutput: ", line_out, "\t", type_suffix(values))

    def _selector_example(self, sel: ir.Selector) -> None:
        try:
            matrix = evaluate(sel, self.selector_example)
        except RaspError as err:
            self._report(err)
            return
        self._print_matrix(np.asarray(matrix), self.selector_example)

    def _print_matrix(self, matrix: np.ndarray, inp: Example) -> None:
        for row in format_selector(matrix, inp).splitlines():
            self.print(" \t\t\t " + row)

    # ------------------------------------------------------------ errors

    def _report(self, err: RaspError, offset: int | None = None) -> None:
        """Print ``err`` with line numbers counted over the whole REPL input."""
        text = err.render()
        span = err.span
        if span is not None:
            off = offset if offset is not None else self._offsets.get(span.source)
            if off:
                fixed = f"{span.source.name}:{span.line + off}:{span.col}"
                text = text.replace(span.location, fixed, 1)
        self.print(text)


# ------------------------------------------------------------------ helpers


def _as_example(value: object, expr: S.Expr) -> Example:
    if isinstance(value, (str, list)) and len(value) > MAX_INPUT_LEN:
        raise RaspValueError(
            f"an example of {len(value):,} tokens; the limit on inputs is {MAX_INPUT_LEN:,}",
            expr.span,
        )
    if isinstance(value, str) and value:
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, (str, bool, int, float)) for v in value)
    ):
        return value
    raise RaspTypeError(
        "an example must be a non-empty string or a non-empty list of atoms", expr.span
    )


def _format_value(v: object) -> str:
    """Atoms as the reference's ``formatstr``: strings in double quotes."""
    return f'"{v}"' if isinstance(v, str) else str(v)


def _format_example(example: Example) -> str:
    return _format_value(example) if isinstance(example, str) else str(example)


def _is_flat(value: list | dict) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return not any(isinstance(v, (list, dict, ir.Node, Function)) for v in items)


def _format_container(value: list | dict) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return (
        "{" + ", ".join(f"{_format_value(k)}: {_format_value(v)}" for k, v in value.items()) + "}"
    )


def _clean_bools(values: Sequence[Atom]) -> list[str]:
    """The reference's full display of bools: only the rarer of T and F is shown."""
    if values and isinstance(values[0], bool):
        n_true = sum(1 for v in values if v)
        t = "T" if n_true <= len(values) - n_true else ""
        f = "F" if len(values) - n_true <= n_true else ""
        return [t if v else f for v in values]
    # the full display shows floats at full precision (the short one rounds to 3 places)
    return [repr(v) if isinstance(v, float) else format_atom(v) for v in values]


def _scan_line(line: str) -> tuple[int, str]:
    """Brackets a line opens (minus those it closes) and its last character outside
    strings and comments ('' if none): enough to tell that an entry is unfinished."""
    opened, last, in_string = 0, "", False
    for ch in line:
        if in_string:
            in_string = ch != '"'
            last = ch
        elif ch == '"':
            in_string, last = True, ch
        elif ch == "#":
            break
        elif not ch.isspace():
            opened += (ch in "([{") - (ch in ")]}")
            last = ch
    return opened, last


def stdin_reader(interactive: bool) -> Callable[[str], str | None]:
    """A ``read_line`` for :meth:`Repl.run` on standard input (prompts only if interactive)."""
    if interactive:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass

        def read(prompt: str) -> str | None:
            try:
                return input(prompt)
            except EOFError:
                return None

        return read

    def read_pipe(prompt: str) -> str | None:
        # At most one entry's worth of a line is kept: the rest of a longer one is read
        # and dropped, and the REPL reports the entry as too long.
        line = sys.stdin.readline(MAX_SOURCE_BYTES + 1)
        if len(line) > MAX_SOURCE_BYTES and not line.endswith("\n"):
            while (rest := sys.stdin.readline(1 << 16)) and not rest.endswith("\n"):
                pass
        return re.sub(r"\r?\n$", "", line) if line else None

    return read_pipe
