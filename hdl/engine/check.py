"""Shared pieces of the engines' RUN argument checks."""

from amaranth import Signal

from tessera.hdl.engine.params import PRODUCT_STEPS


__all__ = ["SerialProducts", "PRODUCT_STEPS", "argument_check", "Rooms", "drive_lanes"]


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


class Rooms:
    """The room left above each store's base, latched with a RUN's arguments, so the bound
    check after the products is one compare per store, not an add and then a compare.

    ``bases``: ``[(name, base field Value, depth)]``. `latch` are the statements to run with
    the argument latch; ``exceeds(name, words)`` is true when ``words`` from the base do not
    fit (the base itself beyond the depth included).
    """

    def __init__(self, bases):
        self._r = {}
        self.latch = []
        for name, base, depth in bases:
            room = Signal(range(depth + 1), name=f"{name}_room")
            over = Signal(name=f"{name}_over")
            self._r[name] = room, over
            self.latch += [over.eq(base > depth), room.eq(depth - base)]

    def exceeds(self, name, words):
        room, over = self._r[name]
        return over | (words > room)


def drive_lanes(m, array, word, *, lanes, a_bits, side):
    """Drive ``array.a[r]`` and each side-band member ``array.side_<name>[r]`` from the A word
    ``word``: ``lanes`` lanes of ``a_bits`` element bits followed by the side-band bits
    (``side``: ``[(name, bits)]``), lane 0 lowest."""
    lw = a_bits + sum(w for _, w in side)
    for r in range(lanes):
        lane = word[r * lw:(r + 1) * lw]
        m.d.comb += array.a[r].eq(lane[:a_bits])
        pos = a_bits
        for name, w in side:
            m.d.comb += getattr(array, f"side_{name}")[r].eq(lane[pos:pos + w])
            pos += w

