"""Source spans, the error hierarchy, and caret rendering.

Every error a user can cause is a :class:`RaspError` carrying (when it has one) a
:class:`Span`.  ``str(err)`` / ``err.render()`` gives::

    file.rasp:3:7: error: undefined name 'foo'
        x = foo + 1;
            ^^^

The command line prints ``render()`` and exits non-zero; it never shows a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, eq=False)
class Source:
    """A named piece of RASP source text (a file, a REPL entry, the library)."""

    name: str
    text: str

    def line(self, lineno: int) -> str:
        """The 1-based line ``lineno`` without its newline ('' when out of range)."""
        lines = self.text.splitlines()
        return lines[lineno - 1] if 1 <= lineno <= len(lines) else ""


#: Characters of a source line shown above a caret (longer lines are cut around the span).
CARET_LINE_WIDTH = 160


@dataclass(frozen=True)
class Span:
    """A region of source: 1-based line and column of its start and (exclusive) end."""

    source: Source
    line: int
    col: int
    end_line: int
    end_col: int

    @property
    def location(self) -> str:
        return f"{self.source.name}:{self.line}:{self.col}"

    @property
    def text(self) -> str:
        """The source text the span covers (first line only if it spans several)."""
        src_line = self.source.line(self.line)
        end = self.end_col - 1 if self.end_line == self.line else len(src_line)
        return src_line[self.col - 1 : max(end, self.col)]

    def caret(self) -> str:
        """The source line followed by a caret line under the span.

        A line longer than CARET_LINE_WIDTH is cut to a window of that many characters
        around the span's start, with ``...`` where text was left out.
        """
        src_line = self.source.line(self.line)
        end = self.end_col if self.end_line == self.line else len(src_line) + 1
        start = self.col - 1
        prefix = suffix = ""
        if len(src_line) > CARET_LINE_WIDTH:
            lo = max(0, min(start - CARET_LINE_WIDTH // 4, len(src_line) - CARET_LINE_WIDTH))
            hi = lo + CARET_LINE_WIDTH
            prefix, suffix = ("..." if lo > 0 else ""), ("..." if hi < len(src_line) else "")
            src_line = src_line[lo:hi]
            start, end = start - lo + len(prefix), min(end, hi + 1) - lo + len(prefix)
        width = max(1, end - 1 - start)
        return f"    {prefix}{src_line}{suffix}\n    {' ' * start}{'^' * width}"


class RaspError(Exception):
    """Base of every error a user of rasp_compiler can cause."""

    kind = "error"

    def __init__(self, message: str, span: Span | None = None, notes: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        self.span = span
        self.notes = notes

    def render(self) -> str:
        head = f"{self.span.location}: " if self.span else ""
        out = [f"{head}{self.kind}: {self.message}"]
        if self.span is not None and self.span.source.line(self.span.line):
            out.append(self.span.caret())
        out.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


class RaspSyntaxError(RaspError):
    kind = "syntax error"


class RaspNameError(RaspError):
    kind = "name error"


class RaspTypeError(RaspError):
    kind = "type error"


class MixedAggregateError(RaspTypeError):
    """An aggregate over non-numbers selected several keys on an input: the reference
    raises there (a mean needs numbers), and a compiled model would answer anyway."""


class RaspValueError(RaspError):
    """A run-time failure of the program on an input (division by zero, bad index, ...)."""

    kind = "value error"


class InputError(RaspError):
    """A bad input: empty, a token outside the vocabulary, too long for the model."""

    kind = "input error"


class CompileError(RaspError):
    """A program that cannot be compiled exactly.  Holds every reason at once."""

    kind = "compile error"

    def __init__(self, problems: list[RaspError]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) prevent exact compilation")

    def render(self) -> str:
        return "\n".join(p.render() for p in self.problems)


class ModelFileError(RaspError):
    """A saved model that is missing, corrupt, or does not match its config."""

    kind = "model file error"
