"""Golden twins of the Bit Fusion units: BitBrick, fusion unit, and an array tile of them.

The twins compute what the hardware computes (digits in brick slots, per-brick signedness,
shift amounts 2(i + j)), vectorized in NumPy; they are checked against plain integer products
(`tessera.sim.precision.reference_matmul`), which know nothing of bricks.
"""

import numpy as np

from tessera.sim.precision import PrecisionMode


__all__ = ["SLOTS", "bitbrick", "slot_map", "products_per_word", "pack_slots", "unpack_slots",
           "fusion", "BitFusionArrayModel"]

#: BitBricks per fusion unit; brick (u, v) of the 4 x 4 grid is slot q = u + 4 v, fed by bits
#: 2q, 2q + 1 of the A and of the B lane (u: activation digit row, v: weight digit column).
SLOTS = 16


def bitbrick(x, y, x_signed, y_signed):
    """BitBrick products: each 2-bit digit extended to 3 bits (bit 2 = bit 1 if signed)."""
    x = np.asarray(x, dtype=np.int64) & 3
    y = np.asarray(y, dtype=np.int64) & 3
    xe = x | ((x >> 1) & np.asarray(x_signed, dtype=np.int64)) << 2
    ye = y | ((y >> 1) & np.asarray(y_signed, dtype=np.int64)) << 2
    return (xe - ((xe & 4) << 1)) * (ye - ((ye & 4) << 1))


def products_per_word(mode):
    """Products a fusion unit computes per cycle in ``mode``: (8 / a_bits) * (8 / b_bits)."""
    return (8 // mode.a_bits) * (8 // mode.b_bits)


def slot_map(mode):
    """For each slot q: ``(p, i, j)``: the brick multiplies digit i of activation element p by
    digit j of weight element p, so its product is shifted left by 2 (i + j).

    With ``na = a_bits / 2`` and ``nb = b_bits / 2`` digits per element, brick (u, v) takes
    ``i = u mod na``, ``j = v mod nb`` and ``p = u div na + (4 / na) (v div nb)``: the shift
    splits into a row part 2 (u mod na) and a column part 2 (v mod nb), so the shift-add tree
    sums each row with the weight precision's shifts and then the rows with the activation
    precision's (`tessera.hdl.arith.fusion.FusionUnit`).
    """
    na, nb = mode.a_bits // 2, mode.b_bits // 2
    return [((q % 4) // na + (4 // na) * ((q // 4) // nb), (q % 4) % na, (q // 4) % nb)
            for q in range(SLOTS)]


def _pack(codes, mode, side):
    codes = np.asarray(codes, dtype=np.uint64)
    n = products_per_word(mode)
    *lead, k = codes.shape
    if k % n:
        raise ValueError(f"K={k} is not a multiple of {n} elements per lane")
    g = codes.reshape(*lead, k // n, n)
    lanes = np.zeros((*lead, k // n), dtype=np.uint64)
    for q, (p, i, j) in enumerate(slot_map(mode)):
        d = i if side == "a" else j
        lanes |= ((g[..., p] >> np.uint64(2 * d)) & np.uint64(3)) << np.uint64(2 * q)
    return lanes


def pack_slots(codes, mode, side):
    """Element codes (..., K) -> 32-bit lane codes (..., K / products_per_word(mode)): every
    brick slot holds the digit it multiplies (``side`` "a": activation digits, "b": weight
    digits). A digit sits in every slot that needs it, so at 8 x 8 bits each activation digit
    appears 4 times in a lane: the lane is laid out for the bricks, not the other way round."""
    return _pack(codes, mode, side)


def unpack_slots(lanes, mode, side):
    """The inverse of `pack_slots` (reads each digit from the first slot that holds it)."""
    lanes = np.asarray(lanes, dtype=np.uint64)
    n = products_per_word(mode)
    bits = mode.a_bits if side == "a" else mode.b_bits
    out = np.zeros((*lanes.shape, n), dtype=np.uint64)
    seen = set()
    for q, (p, i, j) in enumerate(slot_map(mode)):
        d = i if side == "a" else j
        if (p, d) in seen:
            continue
        seen.add((p, d))
        out[..., p] |= ((lanes >> np.uint64(2 * q)) & np.uint64(3)) << np.uint64(2 * d)
    assert len(seen) == n * bits // 2
    return out.reshape(*lanes.shape[:-1], lanes.shape[-1] * n)


def fusion(a_lanes, b_lanes, mode):
    """What a fusion unit outputs for lane codes ``a_lanes``, ``b_lanes`` (broadcast): the sum
    over its 16 bricks of brick(x_q, y_q) << 2 (i_q + j_q), i.e. the dot product of the
    `products_per_word` element pairs the lanes hold."""
    a = np.asarray(a_lanes, dtype=np.uint64)
    b = np.asarray(b_lanes, dtype=np.uint64)
    na, nb = mode.a_bits // 2, mode.b_bits // 2
    total = np.zeros(np.broadcast(a, b).shape, dtype=np.int64)
    for q, (_, i, j) in enumerate(slot_map(mode)):
        x = ((a >> np.uint64(2 * q)) & np.uint64(3)).astype(np.int64)
        y = ((b >> np.uint64(2 * q)) & np.uint64(3)).astype(np.int64)
        prod = bitbrick(x, y, int(mode.a_signed and i == na - 1),
                        int(mode.b_signed and j == nb - 1))
        total += prod << (2 * (i + j))
    return total


class BitFusionArrayModel:
    """Twin of a `SystolicArray` of `BitFusionPE`s: C[r, c] = wrap(sum_k fusion(a_k[r], b_k[c])).

    Parameters
    ----------
    acc_bits : int
        Accumulator width (two's complement, wrapping).
    default : str
        The mode a tile without a mode runs in.
    """

    def __init__(self, *, acc_bits, default):
        self.acc_bits = acc_bits
        self.default = default

    def tile(self, a_lanes, b_lanes, mode=None):
        """``a_lanes`` (K x rows) and ``b_lanes`` (K x cols) lane codes -> rows x cols codes."""
        pm = PrecisionMode.parse(self.default if mode is None else mode)
        a = np.asarray(a_lanes, dtype=np.uint64)
        b = np.asarray(b_lanes, dtype=np.uint64)
        acc = fusion(a[:, :, None], b[:, None, :], pm).sum(axis=0)
        return (acc & ((1 << self.acc_bits) - 1)).astype(np.uint64) if self.acc_bits < 64 \
            else acc.astype(np.uint64)
