"""Cycle models as data: small expression trees that the manifest carries and anyone evaluates.

An expression is an int, a variable name (str), or a list ``[op, arg, ...]`` with ``op`` one
of ``+``, ``-``, ``*``, ``//``, ``max``, ``min`` and ``if`` (``["if", cond, then, else]``,
``cond`` non-zero). The same tree gives the golden model's cycle count and is written into the
manifest (``timing.run_cycles``), so a testbench in any language can evaluate it instead of
re-deriving a formula.
"""

__all__ = ["evaluate", "variables", "to_text"]

_OPS = {
    "+": lambda *a: sum(a),
    "-": lambda a, b: a - b,
    "*": lambda *a: _prod(a),
    "//": lambda a, b: a // b,
    "max": lambda *a: max(a),
    "min": lambda *a: min(a),
    "==": lambda a, b: int(a == b),
}


def _prod(values):
    out = 1
    for v in values:
        out *= v
    return out


def evaluate(expr, env):
    """Value of ``expr`` with variables from ``env`` (a mapping of name to int)."""
    if isinstance(expr, bool):
        raise TypeError("booleans are not expressions; use 0/1")
    if isinstance(expr, int):
        return expr
    if isinstance(expr, str):
        if expr not in env:
            raise KeyError(f"cycle model variable {expr!r} is not given; have {sorted(env)}")
        return int(env[expr])
    if isinstance(expr, (list, tuple)) and expr:
        op, *args = expr
        if op == "if":
            cond, then, other = args
            return evaluate(then if evaluate(cond, env) else other, env)
        if op not in _OPS:
            raise ValueError(f"unknown cycle model operator {op!r}; allowed: "
                             f"{', '.join(map(repr, [*_OPS, 'if']))}")
        return _OPS[op](*(evaluate(a, env) for a in args))
    raise TypeError(f"not a cycle model expression: {expr!r}")


def variables(expr):
    """Names of the variables ``expr`` uses, sorted."""
    if isinstance(expr, str):
        return [expr]
    if isinstance(expr, (list, tuple)):
        return sorted({v for a in expr[1:] for v in variables(a)})
    return []


def to_text(expr):
    """Human-readable infix text of ``expr`` (for docs and reports; not parsed back)."""
    if isinstance(expr, (int, str)):
        return str(expr)
    op, *args = expr
    if op == "if":
        return f"({to_text(args[1])} if {to_text(args[0])} else {to_text(args[2])})"
    if op in ("max", "min"):
        return f"{op}({', '.join(to_text(a) for a in args)})"
    return "(" + f" {op} ".join(to_text(a) for a in args) + ")"
