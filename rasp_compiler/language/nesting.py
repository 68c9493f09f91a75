"""The nesting limit: MAX_NESTING (:mod:`rasp_compiler.limits`) levels per statement.

Checked on Lark's parse tree before it becomes syntax, without recursion, so nesting of
any depth is a located syntax error instead of a stack overflow; within the limit the
parser's transformer (non-recursive too) and the lowerer's recursion are safe.  A level
is a construct inside another: brackets that build values, calls, prefix operators,
operands of binary operators, ``if``/``else``, statements in blocks.  A chain of
left-associative binary operators counts once (the lowerer folds it without
recursion); names, literals and plain parentheses cost nothing.
"""

from __future__ import annotations

from lark import Tree

from ..errors import RaspSyntaxError, Source, Span
from ..limits import MAX_NESTING

__all__ = ["check_nesting"]

# Grammar rules that group the parts of one construct (not a level of nesting of
# their own), and the left-associative binary rules whose left-spine chains count once.
_NO_LEVEL = frozenset(
    "exprs names pairs pair select_cmp sop_subset selector_subset switch_on switch_off "
    "int_lit float_lit str_lit name".split()
)
_CHAINS = frozenset({"binop", "and_expr", "or_expr", "contains"})


def check_nesting(tree: Tree, source: Source) -> None:
    """RaspSyntaxError at the first construct nested deeper than MAX_NESTING (iterative)."""
    stack: list[tuple[Tree, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        for i, child in enumerate(node.children):
            if not isinstance(child, Tree):
                continue
            level = depth
            if child.data not in _NO_LEVEL and not (
                i == 0 and node.data in _CHAINS and child.data in _CHAINS
            ):
                level += 1
            if level > MAX_NESTING:
                raise RaspSyntaxError(
                    f"this is nested more than {MAX_NESTING} levels deep (the limit)",
                    Span(
                        source,
                        child.meta.line,
                        child.meta.column,
                        child.meta.end_line,
                        child.meta.end_column,
                    ),
                    (
                        "brackets that build values, calls, prefix operators, operands, "
                        "'if'/'else' and blocks each count one level",
                    ),
                )
            stack.append((child, level))
