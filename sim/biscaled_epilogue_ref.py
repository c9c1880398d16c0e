"""The independent reference of the BiScaled epilogue (docs/epilogue.md, "biscaled"): exact
`Fraction` arithmetic from the definition, one element at a time, sharing no code with the
twin (`tessera.sim.biscaled_epilogue`), the integer epilogue's twin or the HDL."""

import math
from fractions import Fraction

import numpy as np


__all__ = ["ref_biscaled_epilogue", "reference_layer_codes_biscaled"]


def _round_away(q):
    """A Fraction rounded to the nearest integer, ties away from zero."""
    y = math.floor(abs(q) + Fraction(1, 2))
    return y if q >= 0 else -y


def ref_biscaled_epilogue(acc, bias, mult, shift, zp, lo, hi, *, acc_bits, bits, d):
    """One element -> the A lane element code (code | selector << bits), from the definition."""
    m = 1 << acc_bits
    s = (acc + bias) % m
    if s >= m // 2:
        s -= m
    w = max(acc_bits, 32)
    # round(s * M / 2**31) with ties toward +infinity, saturated to w bits.
    x = math.floor(Fraction(s * mult, 1 << 31) + Fraction(1, 2))
    x = max(min(x, (1 << (w - 1)) - 1), -(1 << (w - 1)))
    # x / 2**shift, ties away from zero; zero point; clamp (TFLite order); level range.
    z = min(max(_round_away(Fraction(x, 1 << shift)) + zp, lo), hi)
    lb = bits + d
    z = min(max(z, -(1 << (lb - 1))), (1 << (lb - 1)) - 1)
    cmin, cmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if cmin <= z <= cmax:                       # the scale-fine level is a code
        code, sel = z, 0
    else:                                       # re-rounded to scale-wide (2**d fine levels)
        code, sel = min(max(_round_away(Fraction(z, 1 << d)), cmin), cmax), 1
        if cmin <= code * (1 << d) <= cmax:     # a scale-fine code too: written at fine
            code, sel = code * (1 << d), 0
    return (code % (1 << bits)) + (sel << bits)


def reference_layer_codes_biscaled(acc_codes, params, *, acc_bits, bits, d):
    """Epilogue output lane codes of a layer's accumulator codes (channel axis 1) under
    ``params`` (per-channel ``bias``, ``mult``, ``shift``; the RUN's ``zero_point``, ``lo``,
    ``hi``), element by element with `ref_biscaled_epilogue`."""
    from tessera.sim.epilogue_ref import per_element
    return per_element(acc_codes, params, acc_bits=acc_bits,
                       ref=lambda *v: ref_biscaled_epilogue(*v, acc_bits=acc_bits, bits=bits,
                                                            d=d))
