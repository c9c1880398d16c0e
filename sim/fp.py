"""Bit-exact NumPy golden model of floating-point arithmetic for any :class:`FloatFormat`.

Every function works on integer *codes* (NumPy integer arrays, any shape, broadcast together) and
returns ``np.uint32`` codes, except :func:`decode`. Internally each code is unpacked into an exact
integer triple ``(sign, significand, exponent)`` held in ``np.int64`` lanes; products and sums are
formed exactly in integers and rounded **once**. No result is ever produced by chained float32 or
float64 arithmetic, so the model is exact for every format :class:`FloatFormat` admits (up to
fp32 with 24-bit significands).

The Amaranth units in :mod:`tessera.hdl.arith` implement exactly the semantics below and are tested bit
for bit against this module.

Semantics
---------
Notation: ``fmt.rounding`` is ``"rne"`` (nearest, ties to even) or ``"rnu"`` (nearest, ties away
from zero); ``m = man_bits``; ``max_finite``, ``min_normal`` and the codes named below are
properties of :class:`tessera.hdl.arith.formats.FloatFormat`.

1. **One rounding.** ``mul`` forms the exact product, ``add`` the exact sum, ``fma`` the exact
   ``a*b + c``; ``convert`` and ``encode`` start from the exact input value. The exact value is
   rounded once into the destination format with the destination's rounding mode (or the
   ``rounding=`` override). The product of two ``fmt_in`` operands is never rounded on its own in
   the fused path.

2. **Rounding position.** Round to ``m + 1`` significant bits, except that in a format with
   subnormals (and ``ftz=False``) the rounding position never goes below the subnormal ULP
   ``2**(emin - m)`` (gradual underflow). A carry out of the significand moves to the next binade
   (this is also how the largest subnormal rounds up to ``min_normal``).

3. **Overflow.** The rounded magnitude is computed with an unbounded exponent range first, then
   compared with ``max_finite`` (IEEE rule: values slightly above ``max_finite`` that round down
   to it stay finite). If it exceeds ``max_finite``: with ``overflow="inf"`` the result is Inf
   with the result's sign (``"ieee"``), the canonical NaN (``"fn"``, ``"fnuz"``) or NINF
   ``0x7FFF`` (``"merged"``); with ``overflow="saturate"`` it is ``+-max_finite``. Inf *inputs*
   are not overflow: they stay Inf even in saturate mode (and become the canonical NaN/NINF in a
   destination format without Inf).

4. **Underflow.**

   * Subnormal formats, ``ftz=False``: gradual underflow; a result that rounds to zero keeps the
     sign of the exact value (``-0`` where :attr:`~FloatFormat.has_neg_zero`, else code 0).
   * ``ftz=True``: subnormal *inputs* are read as zero (keeping their sign), and a result whose
     magnitude, rounded with an unbounded exponent range, is below ``min_normal`` becomes a zero
     with the sign of the exact value (code 0 for ``"fnuz"``/``"merged"``).
   * ``subnormals=False`` (DLFloat / IBM style): round to ``m + 1`` bits with an unbounded
     exponent range; if the rounded value is below ``2**-bias`` or equal to ``2**-bias`` (whose
     code would be the all-zero zero code) the result is zero, code 0. Examples for dlfloat16
     (spec/float.md 1.3): ``2**-31 -> 0x0000``, ``2**-31 * (1 + 2**-10) -> 0x0001`` (tie, RNU),
     ``2**-32 * 1.9999 -> 0x0000``. ``ftz`` has no effect on these formats.

5. **Zeros.** Exact zero results follow IEEE round-to-nearest: a product of a zero has the sign
   XOR of the operands; ``x + (-x)`` (non-zero ``x``) and ``+0 + -0`` give ``+0``;
   ``-0 + -0 = -0``; ``fma`` uses the exact product's sign in these rules. In ``"fnuz"`` and
   ``"merged"`` formats every zero result is code 0, and zero inputs (including the merged
   style's sign-only code ``0x80..0``) are read as ``+0``.

6. **NaN and Inf.** Any NaN input, ``Inf * 0`` and ``Inf - Inf`` (also inside ``fma``) give the
   destination's canonical NaN :attr:`~FloatFormat.nan_code`: ``"ieee"`` sign 0, exponent all
   ones, fraction MSB only (fp16 ``0x7E00``, bf16 ``0x7FC0``, e5m2 ``0x7E``, fp32
   ``0x7FC00000``); ``"fn"`` ``0x7F``; ``"fnuz"`` ``0x80``; ``"merged"`` the all-ones magnitude
   with sign 0 (dlfloat16 ``0x7FFF``). In ``"merged"`` formats the NINF code counts as NaN, so any
   NINF input gives NINF, including ``NINF * 0``. Otherwise Inf arithmetic follows IEEE 754:
   ``Inf * x = Inf`` with sign XOR, ``Inf + finite = Inf``, ``Inf + Inf = Inf``.

7. **Accumulation.** ``mac`` runs ``acc = fma(a[n], b[n], acc)`` sequentially for ``n = 0..N-1``
   (``product_rounding="exact_fused"``), or ``acc = add(convert(a[n]*b[n]), acc)`` with the
   product first rounded into ``fmt_acc`` (``"round_to_acc"``, two roundings). ``chunk_mac``
   implements spec/float.md 2.2: an inner accumulator, cleared to ``+0`` at every chunk start,
   runs ``mac`` over ``chunk`` consecutive products; at each chunk end (the last chunk may be
   short) the outer accumulator becomes ``add(outer, inner)`` with one ``fmt_acc`` rounding. The
   order of additions is fixed; nothing is summed pairwise. Both are vectorized over leading
   batch axes (independent dot products). ``exact_mac`` sums the exact products with no
   intermediate rounding (integers in units of the smallest product's last bit, as the
   fixed-point window of the HDL does) and rounds the exact sum once into ``fmt_acc``; an
   exact zero sum is ``+0``, NaN products (NaN operands, ``0 * Inf``) or both ``+Inf`` and
   ``-Inf`` products give NaN, otherwise an Inf product gives Inf.

8. **Stochastic rounding** (``sr_bits = d > 0`` with ``rand``). It replaces round-to-nearest in
   the accumulator's rounding of ``fma``/``add`` (and of every accumulation step of ``mac``,
   ``chunk_mac``'s inner steps, and its outer adds when ``rand_outer`` is given). Let ``kept`` be
   the exact magnitude truncated to the rounding position of rule 2 and ``frac`` in ``[0, 1)``
   the discarded part in units of that ULP. The result magnitude is ``kept + 1 ULP`` iff
   ``floor(frac * 2**d) + rand >= 2**d``, else ``kept`` (truncation). ``rand`` is a ``d``-bit
   unsigned integer per rounding, supplied by the caller; the HDL takes it as an input port, so
   hardware and twin consume identical random bits. Overflow, underflow and zero rules 3-5 still
   apply to the stochastically rounded magnitude. In ``"round_to_acc"`` mode the product's own
   conversion into ``fmt_acc`` uses the format's nearest rounding, not SR.

Main functions
--------------
:func:`decode`, :func:`encode`, :func:`convert`, :func:`mul`, :func:`add`, :func:`fma`,
:func:`mac`, :func:`chunk_mac`, plus :func:`all_codes` and :func:`canonical` for tests.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tessera.hdl.arith.formats import FloatFormat, float_format

__all__ = [
    "decode", "encode", "convert", "mul", "add", "fma", "mac", "chunk_mac", "exact_mac",
    "all_codes", "canonical", "PRODUCT_ROUNDINGS", "MAX_SR_BITS",
]

#: Allowed values of ``product_rounding`` in :func:`mac` and :func:`chunk_mac`.
PRODUCT_ROUNDINGS = ("exact_fused", "round_to_acc")
#: Largest supported ``sr_bits``.
MAX_SR_BITS = 32
#: Rounding overrides accepted by the golden model ("rz" = truncation, golden-model only).
_ROUNDINGS = ("rne", "rnu", "rz")

# Value kinds of an unpacked operand.
_ZERO, _FIN, _INF, _NAN = 0, 1, 2, 3
# Position of the larger operand's leading bit in the exact-addition window (see _add_values).
_WIN_TOP = 60


class _Val(NamedTuple):
    """Exact values: ``kind``; for finite ``(-1)**sign * sig * 2**exp``; zero/Inf use ``sign``."""
    kind: np.ndarray
    sign: np.ndarray
    sig: np.ndarray
    exp: np.ndarray


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def _fmt(spec, name):
    try:
        return float_format(spec)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None


def _codes(fmt: FloatFormat, codes, name="codes") -> np.ndarray:
    c = np.asarray(codes)
    if c.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array of {fmt.name} codes, "
                         f"not dtype {c.dtype}")
    c = c.astype(np.int64)
    if c.size and (c.min() < 0 or c.max() >= (1 << fmt.width)):
        bad = c[(c < 0) | (c >= (1 << fmt.width))].flat[0]
        raise ValueError(f"{name} must be {fmt.name} codes in 0..{(1 << fmt.width) - 1}, "
                         f"not {int(bad)}")
    return c


def _rounding(fmt: FloatFormat, rounding):
    r = fmt.rounding if rounding is None else rounding
    if r not in _ROUNDINGS:
        raise ValueError(f"rounding must be None or one of "
                         f"{', '.join(repr(x) for x in _ROUNDINGS)}, not {rounding!r}")
    return r


def _overflow(fmt: FloatFormat, overflow):
    o = fmt.overflow if overflow is None else overflow
    if o not in ("inf", "saturate"):
        raise ValueError(f"overflow must be None, 'inf' or 'saturate', not {overflow!r}")
    return o


def _sr(sr_bits, rand, shape, name="rand", exact=False):
    if isinstance(sr_bits, bool) or not isinstance(sr_bits, (int, np.integer)) or not (
            0 <= sr_bits <= MAX_SR_BITS):
        raise ValueError(f"sr_bits must be an integer in 0..{MAX_SR_BITS}, not {sr_bits!r}")
    if sr_bits == 0:
        if rand is not None:
            raise ValueError(f"{name} must be None when sr_bits is 0 (stochastic rounding off)")
        return None
    if rand is None:
        raise ValueError(f"{name} is required when sr_bits={sr_bits} (one {sr_bits}-bit random "
                         f"integer per rounding)")
    r = np.asarray(rand)
    if r.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array, not dtype {r.dtype}")
    r = r.astype(np.int64)
    if r.size and (r.min() < 0 or r.max() >= (1 << sr_bits)):
        bad = r[(r < 0) | (r >= (1 << sr_bits))].flat[0]
        raise ValueError(f"{name} values must be in 0..{(1 << sr_bits) - 1} for "
                         f"sr_bits={sr_bits}, not {int(bad)}")
    try:
        if exact:
            return np.broadcast_to(r, shape)
        np.broadcast_shapes(r.shape, shape)
        return r
    except ValueError:
        raise ValueError(f"{name} shape {r.shape} does not broadcast to {shape}") from None


# ---------------------------------------------------------------------------------------------
# integer helpers
# ---------------------------------------------------------------------------------------------
def _bitlen(x: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values below 2**62 (0 for 0)."""
    _, e = np.frexp(x.astype(np.float64))
    e = e.astype(np.int64)
    # float64 conversion may round up to the next power of two above 2**53.
    return e - ((x >> np.clip(e - 1, 0, 62)) == 0) * (x > 0)


