"""Independent floating-point GEMM reference for the core-level regression.

This module shares no code with the golden twin :mod:`tessera.sim.fp` or with the HDL datapath
(:mod:`tessera.hdl.arith.fpcommon`): it reads only the *fields* of a
:class:`~tessera.hdl.arith.formats.FloatFormat` (``exp_bits``, ``man_bits``, ``bias``,
``subnormals``, ``specials``, ``rounding``, ``overflow``) and derives everything else (special
codes, largest finite value, rounding points) itself, from the encoding rules of
``docs/float.md`` section 1 and the arithmetic rules of section 2.

Method
------
Values are held in float64. Every code of every format :class:`FloatFormat` admits (at most 24
significand bits, exponents within ``2**-277 .. 2**256``) is exactly a float64, and so is the
product of two of them (at most 48 significand bits, exponents within ``2**-554 .. 2**512``).
A sum ``acc + p`` is *not* always exact in float64 (the two addends may be up to ~800 binades
apart), so every addition is done as Knuth's TwoSum: ``s = fl(acc + p)`` plus the exact
residual ``e = (acc + p) - s`` (exact in float64 whenever nothing overflows, which cannot happen
here). The rounder then rounds the exact value ``s + e`` from the pair: ``s`` fixes the
candidate result and the rounding remainder; since ``|e| <= ulp64(s) / 2`` while the remainder and
the half-way point are multiples of ``ulp64(s)`` (the destination has at most 24 bits, float64
53), ``e`` can only matter when ``s`` lies exactly on a half-way point or a representable value,
and there its sign decides. So every step is rounded once from the exact value, for every format
pair; no Fraction arithmetic is needed. For several pairs (e.g. ``fp8_e4m3 -> fp16``, 43 bits
at most, see :func:`float64_sum_is_exact`) the residual is always zero anyway.

Semantics (per output element, as the PE and the core compute it): a run piece starts with
``acc = +0`` and for each ``k`` in order does ``acc = round_acc(acc + a[k] * b[k])`` (exact
product, one rounding). With ``chunk = CL > 0`` an inner accumulator restarts at ``+0`` every CL
products, and at each chunk end (the last one may be short) ``outer = round_acc(outer + inner)``,
``outer`` starting at ``+0``. With ``k_split`` the K axis is cut into pieces computed from scratch
(chunk counting restarts in each piece) and combined in order: ``C = P1``, then
``C = round_acc(C + P_i)``. ``round_acc`` is round-to-nearest with ties to even (``"rne"``) or
away from zero (``"rnu"``), gradual underflow or the no-subnormal flush (a result rounding to
``2**-bias`` or below is zero), overflow to Inf / NaN / NINF or saturation, IEEE zero signs
(``+0`` except ``-0 + -0``; a non-zero result rounding to zero keeps its sign), and IEEE NaN / Inf
propagation (``0 * Inf`` and ``Inf - Inf`` are NaN; the merged NINF code reads as NaN).
"""

from __future__ import annotations

import math

import numpy as np

from tessera.hdl.arith.formats import FloatFormat

__all__ = ["reference_fp_gemm", "decode_codes", "round_to_format", "encode_values",
           "float64_sum_is_exact"]


