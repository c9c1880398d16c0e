"""Golden twin of `tessera.hdl.arith.biscaled_epilogue.BiScaledEpilogue`: the integer
requantization of `tessera.sim.epilogue.int_epilogue` onto the next layer's scale-fine
integer grid, then the BiScaled element choice (docs/epilogue.md, "biscaled").

The rule, for a BiScaled A format of ``bits``-wide codes and scale distance
``D = fine_frac_bits - wide_frac_bits``:

1. ``z = int_epilogue(acc, bias, mult, shift, zero_point, lo, hi)`` with the output width
   ``level_bits = bits + D`` (signed): a level of scale-fine (units ``2**-fine_frac_bits``),
   clamped to ``[lo, hi]``, which covers scale-wide's range.
2. If ``-2**(bits-1) <= z <= 2**(bits-1) - 1``: code ``z``, selector 0 (scale-fine).
3. Else ``w = z / 2**D`` rounded to nearest, ties away from zero (the rule of step 3 of the
   integer epilogue), clamped to ``[-2**(bits-1), 2**(bits-1) - 1]``: code ``w``, selector 1
   (scale-wide). If ``w * 2**D`` is itself inside the code range (only possible at the
   range's ends: ``z`` just below ``-2**(bits-1)``, or ``D >= bits - 1``), the output is that
   scale-fine code with selector 0 instead: the same value, written as the kind's codec
   (`BiScaledKind.encode`) writes it (scale-fine wherever the value is a scale-fine code).
4. The output is the A lane element code: ``(code mod 2**bits) | selector << bits``.
"""

import numpy as np

from tessera.sim.epilogue import int_epilogue


__all__ = ["biscaled_epilogue", "biscaled_select"]


def biscaled_select(z, *, bits, d):
    """Scale-fine levels (int64 array) -> ``(codes, sw)``: signed codes (int64) and selectors
    (steps 2 and 3 of the module rule)."""
    z = np.asarray(z, dtype=np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    fits = (z >= lo) & (z <= hi)
    half = np.int64(1 << (d - 1))
    w = (z + half - (z < 0).astype(np.int64)) >> np.int64(d)    # ties away from zero
    w = np.clip(w, lo, hi)
    # Canonical, as the kind's codec `encode`: a scale-wide value that is also a scale-fine
    # code (w * 2**D inside the code range) is written at scale-fine.
    back = (w >= -((1 << (bits - 1)) >> d)) & (w <= ((1 << (bits - 1)) - 1) >> d)
    wide = ~fits & ~back
    code = np.where(fits, z, np.where(back, w << np.int64(d), w))
    return code, wide.astype(np.int64)


def biscaled_epilogue(acc, bias, mult, shift, zero_point, lo, hi, *, acc_bits, bits, d):
    """Apply the BiScaled epilogue element-wise (arguments broadcast); ``zero_point``, ``lo``,
    ``hi`` are signed ``bits + d``-bit scale-fine levels. Returns the lane element codes
    (uint64): code in bits 0..bits-1, the selector in bit ``bits``."""
    z = int_epilogue(acc, bias, mult, shift, zero_point, lo, hi, acc_bits=acc_bits,
                     out_bits=bits + d)
    code, sw = biscaled_select(z, bits=bits, d=d)
    return ((code & np.int64((1 << bits) - 1)) | (sw << np.int64(bits))).astype(np.uint64)
