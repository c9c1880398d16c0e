"""Independent reference of the ternary epilogue (``docs/epilogue.md``).

Element by element with exact rationals: the accumulator code becomes its signed value, the
bias is added and wrapped with Python integers, the quantizer's input is the Fraction
``x = s * mult / (2**shift * (2**k - 1))`` and the output is the host toolkit's
`tessera.sim.ternary.quantize_act` on it (DoReFa's ``floor((2**k - 1) * clip(x, 0, 1) +
1/2)`` on Fractions). Shares no code with the twin (`tessera.sim.ternary_epilogue`) or the
HDL: no shift, no rounding constant, no clamp in integers.
"""

from fractions import Fraction

import numpy as np

from tessera.sim.ternary import quantize_act


__all__ = ["ref_ternary_epilogue", "reference_layer_codes_ternary"]


def _signed(code, bits):
    code = int(code) % (1 << bits)
    return code - (1 << bits) if code >= 1 << (bits - 1) else code


def ref_ternary_epilogue(acc, bias, mult, shift, *, acc_bits, act_bits):
    """Signed accumulator values (array_like, broadcast against the parameters) -> activation
    codes (int64), by Fractions and `quantize_act`."""
    acc, bias, mult, shift = np.broadcast_arrays(*(np.asarray(v, dtype=object)
                                                   for v in (acc, bias, mult, shift)))
    m = (1 << act_bits) - 1
    xs = np.empty(acc.shape, dtype=object)
    for i, (a, b, mu, sh) in enumerate(zip(acc.flat, bias.flat, mult.flat, shift.flat)):
        s = _signed(int(a) + int(b), acc_bits)
        xs.flat[i] = Fraction(s * int(mu), (1 << int(sh)) * m)
    return np.asarray(quantize_act(xs, act_bits), dtype=np.int64).reshape(acc.shape)


def reference_layer_codes_ternary(acc_codes, params, *, acc_bits, act_bits):
    """A layer's accumulator codes (channel axis 1: Dense N x O, convolution N x O x H x W) and
    the mapper's parameters (``bias``, ``mult``, ``shift``: one per channel) -> activation
    codes (uint64)."""
    acc = np.asarray(acc_codes, dtype=np.uint64)
    shape = [1] * acc.ndim
    shape[1] = -1
    vals = np.vectorize(lambda c: _signed(int(c), acc_bits), otypes=[object])(acc)
    chan = [np.asarray(params[k], dtype=np.int64).reshape(shape) for k in
            ("bias", "mult", "shift")]
    return ref_ternary_epilogue(vals, *chan, acc_bits=acc_bits,
                                act_bits=act_bits).astype(np.uint64)