def _shr(x, n):
    """``x >> n`` for 0 <= x < 2**62 and any n >= 0 (large shifts give 0)."""
    return x >> np.minimum(n, 62)


def _low(x, n):
    """The ``n`` low bits of ``0 <= x < 2**62`` (all of x for n >= 62)."""
    return x & ((np.int64(1) << np.minimum(n, 62)) - 1)


# ---------------------------------------------------------------------------------------------
# unpack / pack
# ---------------------------------------------------------------------------------------------
def _unpack(fmt: FloatFormat, c: np.ndarray, ftz: bool) -> _Val:
    m = fmt.man_bits
    sign = (c >> (fmt.width - 1)) & 1
    mag = c & fmt.mag_mask
    e = mag >> m
    f = mag & fmt.man_mask
    if fmt.subnormals:
        sub = e == 0
        sig = np.where(sub, f, f | (1 << m))
        exp = np.where(sub, 1, e) - fmt.bias - m
    else:
        sub = np.zeros(c.shape, bool)
        sig = f | (1 << m)
        exp = e - fmt.bias - m
    zero = fmt.is_zero(c)
    if ftz:
        zero = zero | sub
    kind = np.where(fmt.is_nan(c), _NAN, np.where(fmt.is_inf(c), _INF,
                                                  np.where(zero, _ZERO, _FIN)))
    if not fmt.has_neg_zero:
        sign = np.where(kind == _ZERO, 0, sign)
    return _Val(kind.astype(np.int64), sign.astype(np.int64), sig.astype(np.int64),
                exp.astype(np.int64))


