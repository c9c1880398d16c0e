"""Golden twin of `tessera.hdl.arith.epilogue.IntEpilogue`, and the host's multiplier helper.

The rule is TFLite's integer-only requantization (gemmlowp's
``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``), generalized to
accumulators wider than 32 bits; ``docs/epilogue.md`` states it exactly.
"""

import math

import numpy as np


__all__ = ["int_epilogue", "quantize_multiplier", "shift_bits_for", "MULT_BITS"]

#: Width of the signed multiplier M.
MULT_BITS = 32


def shift_bits_for(acc_bits):
    """Bits of the shift field: enough for right shifts 0..acc_bits+31."""
    return (acc_bits + 31).bit_length()


def _check(name, x, lo, hi):
    if x.size and (x.min() < lo or x.max() > hi):
        bad = x[(x < lo) | (x > hi)].flat[0]
        raise ValueError(f"{name} must hold integers {lo}..{hi}, not {bad}")


def _signed_range(bits):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def int_epilogue(acc, bias, mult, shift, zero_point, lo, hi, *, acc_bits, out_bits):
    """Apply the integer epilogue element-wise (arguments broadcast against each other).

    Parameters
    ----------
    acc, bias : array_like of int
        Signed ``acc_bits`` integers (the accumulator and the per-channel bias).
    mult : array_like of int
        Signed 32-bit multipliers M (normally ``quantize_multiplier``'s, in [2**30, 2**31)).
    shift : array_like of int
        Right shifts, 0..2**shift_bits - 1 (every value is defined; from acc_bits + 1 on the
        result is 0 before the zero point).
    zero_point, lo, hi : array_like of int
        Signed ``out_bits`` integers: the output zero point and the clamp range.
    acc_bits : int
        8..64.
    out_bits : int
        2..32.

    Returns
    -------
    numpy.ndarray of int64
        Signed ``out_bits`` results.
    """
    if not 8 <= acc_bits <= 64:
        raise ValueError(f"acc_bits must be an integer 8..64, not {acc_bits!r}")
    if not 2 <= out_bits <= 32:
        raise ValueError(f"out_bits must be an integer 2..32, not {out_bits!r}")
    wide = acc_bits > 32            # s * M no longer fits int64: exact Python ints
    dt = object if wide else np.int64
    acc, bias, mult, shift, zero_point, lo, hi = (
        np.asarray(v, dtype=object if wide else np.int64).astype(dt)
        for v in (acc, bias, mult, shift, zero_point, lo, hi))
    for name, v, bits in (("acc", acc, acc_bits), ("bias", bias, acc_bits),
                          ("mult", mult, MULT_BITS), ("zero_point", zero_point, out_bits),
                          ("lo", lo, out_bits), ("hi", hi, out_bits)):
        _check(name, v, *_signed_range(bits))
    _check("shift", shift, 0, (1 << shift_bits_for(acc_bits)) - 1)
    # 1. Bias add in the accumulator width, wrapping (int64 sums of two <= 32-bit values are
    #    exact; Python ints are exact at any width).
    m = 1 << acc_bits
    s = (acc + bias + (m >> 1)) % m - (m >> 1)
    # 2. SaturatingRoundingDoublingHighMul: round half up of s*M / 2**31 (gemmlowp's nudge
    #    toward the sign followed by truncation toward zero equals floor(s*M + 2**30) >> 31),
    #    saturated to max(acc_bits, 32) bits: the only overflow is s = M = most negative.
    top = (1 << (max(acc_bits, 32) - 1)) - 1
    x = np.minimum((s * mult + (1 << 30)) >> 31, top)
    # 3. RoundingDivideByPOT (gemmlowp's form): the floor shift, plus 1 when the remainder is
    #    above half (at half for x >= 0): round half away from zero. Shifts are capped where
    #    the result is 0 anyway, so the masks stay within int64 on the narrow path.
    sh = np.minimum(shift, acc_bits + 1)
    mask = (np.left_shift(1, sh) if not wide else
            np.frompyfunc(lambda e: 1 << e, 1, 1)(sh)) - 1
    def bit(cond):                  # a 0/1 array in the working dtype
        return np.asarray(cond).astype(dt)
    rem = x & mask
    threshold = (mask >> 1) + bit(x < 0)
    y = (x >> sh) + bit(rem > threshold)
    # 4. Zero point, activation clamp (TFLite order), operand range.
    z = np.minimum(np.maximum(y + zero_point, lo), hi)
    z = np.clip(z, *_signed_range(out_bits))
    return np.asarray(z).astype(np.int64)


def quantize_multiplier(real_scale, *, max_shift=31):
    """A real scale in (0, 1) -> ``(M, shift)`` with ``scale ~= M * 2**-(31 + shift)``.

    TFLite's ``QuantizeMultiplier``: ``frexp`` gives ``scale = q * 2**e`` with q in [0.5, 1);
    ``M = round(q * 2**31)`` (half away from zero), and when that rounds up to 2**31,
    ``M = 2**30`` and e + 1; ``shift = -e`` is a right shift. Refused with `ValueError`: a
    scale that is not a finite number in (0, 1), one so close to 1 that it rounds to 1.0
    (a left shift, not supported in this version), and one needing a right shift above
    ``max_shift`` (TFLite returns a zero multiplier there; the epilogue unit takes up to
    acc_bits + 31, pass ``max_shift`` to allow them).
    """
    real = float(real_scale)
    if not math.isfinite(real) or not 0.0 < real < 1.0:
        raise ValueError(f"real_scale must be a finite number in (0, 1), not {real_scale!r}")
    q, e = math.frexp(real)
    # q * 2**31 is exact and below 2**31, so adding 0.5 is exact: floor(. + 0.5) is
    # std::round for a positive value.
    mult = math.floor(q * (1 << 31) + 0.5)
    if mult == 1 << 31:
        mult //= 2
        e += 1
    shift = -e
    if shift < 0:
        raise ValueError(f"real_scale {real!r} rounds to 1.0 (a left shift); allowed: scales "
                         f"below 1 - 2**-32")
    if shift > max_shift:
        raise ValueError(f"real_scale {real!r} needs a right shift of {shift}, more than "
                         f"max_shift {max_shift}")
    return mult, shift
