"""Shared pieces of the engines' RUN argument checks."""

from amaranth import Signal


__all__ = ["SerialProducts", "PRODUCT_STEPS"]

#: Cycles of the shift-add multiplications of 16-bit RUN fields.
PRODUCT_STEPS = 16


class SerialProducts:
    """Products of 16-bit RUN fields by shift-and-add, one bit per cycle, for bound checks.

    ``start(m, pairs)`` (in the cycle that latches the arguments) loads each ``(x, y)`` pair;
    ``step(m)`` (once per cycle for `PRODUCT_STEPS` cycles) advances all of them; then
    ``products[i]`` holds ``x_i * y_i`` (32 bits). No multiplier is built: the check costs a
    few adders, not DSPs.
    """

    def __init__(self, n, name="p"):
        self._x = [Signal(32, name=f"{name}{i}_x") for i in range(n)]
        self._y = [Signal(16, name=f"{name}{i}_y") for i in range(n)]
        self.products = [Signal(32, name=f"{name}{i}") for i in range(n)]

    def start(self, m, pairs):
        for (x, y), sx, sy, p in zip(pairs, self._x, self._y, self.products):
            m.d.sync += [sx.eq(x), sy.eq(y), p.eq(0)]

    def step(self, m):
        for x, y, p in zip(self._x, self._y, self.products):
            m.d.sync += [x.eq(x << 1), y.eq(y >> 1)]
            with m.If(y[0]):
                m.d.sync += p.eq(p + x)