def _pack(fmt: FloatFormat, v: _Val, *, rounding: str, ftz: bool, overflow: str,
          sr_bits: int = 0, rand=None) -> np.ndarray:
    """Round exact values into ``fmt`` codes (rules 2-6 of the module docstring)."""
    m, w = fmt.man_bits, fmt.width
    kind, sign, sig, exp = np.broadcast_arrays(*v)
    fin = kind == _FIN
    sig = np.where(fin, sig, 1)
    exp = np.where(fin, exp, 0)

    top = exp + _bitlen(sig) - 1                      # exponent of the leading bit
    if fmt.subnormals and not ftz:
        q = np.maximum(top, fmt.emin) - m             # exponent of the result ULP
    else:
        q = top - m
    shift = q - exp
    pos = np.maximum(shift, 0)
    kept = _shr(sig, pos)
    rem = _low(sig, pos)
    if sr_bits:
        d = sr_bits
        frac = np.where(pos >= d, _shr(rem, np.maximum(pos - d, 0)),
                        rem << np.clip(d - pos, 0, 62))
        up = (frac + rand) >= (1 << d)
    elif rounding == "rz":
        up = np.zeros(sig.shape, bool)
    else:
        guard = (_shr(rem, np.maximum(pos - 1, 0)) & 1) * (pos > 0)
        if rounding == "rnu":
            up = guard == 1
        else:
            sticky = _low(rem, np.maximum(pos - 1, 0)) != 0
            up = (guard == 1) & (sticky | ((kept & 1) == 1))
    r = np.where(shift > 0, kept + up, sig << np.clip(-shift, 0, 62))
    # Virtual code with unbounded exponent range; monotone in the magnitude.
    vcode = ((q + m + fmt.bias - 1) << m) + r

    if fmt.subnormals and not ftz:
        underflow = r == 0
    elif fmt.subnormals:
        underflow = vcode < (1 << m)
    else:
        underflow = vcode <= 0
    over = vcode > fmt.max_finite_code

    sbit = sign << (w - 1)
    zero = sbit if fmt.has_neg_zero else np.zeros_like(sbit)
    if overflow == "saturate":
        ovf = sbit | fmt.max_finite_code
    elif fmt.has_inf:
        ovf = sbit | (fmt.exp_max_field << m)
    else:
        ovf = np.full_like(sbit, fmt.nan_code)
    inf = (sbit | (fmt.exp_max_field << m)) if fmt.has_inf else np.full_like(sbit, fmt.nan_code)

    code = np.where(over, ovf, np.where(underflow, zero, sbit | np.clip(vcode, 0, fmt.mag_mask)))
    code = np.where(kind == _FIN, code,
                    np.where(kind == _ZERO, zero, np.where(kind == _INF, inf, fmt.nan_code)))
    return code.astype(np.uint32)


