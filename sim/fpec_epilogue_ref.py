"""The independent reference of the FPEC requantizing epilogue (docs/epilogue.md, "fpec"):
exact `Fraction` arithmetic from the definition, one element at a time, sharing no code with
the twin (`tessera.sim.fpec_epilogue`) or the HDL.

``x = wrap(acc + bias) * M / 2**(31 + shift) + zero_point`` exactly (output LSBs, no
intermediate rounding); ``v = min(max(x, lo), hi)`` (ReLU/clip on the exact value, TFLite's
order), where a bound at the format's end (``lo = -2**(w-1)``, ``hi = 2**(w-1) - 1``) is
not applied (it is the quantizer's own saturation); then the host quantizer's rule of
`tessera.sim.fpec.FpecFormat.quantize` on ``v`` with Fractions: ``q = floor(v + 1/2)``
saturated to the format, ``r = v - q``; ``|r| < T`` sets EZB (EDB = EMB = 0); otherwise EDB
= ``r < 0`` and EMB = ``floor((|r| - T) / width)`` clipped to ``0 .. 2**m - 1`` with ``width
= (1/2 - T) / 2**m`` (0 when ``width`` is 0)."""

import math
from fractions import Fraction

import numpy as np


__all__ = ["ref_fpec_epilogue", "reference_layer_codes_fpec"]


def ref_fpec_epilogue(acc, bias, mult, shift, zp, lo, hi, *, acc_bits, w, emb_bits, threshold):
    """One element -> its FPEC element code (int), from the definition."""
    m = 1 << acc_bits
    s = (acc + bias) % m
    if s >= m // 2:
        s -= m
    x = Fraction(s * mult, 1 << (31 + shift)) + zp
    qmin, qmax = -2 ** (w - 1), 2 ** (w - 1) - 1
    v = x
    if lo != qmin:                  # a bound at the format's end is the quantizer's saturation
        v = max(v, Fraction(lo))
    if hi != qmax:
        v = min(v, Fraction(hi))
    q = min(max(math.floor(v + Fraction(1, 2)), qmin), qmax)
    r = v - q
    t = Fraction(threshold)
    n = 2 ** emb_bits
    if abs(r) < t:
        ezb, edb, e = 1, 0, 0
    else:
        ezb, edb = 0, int(r < 0)
        width = (Fraction(1, 2) - t) / n
        e = 0 if width == 0 else min(max(math.floor((abs(r) - t) / width), 0), n - 1)
    assert -(2 ** (w - 1)) <= q < 2 ** (w - 1)
    return (q % 2 ** w) + (1 - ezb) * 2 ** w + edb * 2 ** (w + 1) + e * 2 ** (w + 2)


def reference_layer_codes_fpec(acc_codes, params, *, acc_bits, w, emb_bits, threshold):
    """FPEC element codes of a layer's accumulator codes (channel axis 1) under ``params``
    (per-channel ``bias``, ``mult``, ``shift``; the RUN's ``zero_point``, ``lo``, ``hi``)."""
    from tessera.sim.epilogue_ref import per_element
    return per_element(acc_codes, params, acc_bits=acc_bits,
                       ref=lambda *v: ref_fpec_epilogue(*v, acc_bits=acc_bits, w=w,
                                                        emb_bits=emb_bits,
                                                        threshold=threshold))
