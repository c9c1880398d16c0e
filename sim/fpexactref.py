"""Independent reference of exact FP accumulation: `fractions.Fraction` sums, one rounding.

Shares no code with the twin (`tessera.sim.fp.exact_mac`) or the HDL
(`tessera.hdl.arith.fpexact`): values come from `tessera.sim.fpref.decode_codes`, products and
sums are exact rationals, and the single rounding per RUN piece is
`tessera.sim.fpref.round_to_format` (the rounder of the other independent reference, which reads
only the fields of a `FloatFormat`). No window, no shift, no integer scaling.

Semantics (docs/float.md, "Exact accumulation"): per output element and RUN piece, NaN if any
product is NaN (a NaN operand, ``0 * Inf``) or both ``+Inf`` and ``-Inf`` products occur;
otherwise ``+-Inf`` if an Inf product occurs; otherwise the exact sum of the products rounded
once into ``acc_format`` (an exact zero sum is ``+0``). With ``k_split`` the pieces are combined
in order with one ``acc_format`` rounding per combine (the FP-add combiner):
``C = round(C + P_i)`` with IEEE zero signs (``-0 + -0 = -0``, otherwise an exact zero is
``+0``) and IEEE NaN/Inf rules.
"""

import math
from fractions import Fraction

import numpy as np

from tessera.sim.fpref import decode_codes, encode_values, round_to_format


__all__ = ["reference_exact_gemm", "round_fractions"]


def _nearest(values):
    """``(x, r)`` arrays for exact rationals: ``x = float(v)`` (the nearest float64: CPython
    divides integers with correct rounding) and ``r`` a float64 with the sign of ``v - x``.
    That sign is all `round_to_format` needs from its residual (``|r| <= ulp64(x) / 2``)."""
    x = np.array([float(v) for v in values], dtype=np.float64)
    r = np.array([(v > Fraction(xi)) - (v < Fraction(xi)) for v, xi in zip(values, x)],
                 dtype=np.float64) * 2.0 ** -1074
    return x, r


def round_fractions(fmt, values):
    """Round exact rationals (a sequence of `Fraction`) into ``fmt``; float64 results."""
    x, r = _nearest(list(values))
    return round_to_format(fmt, x, r)


def _piece(fa, av, bv):
    """One RUN piece: exact sums of ``av[i, k] * bv[k, j]``, rounded once (float64 values)."""
    m, n = av.shape[0], bv.shape[1]
    prods = av[:, :, None] * bv[None, :, :]                 # exact in float64; 0 * Inf = NaN
    nan = np.isnan(prods).any(axis=1) | (np.isposinf(prods).any(axis=1)
                                         & np.isneginf(prods).any(axis=1))
    pinf = np.isposinf(prods).any(axis=1)
    ninf = np.isneginf(prods).any(axis=1)
    out = np.where(nan, np.nan, np.where(pinf, np.inf, np.where(ninf, -np.inf, 0.0)))
    frac = {}

    def F(x):
        f = frac.get(x)
        if f is None:
            f = frac[x] = Fraction(x)
        return f
    finite = [(i, j) for i in range(m) for j in range(n) if not (nan[i, j] | pinf[i, j]
                                                                  | ninf[i, j])]
    sums = [sum((F(float(x)) * F(float(y)) for x, y in zip(av[i, :], bv[:, j])), Fraction(0))
            for i, j in finite]
    if finite:
        idx = tuple(np.array(finite).T)
        out[idx] = round_fractions(fa, sums)
    return round_to_format(fa, out)          # Inf -> NaN in formats without Inf; NaN stays


def _combine(fa, c, p):
    """``round(c + p)`` elementwise in ``fa`` (the FP-add combiner), from the exact sum."""
    out = np.empty_like(c)
    cf, pf = c.ravel(), p.ravel()
    res = out.ravel()
    todo, vals = [], []
    for i, (x, y) in enumerate(zip(cf.tolist(), pf.tolist())):
        if not (math.isfinite(x) and math.isfinite(y)):
            res[i] = x + y                                   # IEEE NaN / Inf rules
        elif x == 0 and y == 0:
            res[i] = -0.0 if (math.copysign(1, x) < 0 and math.copysign(1, y) < 0) else 0.0
        else:
            todo.append(i)
            vals.append(Fraction(x) + Fraction(y))
    if todo:
        res[todo] = round_fractions(fa, vals)
    return round_to_format(fa, out)


def reference_exact_gemm(input_format, acc_format, a_codes, b_codes, *, k_split=None):
    """Expected result codes of an FP GEMM with exact accumulation, as the core computes it.

    Parameters
    ----------
    input_format, acc_format : FloatFormat
    a_codes : array_like of int, shape (M, K)
    b_codes : array_like of int, shape (K, N)
    k_split : int, optional
        K length of each RUN piece (the last may be shorter); None: one piece.

    Returns
    -------
    numpy.ndarray of uint64, shape (M, N): ``acc_format`` codes (canonical NaN, zero code 0
    in formats without ``-0``).
    """
    a = np.asarray(a_codes)
    b = np.asarray(b_codes)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"a_codes and b_codes must have shapes (M, K) and (K, N), not "
                         f"{a.shape} and {b.shape}")
    if k_split is not None and (isinstance(k_split, bool) or not isinstance(
            k_split, (int, np.integer)) or k_split < 1):
        raise ValueError(f"k_split must be None or a positive integer, not {k_split!r}")
    av = decode_codes(input_format, a)
    bv = decode_codes(input_format, b)
    n_k = a.shape[1]
    ks = n_k if k_split is None else int(k_split)
    total = np.zeros((a.shape[0], b.shape[1]))
    with np.errstate(invalid="ignore"):
        for i, k0 in enumerate(range(0, n_k, max(ks, 1))):
            piece = _piece(acc_format, av[:, k0:k0 + ks], bv[k0:k0 + ks])
            total = piece if i == 0 else _combine(acc_format, total, piece)
    return encode_values(acc_format, total)