# ---------------------------------------------------------------------------------------------
# exact arithmetic on unpacked values
# ---------------------------------------------------------------------------------------------
def _mul_values(a: _Val, b: _Val) -> _Val:
    sign = a.sign ^ b.sign
    nan = (a.kind == _NAN) | (b.kind == _NAN) | ((a.kind == _INF) & (b.kind == _ZERO)) | (
        (a.kind == _ZERO) & (b.kind == _INF))
    kind = np.where(nan, _NAN, np.where((a.kind == _INF) | (b.kind == _INF), _INF,
                                        np.where((a.kind == _ZERO) | (b.kind == _ZERO),
                                                 _ZERO, _FIN)))
    return _Val(kind, sign, a.sig * b.sig, a.exp + b.exp)


def _add_values(a: _Val, b: _Val) -> _Val:
    """Exact sum, or a value that rounds identically (the smaller addend jammed).

    The operand with the larger leading-bit exponent is placed with its leading bit at window
    bit 60 (significands have at most 48 bits, so it is exact and its bit 0 is clear). The other
    is aligned to the same window; bits that would fall below window bit 1 are OR-ed into a
    sticky bit 0. Jamming happens only when the smaller operand lies entirely below bit 48, so
    the sum's leading bit is >= 59, every rounding decision looks at bits >= 2 (24-bit results,
    up to 32 stochastic-rounding bits), and the jammed sum lies strictly between the same two
    multiples of 2 as the exact one: all rounding modes give the same result.
    """
    a_fin = a.kind == _FIN
    b_fin = b.kind == _FIN
    both = a_fin & b_fin
    sa = np.where(a_fin, a.sig, 1)
    sb = np.where(b_fin, b.sig, 1)
    ta = a.exp + _bitlen(sa) - 1
    tb = b.exp + _bitlen(sb) - 1
    swap = tb > ta
    hs, he, hsg = np.where(swap, sb, sa), np.where(swap, b.exp, a.exp), np.where(swap, b.sign,
                                                                                a.sign)
    ls, le, lsg = np.where(swap, sa, sb), np.where(swap, a.exp, b.exp), np.where(swap, a.sign,
                                                                                b.sign)
    base = np.maximum(ta, tb) - _WIN_TOP               # exponent of window bit 0
    hw = hs << np.clip(he - base, 0, 62)
    sh = le - base
    n = np.maximum(1 - sh, 0)
    lw_exact = ls << np.clip(sh, 0, 62)
    lw_jam = (_shr(ls, n) << 1) | (_low(ls, n) != 0)
    lw = np.where(sh >= 1, lw_exact, lw_jam)
    tot = np.where(hsg == lsg, hw + lw, hw - lw)
    sign_sum = np.where(tot < 0, 1 - hsg, hsg)
    tot = np.abs(tot)

    # Special cases and zero operands.
    nan = (a.kind == _NAN) | (b.kind == _NAN) | (
        (a.kind == _INF) & (b.kind == _INF) & (a.sign != b.sign))
    inf = (a.kind == _INF) | (b.kind == _INF)
    inf_sign = np.where(a.kind == _INF, a.sign, b.sign)
    both_zero = (a.kind == _ZERO) & (b.kind == _ZERO)
    cancel = both & (tot == 0)
    kind = np.where(nan, _NAN, np.where(inf, _INF, np.where(
        both_zero | cancel, _ZERO, _FIN)))
    sign = np.where(inf, inf_sign, np.where(both_zero, a.sign & b.sign, np.where(
        cancel, 0, np.where(both, sign_sum, np.where(a_fin, a.sign, b.sign)))))
    sig = np.where(both, tot, np.where(a_fin, a.sig, b.sig))
    exp = np.where(both, base, np.where(a_fin, a.exp, b.exp))
    return _Val(kind, sign, sig, exp)


