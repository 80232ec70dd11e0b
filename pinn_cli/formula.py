"""Safe parsing of user potentials written as formulas in x, e.g. "0.5*x**2 + 3*exp(-x**2)" (or in
x and y for a 2-D potential).

The text is parsed with Python's `ast` and only numbers, the variables (`x`, or `x` and `y`),
`pi`, `e`, + - * / ** and a fixed set of smooth functions are accepted; nothing is ever passed to
eval. The result evaluates with NumPy or JAX arrays alike. A formula is at most MAX_LENGTH
characters and MAX_DEPTH operations deep, its constant parts are evaluated once here (so 1/0 or
9**9**9 are refused at once, in one line), and a constant exponent is at most MAX_EXPONENT in size.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

import numpy as np

FUNCTIONS = ("sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "sinh", "cosh", "arctan")
CONSTANTS = {"pi": math.pi, "e": math.e}
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}

MAX_LENGTH = 1000  # characters: a realistic V(x) is under 100
MAX_DEPTH = 100  # nested operations (a sum of n terms nests n deep); deeper recurses dangerously
MAX_EXPONENT = 100  # |p| of a constant exponent: x**p beyond it only over- or underflows

# A compiled node: the closure (env, xp) -> value, env mapping each variable's name to its array,
# and its value when it depends on no variable.
Compiled = tuple[Callable, float | None]


class FormulaError(ValueError):
    pass


def _array_module(x):
    if type(x).__module__.startswith(("jax", "jaxlib")):
        import jax.numpy as jnp

        return jnp
    return np


def _folded(fn: Callable, args: list[float], node: ast.AST, text: str) -> float:
    """`fn` of constant arguments, evaluated once in float64; FormulaError unless finite."""
    with np.errstate(all="ignore"):
        try:
            value = float(fn(*(np.float64(a) for a in args)))
        except (ArithmeticError, ValueError):
            value = math.nan
    if not math.isfinite(value):
        raise FormulaError(
            f"{ast.unparse(node)!r} in potential.formula={_short(text)} is {value} (not a finite "
            f"number); a formula's constant parts must be finite"
        )
    return value


def _short(text: str) -> str:
    """`text` quoted, cut to its first 40 characters when long."""
    return repr(text) if len(text) <= 60 else f"{text[:40]!r}... ({len(text)} characters)"


def _constant(value: float) -> Compiled:
    return (lambda env, xp: value), value


def _number(node: ast.Constant, text: str) -> Compiled:
    try:
        value = float(node.value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise FormulaError(
            f"the number {_short(ast.unparse(node))} in potential.formula is too large for a "
            f"float64; numbers must be finite"
        )
    return _constant(value)


def _binary(node: ast.BinOp, text: str) -> Compiled:
    op = _BINARY[type(node.op)]
    (a, ca), (b, cb) = _compile(node.left, text), _compile(node.right, text)
    if isinstance(node.op, ast.Pow) and cb is not None and abs(cb) > MAX_EXPONENT:
        raise FormulaError(
            f"{ast.unparse(node)!r} in potential.formula={_short(text)} has the exponent {cb:g}; "
            f"constant exponents are at most {MAX_EXPONENT} in size"
        )
    if ca is not None and cb is not None:
        return _constant(_folded(op, [ca, cb], node, text))
    return (lambda env, xp: op(a(env, xp), b(env, xp))), None


def _call(node: ast.Call, text: str) -> Compiled:
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name not in FUNCTIONS or len(node.args) != 1 or node.keywords:
        raise FormulaError(
            f"{ast.unparse(node)!r} in {text!r} is not allowed; functions of one argument: "
            f"{', '.join(FUNCTIONS)}"
        )
    a, ca = _compile(node.args[0], text)
    if ca is not None:
        return _constant(_folded(getattr(np, name), [ca], node, text))
    return (lambda env, xp: getattr(xp, name)(a(env, xp))), None


def _compile(node: ast.AST, text: str) -> Compiled:
    """The closure (env, xp) -> value for one checked AST node (its names checked by _check_names),
    and its value if constant."""
    if isinstance(node, ast.Expression):
        return _compile(node.body, text)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return _number(node, text)
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return _constant(CONSTANTS[node.id])
        name = node.id
        return (lambda env, xp: env[name]), None
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _binary(node, text)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        op, (a, ca) = _UNARY[type(node.op)], _compile(node.operand, text)
        if ca is not None:
            return _constant(op(ca))
        return (lambda env, xp: op(a(env, xp))), None
    if isinstance(node, ast.Call):
        return _call(node, text)
    raise FormulaError(
        f"{ast.unparse(node)!r} in {text!r} is not allowed; use numbers, x, pi, e, + - * / ** "
        f"and {', '.join(FUNCTIONS)}"
    )


def _depth(tree: ast.AST) -> int:
    """How deeply the operations of a parsed formula nest (walked without recursion)."""
    deepest, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _tree(text: str) -> ast.Expression:
    """The parsed formula, refused in one line when too long, unparsable or too deeply nested."""
    if len(text) > MAX_LENGTH:
        raise FormulaError(
            f"potential.formula={_short(text)} is too long; at most {MAX_LENGTH} characters "
            f"are allowed"
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise FormulaError(f"cannot parse potential formula {_short(text)}: {err.msg}") from None
    except ValueError as err:  # e.g. a null byte
        raise FormulaError(f"cannot parse potential formula {_short(text)}: {err}") from None
    except (RecursionError, MemoryError):
        tree = None
    depth = math.inf if tree is None else _depth(tree)
    if depth > MAX_DEPTH:
        raise FormulaError(
            f"potential.formula={_short(text)} nests its operations more than {MAX_DEPTH} "
            f"deep; at most {MAX_DEPTH} levels are allowed (write long sums with fewer terms)"
        )
    return tree


def _check_names(tree: ast.AST, text: str, variables: tuple[str, ...]) -> None:
    """Every name is a variable, a constant or (as a call) a function."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in called:
            if node.id not in variables and node.id not in CONSTANTS:
                raise FormulaError(
                    f"unknown name {node.id!r} in {text!r}; use {', '.join(variables)}, pi, e"
                )


def _compiled(text: str, variables: tuple[str, ...]) -> Callable:
    tree = _tree(text.strip())
    _check_names(tree, text, variables)
    return _compile(tree, text)[0]


def parse(text: str) -> Callable:
    """V(x) from a formula; raises FormulaError (a ValueError) for anything but plain arithmetic."""
    body = _compiled(text, ("x",))
    return lambda x: body({"x": x}, _array_module(x)) + 0.0 * x


def parse_xy(text: str) -> Callable:
    """V(x, y) from a formula in x and y, as `parse`."""
    body = _compiled(text, ("x", "y"))
    return lambda x, y: body({"x": x, "y": y}, _array_module(x)) + 0.0 * x + 0.0 * y
