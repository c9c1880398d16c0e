"""The independent reference of the integer epilogue (docs/epilogue.md): exact `Fraction`
arithmetic from the definition, one element at a time, sharing no code with the twin
(`tessera.sim.epilogue`) or the HDL. The regression checks epilogue layers against it."""

import math
from fractions import Fraction

import numpy as np


__all__ = ["ref_epilogue", "ref_many", "per_element"]


def ref_epilogue(acc, bias, mult, shift, zp, lo, hi, *, acc_bits, out_bits):
    """One element, exactly, from the definition (docs/epilogue.md), with Fractions."""
    m = 1 << acc_bits
    s = (acc + bias) % m
    if s >= m // 2:
        s -= m
    w = max(acc_bits, 32)
    # round(s * M / 2**31), ties toward +infinity (what gemmlowp's nudge-and-truncate gives),
    # saturated to w bits.
    v = Fraction(s * mult, 1 << 31)
    x = math.floor(v + Fraction(1, 2))
    x = max(min(x, (1 << (w - 1)) - 1), -(1 << (w - 1)))
    # x / 2**shift, ties away from zero.
    q = Fraction(x, 1 << shift)
    y = math.floor(abs(q) + Fraction(1, 2))
    y = y if q >= 0 else -y
    z = min(max(y + zp, lo), hi)
    return min(max(z, -(1 << (out_bits - 1))), (1 << (out_bits - 1)) - 1)


def ref_many(cols, **kw):
    return np.array([ref_epilogue(*map(int, c), **kw) for c in zip(*cols)], dtype=np.int64)


def per_element(acc_codes, params, *, acc_bits, ref):
    """Apply a one-element reference ``ref(acc, bias, mult, shift, zero_point, lo, hi)`` to
    every accumulator code of a layer (channel axis 1; signed ``acc_bits``) with ``params``
    (per-channel ``bias``, ``mult``, ``shift``; the RUN's ``zero_point``, ``lo``, ``hi``);
    returns ``ref``'s codes as uint64. Shared by the requantizing epilogues' references."""
    acc = np.asarray(acc_codes, dtype=object)
    m = 1 << acc_bits
    out = np.empty(acc.shape, dtype=np.uint64)
    run = (int(params["zero_point"]), int(params["lo"]), int(params["hi"]))
    for idx in np.ndindex(*acc.shape):
        c = idx[1]
        a = int(acc[idx]) % m
        a = a - m if a >= m // 2 else a
        out[idx] = ref(a, int(params["bias"][c]), int(params["mult"][c]),
                       int(params["shift"][c]), *run)
    return out


def reference_layer_codes(acc_codes, params, *, acc_bits, out_bits):
    """Epilogue output codes (``out_bits`` two's complement) of a layer's accumulator codes
    (N x O or N x O x H x W, channel axis 1) under ``params`` (per-channel ``bias``, ``mult``,
    ``shift``; the RUN's ``zero_point``, ``lo``, ``hi``), element by element with
    `ref_epilogue`."""
    return per_element(acc_codes, params, acc_bits=acc_bits, ref=lambda *v: ref_epilogue(
        *v, acc_bits=acc_bits, out_bits=out_bits) % (1 << out_bits))