def _from_float64(x: np.ndarray) -> _Val:
    x = np.asarray(x, dtype=np.float64)
    sign = np.signbit(x).astype(np.int64)
    fin = np.isfinite(x)
    mant, e = np.frexp(np.where(fin, np.abs(x), 0.0))
    sig = (mant * 2.0 ** 53).astype(np.int64)          # exact: 53-bit significand
    exp = e.astype(np.int64) - 53
    kind = np.where(np.isnan(x), _NAN, np.where(np.isinf(x), _INF,
                                                np.where(x == 0, _ZERO, _FIN)))
    return _Val(kind.astype(np.int64), sign, sig, exp)


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def all_codes(fmt) -> np.ndarray:
    """Every code of ``fmt`` in ascending order, as ``np.uint32`` (formats up to 20 bits wide).

    Raises
    ------
    ValueError
        If ``fmt`` is wider than 20 bits (the array would be impractically large).
    """
    fmt = _fmt(fmt, "fmt")
    if fmt.width > 20:
        raise ValueError(f"fmt {fmt.name} has width {fmt.width}; all_codes supports widths "
                         f"up to 20 bits")
    return np.arange(1 << fmt.width, dtype=np.uint32)


def canonical(fmt, codes) -> np.ndarray:
    """Canonicalise codes for comparison: every NaN/NINF code becomes :attr:`nan_code`; in
    ``"merged"`` and ``"fnuz"`` formats every zero becomes code 0. ``-0`` of ``"ieee"`` and
    ``"fn"`` formats is kept (it is a distinct value).
    """
    fmt = _fmt(fmt, "fmt")
    c = _codes(fmt, codes)
    out = np.where(fmt.is_nan(c), fmt.nan_code, c)
    if not fmt.has_neg_zero:
        out = np.where(fmt.is_zero(c), 0, out)
    return out.astype(np.uint32)


def decode(fmt, codes) -> np.ndarray:
    """Values of ``codes`` as float64 (exact): NaN for NaN/NINF, ``+-inf`` for Inf, ``-0.0`` for
    the negative zero of ``"ieee"``/``"fn"`` formats, ``+0.0`` for every other zero."""
    fmt = _fmt(fmt, "fmt")
    v = _unpack(fmt, _codes(fmt, codes), ftz=False)
    s = np.where(v.sign == 1, -1.0, 1.0)
    fin = s * np.ldexp(v.sig.astype(np.float64), np.where(v.kind == _FIN, v.exp, 0))
    return np.where(v.kind == _FIN, fin, np.where(v.kind == _ZERO, s * 0.0, np.where(
        v.kind == _INF, s * np.inf, np.nan)))


def encode(fmt, x, *, rounding=None, ftz=False, overflow=None, sr_bits=0,
           rand=None) -> np.ndarray:
    """Round float64 values into ``fmt`` codes (exactly, from the float64 value).

    Parameters
    ----------
    fmt : FloatFormat or str
    x : array_like of float
        Values; float64 holds every value of every supported format, so ``encode(decode(c))``
        returns ``c`` up to canonicalisation.
    rounding : {None, "rne", "rnu", "rz"}
        Override of ``fmt.rounding``; ``"rz"`` (truncation) is a golden-model extra.
    ftz : bool
        Flush results below ``min_normal`` to zero (rule 4).
    overflow : {None, "inf", "saturate"}
        Override of ``fmt.overflow``.
    sr_bits, rand :
        Stochastic rounding (rule 8).

    Returns
    -------
    numpy.ndarray of uint32
    """
    fmt = _fmt(fmt, "fmt")
    v = _from_float64(x)
    rnd = _rounding(fmt, rounding)
    return _pack(fmt, v, rounding=rnd, ftz=ftz, overflow=_overflow(fmt, overflow),
                 sr_bits=sr_bits, rand=_sr(sr_bits, rand, v.kind.shape))


def convert(fmt_from, fmt_to, codes, *, ftz=False, overflow=None, rounding=None,
            sr_bits=0, rand=None) -> np.ndarray:
    """Convert codes between formats with one rounding (rules 2-6).

    ``ftz`` applies to both sides: subnormal inputs read as zero, tiny results flushed.
    ``overflow`` and ``rounding`` override ``fmt_to``'s policies.
    """
    f1, f2 = _fmt(fmt_from, "fmt_from"), _fmt(fmt_to, "fmt_to")
    v = _unpack(f1, _codes(f1, codes), ftz)
    return _pack(f2, v, rounding=_rounding(f2, rounding), ftz=ftz,
                 overflow=_overflow(f2, overflow), sr_bits=sr_bits,
                 rand=_sr(sr_bits, rand, v.kind.shape))


