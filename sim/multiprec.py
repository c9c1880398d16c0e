"""Golden twins of the multi-precision PE (`tessera.hdl.arith.multiprec`): nibble products,
one MAC, an array tile; checked against plain integer products."""

import numpy as np

from tessera.sim.precision import PrecisionMode


__all__ = ["nibble_product", "nibble_steps", "mode_ii", "mac", "MultiPrecArrayModel"]


def nibble_product(x, y, x_signed, y_signed):
    """Products of 4-bit nibbles, each extended to 5 bits (bit 4 = bit 3 if signed)."""
    x = np.asarray(x, dtype=np.int64) & 15
    y = np.asarray(y, dtype=np.int64) & 15
    xv = x - (((x >> 3) & np.asarray(x_signed, dtype=np.int64)) << 4)
    yv = y - (((y >> 3) & np.asarray(y_signed, dtype=np.int64)) << 4)
    return xv * yv


def mode_ii(mode):
    """Cycles per operand pair: the nibble products of one pair."""
    return (mode.a_bits // 4) * (mode.b_bits // 4)


def nibble_steps(mode):
    """The PE's step sequence: ``(ix, iw)`` nibble indices, activation nibble fastest."""
    na, nb = mode.a_bits // 4, mode.b_bits // 4
    return [(s % na, s // na) for s in range(na * nb)]


def mac(a_codes, b_codes, mode):
    """Sum over the last axis of the pair products as the PE forms them, step by step:
    nibble product (top nibble signed for a signed operand) shifted by 4 (ix + iw)."""
    a = np.asarray(a_codes, dtype=np.int64)
    b = np.asarray(b_codes, dtype=np.int64)
    na, nb = mode.a_bits // 4, mode.b_bits // 4
    total = np.zeros(np.broadcast(a, b).shape[:-1], dtype=np.int64)
    for ix, iw in nibble_steps(mode):
        p = nibble_product(a >> (4 * ix), b >> (4 * iw), mode.a_signed and ix == na - 1,
                           mode.b_signed and iw == nb - 1)
        total += (p << (4 * (ix + iw))).sum(axis=-1)
    return total


class MultiPrecArrayModel:
    """Twin of a `SystolicArray` of `MultiPrecPE`s: C[r, c] = wrap(sum_k a_k[r] * b_k[c]),
    each product formed from nibble products as the PE does.

    Parameters
    ----------
    acc_bits : int
    default : str
        The mode of a tile without a mode.
    """

    def __init__(self, *, acc_bits, default):
        self.acc_bits = acc_bits
        self.default = default

    def tile(self, a_lanes, b_lanes, mode=None):
        """``a_lanes`` (K x rows), ``b_lanes`` (K x cols) lane codes -> rows x cols codes."""
        pm = PrecisionMode.parse(self.default if mode is None else mode)
        a = np.asarray(a_lanes, dtype=np.int64) & ((1 << pm.a_bits) - 1)
        b = np.asarray(b_lanes, dtype=np.int64) & ((1 << pm.b_bits) - 1)
        acc = mac(a.T[:, None, :], b.T[None, :, :], pm)
        return (acc & ((1 << self.acc_bits) - 1)).astype(np.uint64) if self.acc_bits < 64 \
            else acc.astype(np.uint64)
