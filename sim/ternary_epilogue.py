"""Golden twin of `tessera.hdl.arith.ternary_epilogue.TernaryEpilogue`, and the host's scale
helper.

The rule (``docs/epilogue.md``): for an accumulator ``acc`` (signed ``acc_bits``) and the
per-channel ``bias`` (signed ``acc_bits``), ``mult`` (unsigned `MULT_BITS`) and ``shift``,

1. ``s = wrap(acc + bias)`` (the accumulator's own two's complement wrap);
2. ``y = s * mult / 2**shift``: the quantizer's input in output-code units, i.e.
   ``y = (2**k - 1) * x`` for the bounded-ReLU input ``x`` of `tessera.sim.ternary`;
3. ``q = floor(clip(y, 0, 2**k - 1) + 1/2)`` with ``k = act_bits``, which is exactly
   ``quantize_act(x, k) = floor((2**k - 1) * clip(x, 0, 1) + 1/2)`` (round half up).

In integers: ``q = clip((s * mult + 2**(shift-1)) >> shift, 0, 2**k - 1)`` (no rounding term
for ``shift = 0``); every shift value is defined, from ``acc_bits + MULT_BITS`` on ``q`` is 0.
"""

import numbers
from fractions import Fraction

import numpy as np


__all__ = ["ternary_epilogue", "scale_to_mult_shift", "shift_bits_for", "MULT_BITS"]

#: Width of the unsigned multiplier.
MULT_BITS = 16


def shift_bits_for(acc_bits):
    """Bits of the shift field: enough for right shifts 0..acc_bits+MULT_BITS."""
    return (acc_bits + MULT_BITS).bit_length()


def _check(name, x, lo, hi):
    if x.size and (x.min() < lo or x.max() > hi):
        bad = x[(x < lo) | (x > hi)].flat[0]
        raise ValueError(f"{name} must hold integers {lo}..{hi}, not {bad}")


def ternary_epilogue(acc, bias, mult, shift, *, acc_bits, act_bits):
    """Apply the ternary epilogue element-wise (arguments broadcast against each other).

    Parameters
    ----------
    acc, bias : array_like of int
        Signed ``acc_bits`` integers.
    mult : array_like of int
        Unsigned `MULT_BITS` multipliers.
    shift : array_like of int
        Right shifts, 0..2**shift_bits - 1.
    acc_bits : int
        8..64.
    act_bits : int
        1..16: ``k``, the width of the output activation codes.

    Returns
    -------
    numpy.ndarray of int64
        Activation codes ``0 .. 2**act_bits - 1``.
    """
    if not 8 <= acc_bits <= 64:
        raise ValueError(f"acc_bits must be an integer 8..64, not {acc_bits!r}")
    if not 1 <= act_bits <= 16:
        raise ValueError(f"act_bits must be an integer 1..16, not {act_bits!r}")
    cap = acc_bits + MULT_BITS           # shifts from here on give 0 for every product
    wide = cap + 2 > 63                  # the product no longer fits int64: Python ints
    dt = object if wide else np.int64
    acc, bias, mult, shift = (np.asarray(v, dtype=object if wide else np.int64).astype(dt)
                              for v in (acc, bias, mult, shift))
    half = 1 << (acc_bits - 1)
    for name, v, lo, hi in (("acc", acc, -half, half - 1), ("bias", bias, -half, half - 1),
                            ("mult", mult, 0, (1 << MULT_BITS) - 1),
                            ("shift", shift, 0, (1 << shift_bits_for(acc_bits)) - 1)):
        _check(name, v, lo, hi)
    m = 1 << acc_bits
    s = (acc + bias + half) % m - half
    p = s * mult
    sh = np.minimum(shift, cap)
    one = np.ones_like(sh)
    rnd = np.where(sh > 0, np.left_shift(one, np.maximum(sh, 1) - 1), 0)
    y = (p + rnd) >> sh
    top = (1 << act_bits) - 1
    return np.clip(y, 0, top).astype(np.int64)


def scale_to_mult_shift(scale, *, acc_bits):
    """A positive real ``scale`` (``y = (acc + bias) * scale`` in output-code units) -> the
    ``(mult, shift)`` pair of the largest ``shift`` (at most ``acc_bits + MULT_BITS``) whose
    ``mult = floor(scale * 2**shift + 1/2)`` fits `MULT_BITS` unsigned bits, computed exactly.
    A scale that is a power of two times an integer below ``2**MULT_BITS`` is represented
    exactly.

    Raises
    ------
    ValueError
        For a scale that is not a finite positive real, one that needs more than `MULT_BITS`
        bits at shift 0, and one that rounds to 0 at the largest shift.
    """
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
        raise ValueError(f"scale must be a positive real number, not {scale!r}")
    try:
        v = Fraction(float(scale) if isinstance(scale, np.floating) else scale)
    except (ValueError, OverflowError, TypeError):
        raise ValueError(f"scale must be a finite positive real number, not {scale!r}") from None
    if v <= 0:
        raise ValueError(f"scale must be a positive real number, not {scale!r}")
    top = (1 << MULT_BITS) - 1
    cap = acc_bits + MULT_BITS
    best = None
    for shift in range(cap + 1):
        mult = int(v * (1 << shift) + Fraction(1, 2))
        if mult > top:
            break
        best = (mult, shift)
    if best is None:
        raise ValueError(f"scale {scale!r} is too large: it needs more than {MULT_BITS} bits "
                         f"at shift 0; allowed: scales below {top + Fraction(1, 2)}")
    if best[0] == 0:
        raise ValueError(f"scale {scale!r} is too small: it rounds to 0 at shift {cap}; "
                         f"allowed: scales from 2**-{cap + 1}")
    return best