def mul(fmt_in, a, b, fmt_out=None, *, ftz=False, rounding=None) -> np.ndarray:
    """Exact product of ``fmt_in`` codes ``a * b`` rounded once into ``fmt_out`` (default
    ``fmt_in``)."""
    fi = _fmt(fmt_in, "fmt_in")
    fo = fi if fmt_out is None else _fmt(fmt_out, "fmt_out")
    p = _mul_values(_unpack(fi, _codes(fi, a, "a"), ftz), _unpack(fi, _codes(fi, b, "b"), ftz))
    return _pack(fo, p, rounding=_rounding(fo, rounding), ftz=ftz, overflow=fo.overflow)


def add(fmt, a, b, *, ftz=False, rounding=None, sr_bits=0, rand=None) -> np.ndarray:
    """Exact sum of ``fmt`` codes ``a + b`` rounded once into ``fmt``."""
    f = _fmt(fmt, "fmt")
    s = _add_values(_unpack(f, _codes(f, a, "a"), ftz), _unpack(f, _codes(f, b, "b"), ftz))
    return _pack(f, s, rounding=_rounding(f, rounding), ftz=ftz, overflow=f.overflow,
                 sr_bits=sr_bits, rand=_sr(sr_bits, rand, s.kind.shape))


def fma(fmt_in, a, b, fmt_acc, c, *, ftz=False, rounding=None, sr_bits=0,
        rand=None) -> np.ndarray:
    """Fused multiply-add ``round_acc(a * b + c)``: ``a, b`` in ``fmt_in``, ``c`` and the result in
    ``fmt_acc``, one rounding."""
    fi, fa = _fmt(fmt_in, "fmt_in"), _fmt(fmt_acc, "fmt_acc")
    p = _mul_values(_unpack(fi, _codes(fi, a, "a"), ftz), _unpack(fi, _codes(fi, b, "b"), ftz))
    s = _add_values(p, _unpack(fa, _codes(fa, c, "c"), ftz))
    return _pack(fa, s, rounding=_rounding(fa, rounding), ftz=ftz, overflow=fa.overflow,
                 sr_bits=sr_bits, rand=_sr(sr_bits, rand, s.kind.shape))


def _seq_args(fi, fa, a_seq, b_seq, init, product_rounding, ftz):
    a = _codes(fi, a_seq, "a_seq")
    b = _codes(fi, b_seq, "b_seq")
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(f"a_seq and b_seq must have the same shape with at least one axis "
                         f"(products along the last axis), not {a.shape} and {b.shape}")
    if product_rounding not in PRODUCT_ROUNDINGS:
        raise ValueError(f"product_rounding must be one of "
                         f"{', '.join(repr(x) for x in PRODUCT_ROUNDINGS)}, "
                         f"not {product_rounding!r}")
    batch = a.shape[:-1]
    if init is None:
        acc = np.zeros(batch, np.int64)
    else:
        acc = np.broadcast_to(_codes(fa, init, "init"), batch).copy()
    if product_rounding == "exact_fused":
        prods = _mul_values(_unpack(fi, a, ftz), _unpack(fi, b, ftz))
    else:
        pc = _pack(fa, _mul_values(_unpack(fi, a, ftz), _unpack(fi, b, ftz)),
                   rounding=fa.rounding, ftz=ftz, overflow=fa.overflow)
        prods = _unpack(fa, pc.astype(np.int64), ftz)
    return prods, acc


def _checkpoints(checkpoints, n_total):
    if checkpoints is None:
        return None
    cps = [int(x) for x in np.atleast_1d(np.asarray(checkpoints))]
    if not cps or any(not 0 <= x <= n_total for x in cps):
        raise ValueError(f"checkpoints must be a non-empty list of prefix lengths in "
                         f"0..{n_total}, not {checkpoints!r}")
    return cps


def _step(fa, acc, p, ftz, sr_bits, rand):
    """One accumulation step ``round(p + acc)`` (``p`` unpacked, ``acc`` codes)."""
    s = _add_values(p, _unpack(fa, acc, ftz))
    return _pack(fa, s, rounding=fa.rounding, ftz=ftz, overflow=fa.overflow,
                 sr_bits=sr_bits if rand is not None else 0, rand=rand).astype(np.int64)


def _result(results, cps):
    if cps is None:
        return results[0].astype(np.uint32)
    return np.stack(results, axis=-1).astype(np.uint32)


