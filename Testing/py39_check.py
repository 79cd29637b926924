"""Find ``X | Y`` type unions that Python 3.9 would evaluate (and fail on with TypeError).

Slicer 5.6 and 5.8 run Python 3.9, where ``int | None`` raises ``TypeError`` when it is
evaluated. Under ``from __future__ import annotations`` annotations are never evaluated,
so unions there are harmless; everywhere else they fail at import or at call time:

- annotations in a module without that import (function signatures, module- and
  class-level variable annotations; a function's local annotations are never evaluated);
- type aliases: a module- or class-level assignment whose value is a union of names,
  attributes, subscripts or None (``ImageLike = np.ndarray | Volume``);
- any union with ``None``, a builtin type or a typing subscript as an operand
  (``isinstance(x, int | str)``, ``cast(list[int] | None, x)``), and any union in the
  second argument of ``isinstance`` / ``issubclass``.

Other 3.10+ syntax and library use (``match``, ``except*``, ``zip(strict=)``, new typing
members ...) is vermin's part; its own union check (``--feature union-types``) also flags
the harmless annotations, hence this module. ``a | b`` on arrays or sets is not flagged.
"""

from __future__ import annotations

import ast
from pathlib import Path

_BUILTIN_TYPES = {"bool", "bytes", "complex", "dict", "float", "frozenset", "int", "list",
                  "object", "set", "str", "tuple", "type"}
_GENERICS = _BUILTIN_TYPES | {"Annotated", "Any", "Callable", "Iterable", "Iterator",
                              "Literal", "Mapping", "Optional", "Sequence", "Type", "Union"}


def _is_union(node: ast.AST) -> bool:
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)


def _operands(node: ast.AST) -> list[ast.AST]:
    if _is_union(node):
        return _operands(node.left) + _operands(node.right)
    return [node]


def _is_type_only(node: ast.AST) -> bool:
    """An operand that can only be a type: None, a builtin type, a generic subscript."""
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name):
        return node.id in _BUILTIN_TYPES
    if isinstance(node, ast.Subscript):
        base = node.value
        if isinstance(base, ast.Name):
            return base.id in _GENERICS
        return isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) \
            and base.value.id == "typing"
    return False


def _is_type_shaped(node: ast.AST) -> bool:
    """An operand that may be a type: a name, attribute, subscript or None."""
    return isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)) or (
        isinstance(node, ast.Constant) and node.value is None)


class _UnionFinder(ast.NodeVisitor):
    def __init__(self, postponed_annotations: bool):
        self.postponed = postponed_annotations
        self.function_depth = 0
        self.found: list[tuple[int, str]] = []

    def _flag(self, node: ast.AST, why: str) -> None:
        self.found.append((node.lineno, why))

    def _annotation(self, node: ast.AST | None, evaluated: bool) -> None:
        if node is None or not evaluated:
            return
        union = next((n for n in ast.walk(node) if _is_union(n)), None)
        if union is not None:
            self._flag(union, "union in an annotation that is evaluated")

    def visit_FunctionDef(self, node) -> None:
        arguments = node.args
        for argument in (arguments.posonlyargs + arguments.args + arguments.kwonlyargs
                         + [a for a in (arguments.vararg, arguments.kwarg) if a]):
            self._annotation(argument.annotation, not self.postponed)
        self._annotation(node.returns, not self.postponed)
        for expression in node.decorator_list + arguments.defaults + [
                d for d in arguments.kw_defaults if d is not None]:
            self.visit(expression)
        self.function_depth += 1
        for statement in node.body:
            self.visit(statement)
        self.function_depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node) -> None:
        self.function_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1

    def visit_AnnAssign(self, node) -> None:
        self._annotation(node.annotation, not self.postponed and self.function_depth == 0)
        self.visit(node.target)
        if node.value is not None:
            self._alias(node.value)

    def visit_Assign(self, node) -> None:
        for target in node.targets:
            self.visit(target)
        self._alias(node.value)

    def _alias(self, value: ast.AST) -> None:
        if self.function_depth == 0 and _is_union(value) \
                and all(_is_type_shaped(o) for o in _operands(value)):
            self._flag(value, "type alias built with |")
            return
        self.visit(value)

    def visit_Call(self, node) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in ("isinstance", "issubclass") \
                and len(node.args) == 2:
            union = next((n for n in ast.walk(node.args[1]) if _is_union(n)), None)
            if union is not None:
                self._flag(union, f"union in {node.func.id}()")
                return
        self.generic_visit(node)

    def visit_BinOp(self, node) -> None:
        if _is_union(node) and any(_is_type_only(o) for o in _operands(node)):
            self._flag(node, "type union evaluated at run time")
            return
        self.generic_visit(node)


def runtime_unions(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """``(line, why)`` of each ``X | Y`` union that Python 3.9 would evaluate."""
    tree = ast.parse(source, filename)
    postponed = any(isinstance(s, ast.ImportFrom) and s.module == "__future__"
                    and any(a.name == "annotations" for a in s.names) for s in tree.body)
    finder = _UnionFinder(postponed)
    finder.visit(tree)
    return sorted(finder.found)


def runtime_unions_in_files(paths) -> list[str]:
    """``"path:line: why"`` for every such union in ``paths``."""
    return [f"{path}:{line}: {why}" for path in paths
            for line, why in runtime_unions(Path(path).read_text(encoding="utf-8"), str(path))]