class _Layout:
    """Constants of one format, derived here from its fields (not from its properties)."""

    def __init__(self, fmt, name="format"):
        if not isinstance(fmt, FloatFormat):
            raise ValueError(f"{name} must be a FloatFormat, not {fmt!r}")
        self.fmt = fmt
        m, e_bits, bias = fmt.man_bits, fmt.exp_bits, fmt.bias
        self.m = m
        self.width = 1 + e_bits + m
        self.sign_bit = 1 << (self.width - 1)
        self.e_all = (1 << e_bits) - 1
        self.f_all = (1 << m) - 1
        self.bias = bias
        self.subnormals = fmt.subnormals
        self.specials = fmt.specials
        self.rne = fmt.rounding == "rne"
        self.saturate = fmt.overflow == "saturate"
        self.has_inf = fmt.specials == "ieee"
        self.neg_zero = fmt.specials in ("ieee", "fn")
        # Lowest binade: 2**(1-bias) with gradual underflow; exponent field 0 is a normal binade
        # (2**-bias) without, but its first code is the zero code.
        self.emin = 1 - bias if fmt.subnormals else -bias
        # Largest finite value: ieee's top exponent field is Inf/NaN; fn and merged lose the
        # all-ones fraction of the top field to NaN/NINF; fnuz's top field is all finite.
        top_field = self.e_all - 1 if fmt.specials == "ieee" else self.e_all
        top_frac = self.f_all - 1 if fmt.specials in ("fn", "merged") else self.f_all
        self.max_code = (top_field << m) | top_frac
        self.max_finite = math.ldexp((1 << m) + top_frac, top_field - bias - m)
        if fmt.specials == "ieee":        # quiet NaN, sign 0
            self.nan_code = (self.e_all << m) | (1 << (m - 1))
        elif fmt.specials == "fnuz":      # the sign-only code
            self.nan_code = self.sign_bit
        else:                             # fn / merged: all-ones magnitude, sign 0
            self.nan_code = self.sign_bit - 1
        # Without subnormals, results rounding to 2**-bias or below are zero.
        self.flush_at = None if fmt.subnormals else math.ldexp(1.0, -bias)


def _codes(lay, codes, name):
    c = np.asarray(codes)
    if c.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array of {lay.fmt.name} codes, "
                         f"not dtype {c.dtype}")
    c = c.astype(np.int64)
    if c.size and (c.min() < 0 or c.max() >= (1 << lay.width)):
        bad = c[(c < 0) | (c >= (1 << lay.width))].flat[0]
        raise ValueError(f"{name} must be {lay.fmt.name} codes in 0..{(1 << lay.width) - 1}, "
                         f"not {int(bad)}")
    return c


def decode_codes(fmt, codes) -> np.ndarray:
    """Exact float64 values of ``fmt`` codes.

    NaN (and the merged NINF) decode to NaN, Inf to ``+-inf``, the negative zero of ``"ieee"`` /
    ``"fn"`` formats to ``-0.0`` and every other zero code (``"merged"``'s ``0x80..0``) to
    ``+0.0``.
    """
    lay = _Layout(fmt, "fmt")
    c = _codes(lay, codes, "codes")
    m = lay.m
    neg = (c >> (lay.width - 1)) & 1 == 1
    e = (c >> m) & lay.e_all
    f = c & lay.f_all
    mag = c & (lay.sign_bit - 1)
    if lay.subnormals:
        sig = np.where(e == 0, f, f + (1 << m))
        ex = np.where(e == 0, 1, e) - lay.bias - m
    else:
        sig = f + (1 << m)
        ex = e - lay.bias - m
    val = np.ldexp(sig.astype(np.float64), ex.astype(np.int32))
    val = np.where(mag == 0, 0.0, val)
    val = np.where(neg & ((mag != 0) | lay.neg_zero), -val, val)
    if lay.specials == "ieee":
        top = e == lay.e_all
        val = np.where(top & (f == 0), np.where(neg, -np.inf, np.inf), val)
        val = np.where(top & (f != 0), np.nan, val)
    elif lay.specials == "fnuz":
        val = np.where(c == lay.sign_bit, np.nan, val)
    else:
        val = np.where(mag == lay.sign_bit - 1, np.nan, val)
    return val


