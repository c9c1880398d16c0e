"""Shared pieces of the engines' RUN argument checks."""

from amaranth import Signal

from tessera.hdl.engine.params import PRODUCT_STEPS


__all__ = ["SerialProducts", "PRODUCT_STEPS", "argument_check"]


class SerialProducts:
    """Products of 16-bit RUN fields by shift-and-add, one bit per cycle, for bound checks.

    ``start(m, pairs)`` (in the cycle that latches the arguments) loads each ``(x, y)`` pair;
    ``step(m)`` (once per cycle for `PRODUCT_STEPS` cycles) advances all of them; then
    ``products[i]`` holds ``x_i * y_i`` (``bits`` wide: 32, or one width per pair for an
    ``x`` wider than 16 bits). No multiplier is built: the check costs a few adders, not DSPs.
    """

    def __init__(self, n, name="p", bits=32):
        widths = [bits] * n if isinstance(bits, int) else list(bits)
        if len(widths) != n or any(not 32 <= w <= 64 for w in widths):
            raise ValueError(f"bits must be 32..64, or {n} such widths, not {bits!r}")
        self._x = [Signal(w, name=f"{name}{i}_x") for i, w in enumerate(widths)]
        self._y = [Signal(16, name=f"{name}{i}_y") for i in range(n)]
        self.products = [Signal(w, name=f"{name}{i}") for i, w in enumerate(widths)]

    def start(self, m, pairs):
        for (x, y), sx, sy, p in zip(pairs, self._x, self._y, self.products):
            m.d.sync += [sx.eq(x), sy.eq(y), p.eq(0)]

    def step(self, m):
        for x, y, p in zip(self._x, self._y, self.products):
            m.d.sync += [x.eq(x << 1), y.eq(y >> 1)]
            with m.If(y[0]):
                m.d.sync += p.eq(p + x)


def argument_check(m, ctl, *, latch, products, pairs, bad_arg, bad_tile, start, run_state):
    """The IDLE, CHECK and VERIFY states of an engine's FSM (call inside ``with m.FSM()``).

    IDLE: on ``ctl.start`` do the ``latch`` statements and load ``products`` with ``pairs``.
    CHECK: `PRODUCT_STEPS` cycles of shift-and-add. VERIFY: pulse ``ctl.check_done`` with
    `Err.ARG` if ``bad_arg``, else `Err.TILE` if ``bad_tile`` (both back to IDLE, touching
    nothing), else 0, doing the ``start`` statements and going to ``run_state``. A rejected
    RUN therefore costs ``PRODUCT_STEPS + 1`` busy cycles, an accepted one starts its first
    operand read ``PRODUCT_STEPS + 2`` cycles after ``ctl.start``.
    """
    from tessera.hdl.ctrl.protocol import Err
    step = Signal(range(PRODUCT_STEPS), name="check_step")
    with m.State("IDLE"):
        with m.If(ctl.start):
            m.d.sync += [*latch, step.eq(0)]
            products.start(m, pairs)
            m.next = "CHECK"
    with m.State("CHECK"):
        products.step(m)
        m.d.sync += step.eq(step + 1)
        with m.If(step == PRODUCT_STEPS - 1):
            m.next = "VERIFY"
    with m.State("VERIFY"):
        m.d.comb += ctl.check_done.eq(1)
        with m.If(bad_arg):
            m.d.comb += ctl.check_err.eq(Err.ARG)
            m.next = "IDLE"
        with m.Elif(bad_tile):
            m.d.comb += ctl.check_err.eq(Err.TILE)
            m.next = "IDLE"
        with m.Else():
            m.d.sync += start
            m.next = run_state