def mac(fmt_in, a_seq, b_seq, fmt_acc, *, init=None, product_rounding="exact_fused",
        sr_bits=0, rand=None, ftz=False, checkpoints=None) -> np.ndarray:
    """Sequential multiply-accumulate along the last axis (rule 7).

    Parameters
    ----------
    fmt_in, fmt_acc : FloatFormat or str
        Operand and accumulator formats.
    a_seq, b_seq : array_like of int, shape (..., N)
        Operand codes; leading axes are independent dot products.
    init : array_like of int, optional
        Initial accumulator codes (broadcast to the batch shape); default ``+0``.
    product_rounding : {"exact_fused", "round_to_acc"}
        Fused FMA per step, or product rounded into ``fmt_acc`` then added (two roundings).
    sr_bits : int
        Stochastic-rounding width ``d`` (0 = nearest rounding with ``fmt_acc.rounding``).
    rand : array_like of int, shape broadcastable to (..., N)
        ``d``-bit random integers, ``rand[..., n]`` used by step ``n``.
    ftz : bool
        Flush-to-zero (rule 4) on every operand and every rounding.
    checkpoints : sequence of int, optional
        Prefix lengths ``L``: return the results of the same call on ``a_seq[..., :L]``,
        ``b_seq[..., :L]`` for each ``L``, from one pass (used by the numerical study).

    Returns
    -------
    numpy.ndarray of uint32, shape (...) or (..., len(checkpoints))
        Final accumulator codes.
    """
    fi, fa = _fmt(fmt_in, "fmt_in"), _fmt(fmt_acc, "fmt_acc")
    prods, acc = _seq_args(fi, fa, a_seq, b_seq, init, product_rounding, ftz)
    n_total = prods.kind.shape[-1]
    r = _sr(sr_bits, rand, prods.kind.shape, exact=True)
    cps = _checkpoints(checkpoints, n_total)
    want = [n_total] if cps is None else cps
    results = {}
    for n in range(n_total + 1):
        if n in want:
            results[n] = acc
        if n == n_total:
            break
        p = _Val(*(x[..., n] for x in prods))
        acc = _step(fa, acc, p, ftz, sr_bits, None if r is None else r[..., n])
    return _result([results[n] for n in want], cps)


