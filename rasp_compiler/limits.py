"""Every resource a RASP program or a command line can ask for, and its limit.

Going past a limit is a user error (a :class:`~rasp_compiler.errors.RaspError` whose
message names the limit, with file:line:col and a caret where there is a source
position), never a hang, a MemoryError or an internal error.  The README's "Limits"
subsection lists these constants; the compiler's own size limits (value sets, tables,
parameters) live beside the code that enforces them in ``rasp_compiler/compiler/``.
"""

from __future__ import annotations

# ------------------------------------------------------------------ program text

#: A program file, a file it loads, source text given to the API, or one REPL entry.
MAX_SOURCE_BYTES = 256 * 1024
#: Constructs nested inside one another in one statement: brackets that build
#: values, calls, prefix operators, operands of binary operators, ``if``/``else``,
#: blocks.  A chain of left-associative binary operators (``a + b + c + ...``) is one
#: level however long it is; plain parentheses ``( )`` cost nothing.
MAX_NESTING = 256
#: Nested ``load`` statements (a file that loads a file that loads ...).
MAX_LOAD_DEPTH = 32

# ------------------------------------------------------------------ values

#: Decimal digits of an integer: a literal, an input token, or any int a program
#: computes (``10^5000`` is refused before it is computed).
MAX_INT_DIGITS = 1000
#: Characters of a string: a literal, an input token, or any string a program makes.
MAX_STRING_LEN = 10_000
#: Elements of a list or dict a program makes (``range(10^9)`` is refused).
MAX_LIST_LEN = 100_000

# ------------------------------------------------------------------ running

#: Definition-time steps per program, REPL entry or API call: statements run,
#: function calls, and loop and comprehension iterations.
MAX_STEPS = 1_000_000
#: Nested RASP function calls (runaway recursion).
MAX_CALL_DEPTH = 400
#: Python frames definition-time evaluation may use: nested calls times the nesting
#: inside them (about 3 frames per level; 50 nested calls of statements nested to
#: MAX_NESTING fit).  Past it, "definitions nest too deeply" at the statement.
MAX_RECURSION_FRAMES = 40_000
#: Tokens in one input to the interpreter (eval, REPL examples, ``sop("...")``, verify).
MAX_INPUT_LEN = 8192

# ------------------------------------------------------------------ the command line

#: ``--max-len``: well above what the compiler builds (its parameter limit refuses
#: histogram and sort long before), and small enough to refuse without allocating.
MAX_LEN = 8192
#: Distinct tokens in ``--vocab``.
MAX_VOCAB_SIZE = 1 << 16
#: Inputs ``verify`` may run: ``--samples`` plus the exhaustive inputs ``--exhaustive-len``
#: asks for.
MAX_VERIFY_INPUTS = 1_000_000
