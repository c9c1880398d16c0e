"""Signed integer multiply-accumulate processing element."""

from amaranth import signed

from tessera.hdl.arith.intacc import IntAccPE
from tessera.hdl.array.pe import PESignature


__all__ = ["IntMacPE"]


class IntMacPE(IntAccPE):
    """Signed ``a_bits`` x ``b_bits`` MAC into a wrapping ``acc_bits`` accumulator.

    Pipeline (the `IntAccPE` shell, with ``a * b`` as its product): the product is registered
    (so it maps onto a DSP block with an output register), then added into the accumulator.
    Latency 2: a ``last`` pair presented in cycle t gives ``result_valid`` in cycle t+2, with
    ``result`` equal to the sum of the accumulation modulo 2**acc_bits as a signed number.
    Initiation interval 1; a new accumulation may start the cycle after the ``last`` pair (the
    accumulator is then overwritten, the array captures ``result`` in the ``result_valid``
    cycle).

    Parameters
    ----------
    a_bits, b_bits : int
        Operand widths, 2..32.
    acc_bits : int
        Accumulator width, at least ``a_bits + b_bits``, at most 64.

    Members
    -------
    a : In(signed(a_bits))
    b : In(signed(b_bits))
    valid, first, last : In(1)
    result : Out(signed(acc_bits))
    result_valid : Out(1)
    """

    def __init__(self, *, a_bits=8, b_bits=8, acc_bits=32):
        for name, value in (("a_bits", a_bits), ("b_bits", b_bits)):
            if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 32:
                raise ValueError(f"{name} must be an integer 2..32, not {value!r}")
        if (isinstance(acc_bits, bool) or not isinstance(acc_bits, int)
                or not a_bits + b_bits <= acc_bits <= 64):
            raise ValueError(f"acc_bits must be an integer {a_bits + b_bits}..64 "
                             f"(at least a_bits + b_bits), not {acc_bits!r}")
        self._a_bits, self._b_bits, self._acc_bits = a_bits, b_bits, acc_bits
        super().__init__(PESignature(a_shape=signed(a_bits), b_shape=signed(b_bits),
                                     acc_shape=signed(acc_bits)))

    @property
    def a_bits(self):
        return self._a_bits

    @property
    def b_bits(self):
        return self._b_bits

    @property
    def acc_bits(self):
        return self._acc_bits

    def products(self, m):
        return {"prod": self.a * self.b}
