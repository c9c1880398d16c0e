"""BiScaled multiply-accumulate processing element (BiScaled-DNN)."""

from amaranth import Module, Mux, Signal, signed

from tessera.hdl.arith.params import int_acc_latency
from tessera.hdl.array.pe import PE, PESignature


__all__ = ["BiScaledMacPE"]


def _check(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer {lo}..{hi}, not {value!r}")


class BiScaledMacPE(PE):
    """``acc += (qx * qy) << (swx * da + swy * db)``: one multiplier, one 4-setting shifter.

    ``a`` is the activation code with its scale selector ``sw`` as a side-band member (it
    travels with ``a`` through the array); ``b`` carries the weight code with its selector in
    the bit above it (the contract has no side band on the weight path). The shift is 0, da,
    db or da + db (0, D, 2D when both operands use the same format pair), so the accumulator
    counts units of ``2**-(FBx_fine + FBy_fine)``; it wraps at ``acc_bits``.

    Pipeline: the product and the shift setting are registered, then shifted and accumulated.
    Latency 2, initiation interval 1.

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

    @property
    def latency(self):
        return int_acc_latency()

    def elaborate(self, platform):
        m = Module()
        wa, wb = self._a_bits, self._b_bits
        prod = Signal(signed(wa + wb), reset_less=True)
        sel = Signal(2, reset_less=True)
        valid_p, first_p, last_p = Signal(), Signal(), Signal()
        acc = Signal(signed(self._acc_bits), reset_less=True)
        m.d.sync += [
            prod.eq(self.a.as_signed() * self.b[:wb].as_signed()),
            sel.eq(self.sw | (self.b[wb] << 1)),
            valid_p.eq(self.valid),
            first_p.eq(self.valid & self.first),
            last_p.eq(self.valid & self.last),
            self.result_valid.eq(last_p),
        ]
        # The shifter: three settings besides 0 (rarely exercised: only scale-wide operands).
        shifted = Signal(signed(wa + wb + self._da + self._db))
        with m.Switch(sel):
            with m.Case(0):
                m.d.comb += shifted.eq(prod)
            with m.Case(1):
                m.d.comb += shifted.eq(prod << self._da)
            with m.Case(2):
                m.d.comb += shifted.eq(prod << self._db)
            with m.Case(3):
                m.d.comb += shifted.eq(prod << (self._da + self._db))
        with m.If(valid_p):
            m.d.sync += acc.eq(Mux(first_p, 0, acc) + shifted)
        m.d.comb += self.result.eq(acc)
        return m