def chunk_mac(fmt_in, a_seq, b_seq, fmt_acc, *, chunk, init=None,
              product_rounding="exact_fused", sr_bits=0, rand=None, rand_outer=None,
              ftz=False, checkpoints=None) -> np.ndarray:
    """Chunk-based accumulation of spec/float.md 2.2 along the last axis (rule 7).

    Parameters
    ----------
    chunk : int
        Chunk length CL >= 1. The inner accumulator is cleared to ``+0`` every ``chunk``
        products; at each chunk end (the last chunk may be short) ``outer = add(outer, inner)``.
    init : array_like of int, optional
        Initial *outer* accumulator codes; default ``+0``.
    rand : array_like of int, shape broadcastable to (..., N), optional
        Stochastic-rounding bits of the inner accumulation steps (with ``sr_bits > 0``).
    rand_outer : array_like of int, shape broadcastable to (..., ceil(N / chunk)), optional
        Stochastic-rounding bits of the outer adds; when ``None`` the outer adds round to
        nearest with ``fmt_acc.rounding`` even if ``sr_bits > 0``.
    checkpoints : sequence of int, optional
        Prefix lengths, as in :func:`mac` (a prefix ending inside a chunk ends with a short
        chunk, exactly as a call on the truncated sequence).

    Other parameters and the return value are as in :func:`mac`.
    """
    fi, fa = _fmt(fmt_in, "fmt_in"), _fmt(fmt_acc, "fmt_acc")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, not {chunk!r}")
    prods, outer = _seq_args(fi, fa, a_seq, b_seq, init, product_rounding, ftz)
    n_total = prods.kind.shape[-1]
    n_chunks = -(-n_total // chunk)
    r = _sr(sr_bits, rand, prods.kind.shape, exact=True)
    if rand_outer is not None:
        if sr_bits == 0:
            raise ValueError("rand_outer must be None when sr_bits is 0 (stochastic rounding "
                             "off)")
        ro = _sr(sr_bits, rand_outer, prods.kind.shape[:-1] + (n_chunks,), "rand_outer",
                 exact=True)
    else:
        ro = None
    cps = _checkpoints(checkpoints, n_total)
    want = [n_total] if cps is None else cps
    results = {}
    inner = np.zeros_like(outer)

    def flush(n):                         # outer + inner at the end of chunk n // chunk
        k = (n - 1) // chunk
        s = _add_values(_unpack(fa, outer, ftz), _unpack(fa, inner, ftz))
        return _pack(fa, s, rounding=fa.rounding, ftz=ftz, overflow=fa.overflow,
                     sr_bits=sr_bits if ro is not None else 0,
                     rand=None if ro is None else ro[..., k]).astype(np.int64)

    for n in range(n_total + 1):
        if n in want:
            results[n] = outer if n % chunk == 0 else flush(n)
        if n == n_total:
            break
        p = _Val(*(x[..., n] for x in prods))
        inner = _step(fa, inner, p, ftz, sr_bits, None if r is None else r[..., n])
        if (n + 1) % chunk == 0:
            outer = flush(n + 1)
            inner = np.zeros_like(outer)
    return _result([results[n] for n in want], cps)


def exact_mac(fmt_in, a_seq, b_seq, fmt_acc, *, max_k=None, checkpoints=None) -> np.ndarray:
    """Exact accumulation along the last axis, rounded once into ``fmt_acc`` (rule 7).

    Every finite product of two ``fmt_in`` values is an integer multiple of
    ``2**lsb``, ``lsb = 2 * (fmt_in.emin - fmt_in.man_bits)``; the products are summed as
    integers in those units (exactly, in any order), and the sum is rounded once with
    ``fmt_acc``'s rounding, underflow and overflow rules (rules 2-4). Specials: any NaN product
    (a NaN operand, ``0 * Inf``), or both a ``+Inf`` and a ``-Inf`` product, give the canonical
    NaN; otherwise an Inf product gives Inf of its sign (rule 6). An exact zero sum is ``+0``
    (the sum starts from ``+0``, as ``mac`` does); a non-zero sum rounding to zero keeps its
    sign. This is what `tessera.hdl.arith.fpexact.FPExactMac` computes.

    Parameters
    ----------
    fmt_in, fmt_acc : FloatFormat or str
    a_seq, b_seq : array_like of int, shape (..., N)
        Operand codes; leading axes are independent dot products.
    max_k : int, optional
        The hardware window's limit: ``N > max_k`` raises ValueError.
    checkpoints : sequence of int, optional
        Prefix lengths, as in :func:`mac`.

    Returns
    -------
    numpy.ndarray of uint32, shape (...) or (..., len(checkpoints))
    """
    fi, fa = _fmt(fmt_in, "fmt_in"), _fmt(fmt_acc, "fmt_acc")
    a = _codes(fi, a_seq, "a_seq")
    b = _codes(fi, b_seq, "b_seq")
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(f"a_seq and b_seq must have the same shape with at least one axis "
                         f"(products along the last axis), not {a.shape} and {b.shape}")
    n_total = a.shape[-1]
    if max_k is not None and n_total > max_k:
        raise ValueError(f"an exact accumulation of {n_total} products is longer than "
                         f"max_k={max_k}, the window's limit")
    cps = _checkpoints(checkpoints, n_total)
    want = [n_total] if cps is None else cps
    p = _mul_values(_unpack(fi, a, False), _unpack(fi, b, False))
    lsb = 2 * (fi.emin - fi.man_bits)
    fin = p.kind == _FIN
    off = np.where(fin, p.exp - lsb, 0)
    sig = np.where(fin, p.sig, 0)
    top = int(sig.max(initial=0)).bit_length() + int(off.max(initial=0))
    wide = top + max(n_total, 1).bit_length() > 61
    if wide:                                  # beyond int64: Python integers
        units = np.frompyfunc(lambda s, o: int(s) << int(o), 2, 1)(sig, off)
    else:
        units = sig << off
    units = np.where(p.sign == 1, -units, units)
    zeros = np.zeros(a.shape[:-1] + (1,), dtype=units.dtype)
    sums = np.concatenate([zeros, np.cumsum(units, axis=-1)], axis=-1)
    false = np.zeros(a.shape[:-1] + (1,), dtype=bool)

    def seen(flags):
        return np.concatenate([false, np.logical_or.accumulate(flags, axis=-1)], axis=-1)
    nan_s = seen(p.kind == _NAN)
    pinf_s = seen((p.kind == _INF) & (p.sign == 0))
    ninf_s = seen((p.kind == _INF) & (p.sign == 1))
    results = []
    for n in want:
        t = sums[..., n]
        neg = t < 0
        mag = np.where(neg, -t, t)
        if wide:
            def jam(x):
                x = int(x)
                s = max(x.bit_length() - 60, 0)
                return (x >> s) | int(x & ((1 << s) - 1) != 0), s
            mj, sh = np.frompyfunc(jam, 1, 2)(mag)
            mag = np.asarray(mj, dtype=np.int64).reshape(t.shape)
            shift = np.asarray(sh, dtype=np.int64).reshape(t.shape)
        else:
            mag = mag.astype(np.int64)
            shift = np.zeros(t.shape, np.int64)
        nan = nan_s[..., n] | (pinf_s[..., n] & ninf_s[..., n])
        inf = pinf_s[..., n] | ninf_s[..., n]
        kind = np.where(nan, _NAN, np.where(inf, _INF, np.where(mag == 0, _ZERO, _FIN)))
        sign = np.where(inf, ninf_s[..., n], np.where(mag == 0, False, neg)).astype(np.int64)
        v = _Val(kind.astype(np.int64), sign, np.where(mag == 0, 1, mag), lsb + shift)
        results.append(_pack(fa, v, rounding=fa.rounding, ftz=False, overflow=fa.overflow))
    return _result(results, cps)