def round_to_format(fmt, x, residual=None) -> np.ndarray:
    """Round exact values into ``fmt``; returns the rounded values as float64.

    Parameters
    ----------
    fmt : FloatFormat
    x : array_like of float
        Values (float64). NaN stays NaN; ``+-inf`` stays Inf in ``"ieee"`` formats (also with
        ``overflow="saturate"``) and becomes NaN in the others.
    residual : array_like of float, optional
        The exact value is ``x + residual``, with ``|residual| <= ulp64(x) / 2`` (the TwoSum
        error term); ignored where ``x`` is zero, NaN or Inf.

    Returns
    -------
    numpy.ndarray of float64
        Values of ``fmt``: NaN for NaN/NINF, and ``+0.0`` for every zero of formats without
        ``-0``. :func:`encode_values` turns them into codes.
    """
    lay = _Layout(fmt, "fmt")
    x = np.asarray(x, dtype=np.float64)
    r = np.zeros_like(x) if residual is None else np.asarray(residual, dtype=np.float64)
    x, r = np.broadcast_arrays(x, r)
    m = lay.m
    fin = np.isfinite(x) & (x != 0)
    a = np.where(fin, np.abs(x), 1.0)
    _, ex = np.frexp(a)
    top = ex.astype(np.int64) - 1                     # a in [2**top, 2**(top+1))
    q = (np.maximum(top, lay.emin) if lay.subnormals else top) - m   # result ULP exponent
    y = np.ldexp(a, (-q).astype(np.int32))            # exact: a scaled by a power of 2
    kept = np.floor(y)
    rem = y - kept                                    # exact, in [0, 1)
    # > 0: the exact magnitude is above |x|; < 0: below; 0: x is exact.
    toward = np.where(fin, np.sign(r) * np.sign(x), 0.0)
    half = rem == 0.5
    if lay.rne:
        tie_up = np.fmod(kept, 2.0) == 1.0
    else:
        tie_up = np.ones(kept.shape, dtype=bool)
    up = (rem > 0.5) | (half & (toward > 0)) | (half & (toward == 0) & tie_up)
    mag = np.ldexp(kept + up, q.astype(np.int32))    # rounded, unbounded exponent range

    if lay.flush_at is None:
        under = mag == 0.0
    else:
        under = mag <= lay.flush_at
    over = mag > lay.max_finite
    neg = np.signbit(x)
    zero = np.where(neg & lay.neg_zero, -0.0, 0.0)
    if lay.saturate:
        ovf = np.full(mag.shape, lay.max_finite)
    else:
        ovf = np.full(mag.shape, np.inf if lay.has_inf else np.nan)
    res = np.where(over, ovf, np.where(under, 0.0, mag))
    res = np.where(neg & ~np.isnan(res), -res, res)
    res = np.where(under, zero, res)
    # Non-finite and zero inputs.
    res = np.where(x == 0, zero, res)
    res = np.where(np.isinf(x), x if lay.has_inf else np.nan, res)
    return np.where(np.isnan(x), np.nan, res)


def encode_values(fmt, values) -> np.ndarray:
    """Codes (``np.uint64``) of values that ``fmt`` represents exactly (e.g. from
    :func:`round_to_format`). NaN gives the canonical NaN code (sign 0): ``"ieee"`` exponent all
    ones with only the fraction MSB set, ``"fn"``/``"merged"`` the all-ones magnitude,
    ``"fnuz"`` the sign-only code.

    Raises
    ------
    ValueError
        If a value is not representable in ``fmt``.
    """
    lay = _Layout(fmt, "fmt")
    v = np.asarray(values, dtype=np.float64)
    m = lay.m
    neg = np.signbit(v)
    fin = np.isfinite(v) & (v != 0)
    a = np.where(fin, np.abs(v), 1.0)
    _, ex = np.frexp(a)
    e = ex.astype(np.int64) - 1
    if lay.subnormals:
        sub = e < lay.emin
        field = np.where(sub, 0, e + lay.bias)
        frac = np.where(sub, np.ldexp(a, np.int32(m - lay.emin)),
                        np.ldexp(a, (m - e).astype(np.int32)) - (1 << m))
    else:
        field = e + lay.bias
        frac = np.ldexp(a, (m - e).astype(np.int32)) - (1 << m)
    ok = (frac == np.floor(frac)) & (field >= 0) & (np.abs(v) <= lay.max_finite)
    if not lay.subnormals:
        ok &= np.abs(v) > lay.flush_at
    if lay.has_inf:
        ok |= np.isinf(v)
    ok |= ~fin
    if not np.all(ok):
        bad = float(v[~ok].flat[0])
        raise ValueError(f"values must be representable in {lay.fmt.name}, not {bad!r}")
    mag = (np.where(fin, field, 0) << m) | np.where(fin, frac, 0).astype(np.int64)
    sign = np.where(neg, lay.sign_bit, 0)
    code = sign | mag
    code = np.where(v == 0, sign if lay.neg_zero else 0, code)
    if lay.has_inf:
        code = np.where(np.isinf(v), sign | (lay.e_all << m), code)
    else:
        code = np.where(np.isinf(v), lay.nan_code, code)
    code = np.where(np.isnan(v), lay.nan_code, code)
    return code.astype(np.uint64)


