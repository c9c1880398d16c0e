"""Wrapping two's complement adder: the integer kinds' combiner for accumulation across RUNs."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["WrapAdd"]


class WrapAdd(wiring.Component):
    """``result = (a + b) mod 2**width``, combinational (latency 0).

    Parameters
    ----------
    width : int
        Lane width in bits, 1..128.

    Members
    -------
    a, b : In(width)
    result : Out(width)
    """

    def __init__(self, *, width):
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= 128:
            raise ValueError(f"width must be an integer 1..128, not {width!r}")
        self._width = width
        super().__init__({"a": In(width), "b": In(width), "result": Out(width)})

    @property
    def latency(self):
        return 0

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.result.eq((self.a + self.b)[:self._width])
        return m
