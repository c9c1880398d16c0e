"""FPEC compensated multiply-accumulate processing element (Compensated-DNN)."""

from amaranth import Mux, Signal, signed

from tessera.hdl.arith.intacc import IntAccPE
from tessera.hdl.array.pe import PESignature


__all__ = ["FpecMacPE"]


def _check(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer {lo}..{hi}, not {value!r}")


class FpecMacPE(IntAccPE):
    """Compensated MAC: ``P += qx*qy`` and ``C += ±mag(ex)*qy ± mag(ey)*qx``; result
    ``(P << s) + C``.

    Each operand is an FPEC element code (``tessera.sim.fpec``): the ``w``-bit value code, EZB
    (stored inverted), EDB and ``emb_bits`` EMB bits. One multiplier forms ``qx*qy``; the
    compensation terms are the *other* operand, shifted and added (``mag(e) = 2**m + e + 1`` is
    built from shifted copies gated by the EMB bits, no second multiplier) and negated by EDB. A
    term is forced to zero where its EZB is set (the sparse compensation: in an ASIC the term
    register's enable is EZB-gated). P and C are kept in one accumulator (``(P << s) + C`` is
    linear in the pairs, so ``acc += (qx*qy << s) + comp`` is the same number), wrapping at
    ``acc_bits``: the result is ``(P << s) + C`` modulo ``2**acc_bits``, with ``s = 1`` for
    ``emb_bits = 0`` and ``emb_bits + 2`` otherwise: the compensated dot product in units of
    ``2**-(FBx+FBy+s)``.

    Pipeline as `IntMacPE` (the `IntAccPE` shell): product and compensation registered, then
    merged and accumulated. Latency 2, initiation interval 1.

    Parameters
    ----------
    a_bits, b_bits : int
        Computation bits ``w`` of the activation / weight value codes, 2..16.
    emb_bits : int
        Error-magnitude bits per operand, 0..2.
    acc_bits : int
        Accumulator width, ``a_bits + b_bits + s + 1``..64.

    Members
    -------
    a : In(a_bits + 2 + emb_bits), b : In(b_bits + 2 + emb_bits)
        Element codes.
    valid, first, last : In(1)
    result : Out(signed(acc_bits))
    result_valid : Out(1)
    """

    def __init__(self, *, a_bits=4, b_bits=4, emb_bits=0, acc_bits=32):
        _check("a_bits", a_bits, 2, 16)
        _check("b_bits", b_bits, 2, 16)
        _check("emb_bits", emb_bits, 0, 2)
        s = 1 if emb_bits == 0 else emb_bits + 2
        _check("acc_bits", acc_bits, a_bits + b_bits + s + 1, 64)
        self._a_bits, self._b_bits, self._emb, self._acc_bits, self._s = \
            a_bits, b_bits, emb_bits, acc_bits, s
        super().__init__(PESignature(a_shape=a_bits + 2 + emb_bits, b_shape=b_bits + 2 + emb_bits,
                                     acc_shape=signed(acc_bits)))

    @property
    def a_bits(self):
        return self._a_bits

    @property
    def b_bits(self):
        return self._b_bits

    @property
    def emb_bits(self):
        return self._emb

    @property
    def acc_bits(self):
        return self._acc_bits

    @property
    def s(self):
        return self._s

    def _estimate(self, other, code, w):
        """``±mag(e) * other`` (or 0 with EZB) from shifted copies of ``other``."""
        m = self._emb
        ezb, edb = ~code[w], code[w + 1]        # bit w holds EZB inverted (code 0 = 0)
        if m == 0:
            mag = other
        else:
            e = code[w + 2:w + 2 + m]
            mag = (other << m) + other
            for j in range(m):
                mag = mag + Mux(e[j], other << j, 0)
        return Mux(ezb, 0, Mux(edb, -mag, mag))

    def products(self, m):
        wa, wb = self._a_bits, self._b_bits
        qx = self.a[:wa].as_signed()
        qy = self.b[:wb].as_signed()
        comp_w = max(wa, wb) + self._emb + 3
        return {"prod": (qx * qy, signed(wa + wb)),
                "comp": (self._estimate(qy, self.a, wa) + self._estimate(qx, self.b, wb),
                         signed(comp_w))}

    def term(self, m, regs):
        # P and C share one accumulator: (P << s) + C = sum((qx*qy << s) + comp), so one
        # narrow adder merges the terms before the single wide accumulator adder (a separate
        # C accumulator and a final (P << s) + C adder would cost two more wide adders).
        term = Signal(signed(self._a_bits + self._b_bits + self._s + 2))
        m.d.comb += term.eq((regs["prod"] << self._s) + regs["comp"])
        return term