def float64_sum_is_exact(input_format, acc_format) -> bool:
    """Whether ``acc + a * b`` (``acc`` finite in ``acc_format``, ``a, b`` finite in
    ``input_format``) always fits a float64 significand, from the worst-case span of bits.

    The span runs from the leading bit of the larger addend, plus one for a carry, down to the
    smaller of the two lowest possible bit weights. For information (and the tests): the
    reference does not rely on it, since TwoSum makes every sum exact.
    """
    li, la = _Layout(input_format, "input_format"), _Layout(acc_format, "acc_format")
    top_acc = math.frexp(la.max_finite)[1] - 1
    top_prod = math.frexp(li.max_finite * li.max_finite)[1] - 1
    low_acc = la.emin - la.m
    low_prod = 2 * (li.emin - li.m)
    span = max(top_acc, top_prod) + 1 - min(low_acc, low_prod) + 1
    return span <= 53


def _two_sum(a, b):
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    return s, np.where(np.isfinite(s), err, 0.0)


def _add(fa, x, y):
    s, e = _two_sum(x, y)
    return round_to_format(fa, s, e)


def _piece(fa, a, b, chunk):
    """One run piece: (chunked) sequential accumulation of ``a[:, k] * b[k, :]``."""
    n_k = a.shape[1]
    if chunk == 0:
        acc = np.zeros((a.shape[0], b.shape[1]))
        for k in range(n_k):
            acc = _add(fa, acc, a[:, k, None] * b[None, k, :])
        return acc
    outer = np.zeros((a.shape[0], b.shape[1]))
    inner = np.zeros_like(outer)
    for k in range(n_k):
        inner = _add(fa, inner, a[:, k, None] * b[None, k, :])
        if (k + 1) % chunk == 0 or k == n_k - 1:
            outer = _add(fa, outer, inner)
            inner = np.zeros_like(outer)
    return outer


def reference_fp_gemm(input_format, acc_format, a_codes, b_codes, *, chunk=0,
                      k_split=None) -> np.ndarray:
    """Expected result codes of an FP GEMM ``C = A @ B`` as the core computes it.

    Parameters
    ----------
    input_format, acc_format : FloatFormat
        Operand and accumulator formats.
    a_codes : array_like of int, shape (M, K)
        ``input_format`` codes of A.
    b_codes : array_like of int, shape (K, N)
        ``input_format`` codes of B.
    chunk : int
        Chunk length CL of chunk-based accumulation; 0 means no chunking.
    k_split : int, optional
        K length of each run piece (pieces ``[0, ks), [ks, 2 ks), ...``, the last may be
        shorter); ``None`` computes all of K in one piece.

    Returns
    -------
    numpy.ndarray of uint64, shape (M, N)
        ``acc_format`` codes; NaN results are the canonical NaN code, zeros of formats without
        ``-0`` are code 0. K = 0 gives ``+0`` everywhere.
    """
    li = _Layout(input_format, "input_format")
    la = _Layout(acc_format, "acc_format")
    a = _codes(li, a_codes, "a_codes")
    b = _codes(li, b_codes, "b_codes")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"a_codes and b_codes must have shapes (M, K) and (K, N), not "
                         f"{a.shape} and {b.shape}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 0:
        raise ValueError(f"chunk must be a non-negative integer, not {chunk!r}")
    if k_split is not None and (isinstance(k_split, bool) or not isinstance(
            k_split, (int, np.integer)) or k_split < 1):
        raise ValueError(f"k_split must be None or a positive integer, not {k_split!r}")
    av, bv = decode_codes(li.fmt, a), decode_codes(li.fmt, b)
    n_k = a.shape[1]
    ks = n_k if k_split is None else int(k_split)
    total = np.zeros((a.shape[0], b.shape[1]))
    with np.errstate(invalid="ignore"):   # 0 * Inf, Inf - Inf: NaN is the intended result
        for i, k0 in enumerate(range(0, n_k, max(ks, 1))):
            piece = _piece(la.fmt, av[:, k0:k0 + ks], bv[k0:k0 + ks], int(chunk))
            total = piece if i == 0 else _add(la.fmt, total, piece)
    return encode_values(la.fmt, total)
