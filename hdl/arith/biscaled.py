"""BiScaled multiply-accumulate processing element (BiScaled-DNN)."""

from amaranth import Signal, signed

from tessera.hdl.arith.intacc import IntAccPE
from tessera.hdl.array.pe import PESignature


__all__ = ["BiScaledMacPE"]


def _check(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer {lo}..{hi}, not {value!r}")


class BiScaledMacPE(IntAccPE):
    """``acc += (qx * qy) << (swx * da + swy * db)``: one multiplier, one 4-setting shifter.

    ``a`` is the activation code with its scale selector ``sw`` as a side-band member (it
    travels with ``a`` through the array); ``b`` carries the weight code with its selector in
    the bit above it (the contract has no side band on the weight path). The shift is 0, da,
    db or da + db (0, D, 2D when both operands use the same format pair), so the accumulator
    counts units of ``2**-(FBx_fine + FBy_fine)``; it wraps at ``acc_bits``.

    Pipeline (the `IntAccPE` shell): the product and the shift setting are registered, then
    shifted and accumulated. Latency 2, initiation interval 1.

    Parameters
    ----------
    a_bits, b_bits : int
        Code widths including the sign, 2..16.
    da, db : int
        ``fine_frac_bits - wide_frac_bits`` of A / B, 1..16.
    acc_bits : int
        Accumulator width, ``a_bits + b_bits + da + db``..64.

    Members
    -------
    a : In(a_bits)
    sw : In(1)
        A's selector: 1 = scale-wide.
    b : In(b_bits + 1)
        B's code, its selector in bit ``b_bits``.
    valid, first, last : In(1)
    result : Out(signed(acc_bits))
    result_valid : Out(1)
    """

    def __init__(self, *, a_bits=6, b_bits=6, da=2, db=2, acc_bits=32):
        _check("a_bits", a_bits, 2, 16)
        _check("b_bits", b_bits, 2, 16)
        _check("da", da, 1, 16)
        _check("db", db, 1, 16)
        _check("acc_bits", acc_bits, a_bits + b_bits + da + db, 64)
        self._a_bits, self._b_bits, self._da, self._db, self._acc_bits = \
            a_bits, b_bits, da, db, acc_bits
        super().__init__(PESignature(a_shape=a_bits, b_shape=b_bits + 1,
                                     acc_shape=signed(acc_bits), side={"sw": 1}))

    def products(self, m):
        wa, wb = self._a_bits, self._b_bits
        return {"prod": (self.a.as_signed() * self.b[:wb].as_signed(), signed(wa + wb)),
                "sel": (self.sw | (self.b[wb] << 1), 2)}

    def term(self, m, regs):
        # The shifter: three settings besides 0 (rarely exercised: only scale-wide operands).
        prod, sel = regs["prod"], regs["sel"]
        shifted = Signal(signed(self._a_bits + self._b_bits + self._da + self._db))
        with m.Switch(sel):
            with m.Case(0):
                m.d.comb += shifted.eq(prod)
            with m.Case(1):
                m.d.comb += shifted.eq(prod << self._da)
            with m.Case(2):
                m.d.comb += shifted.eq(prod << self._db)
            with m.Case(3):
                m.d.comb += shifted.eq(prod << (self._da + self._db))
        return shifted
