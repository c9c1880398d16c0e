"""The generic RUN front end: start, argument hand-off, busy, cycle counter, completion."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.engine.base import EngineControlSignature, RunSignature


__all__ = ["RunControl"]


class RunControl(wiring.Component):
    """Starts the engine, reports its argument check, and keeps ``busy`` and ``cycles``.

    ``busy`` rises in the cycle after ``run.start`` and falls in the cycle after the engine
    reports a failed check, or after the engine is done *and* the output stage is idle (the
    last result is stored). ``cycles`` counts the busy cycles; it is what STATUS reports and
    what the engine twin's cycle model predicts.

    With ``counters``, it also counts every cycle since reset into exactly one cause of
    `protocol.COUNTER_NAMES` (u32 each, wrapping): ``idle`` while not busy (``data`` instead
    while the decoder receives a WRITE: ``run.writing``), ``check`` from the
    cycle busy rises to the one the engine reports its check in, then ``compute`` when the
    engine says it feeds its datapath (``engine.active``) and ``other`` otherwise.

    Parameters
    ----------
    arg_bits : int
        Width of the engine's packed argument layout.
    counters : bool
        Build the cycle counters (``run.counters``).
    prev_cycles : bool
        Keep ``run.prev_cycles`` (else it stays 0: a core without a store of two banks, whose
        host has no use for it, saves the register).

    Members
    -------
    run : In(RunSignature(arg_bits))
        From the command decoder.
    engine : Out(EngineControlSignature(arg_bits))
        To the engine.
    out_idle : In(1)
        The output stage holds no word in flight.
    banks : Out(8)
        The running RUN's banks (``run.banks`` latched at its start).
    chain : Out(8)
        The running RUN's chain target (``run.chain`` latched at its start; 0: none).

    A RUN may start in the cycle the running one completes (``run.free``): ``busy`` then
    stays high, ``cycles`` restarts and the engine sees ``start`` exactly as from idle, so
    each RUN's cycles are those it takes alone. ``prev_cycles`` keeps the cycles of the RUN
    before the current one.
    """

    def __init__(self, *, arg_bits, counters=False, prev_cycles=True):
        self._arg_bits, self._counters = arg_bits, bool(counters)
        self._prev = bool(prev_cycles)
        super().__init__({
            "run": In(RunSignature(arg_bits, counters=counters)),
            "engine": Out(EngineControlSignature(arg_bits)),
            "out_idle": In(1),
            "banks": Out(8),
            "chain": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        engine_done = Signal()   # sticky: the engine emitted its last result word
        m.d.comb += [self.engine.start.eq(self.run.start), self.engine.args.eq(self.run.args),
                     self.engine.chain.eq(self.run.chain),
                     self.run.check_done.eq(self.engine.check_done),
                     self.run.check_err.eq(self.engine.check_err)]
        free = self.run.busy & engine_done & self.out_idle
        m.d.comb += self.run.free.eq(free)
        cycles_next = Signal(32)
        m.d.comb += cycles_next.eq(self.run.cycles + 1)
        with m.If(self.run.busy):
            m.d.sync += self.run.cycles.eq(cycles_next)
        with m.If(self.engine.check_done & (self.engine.check_err != 0)):
            m.d.sync += self.run.busy.eq(0)
        with m.If(self.engine.done):
            m.d.sync += engine_done.eq(1)
        with m.If(free):
            m.d.sync += [self.run.busy.eq(0), engine_done.eq(0)]
        # Last, so a RUN that starts in the cycle another completes keeps busy high.
        with m.If(self.run.start):
            m.d.sync += [self.run.busy.eq(1), self.run.cycles.eq(0), engine_done.eq(0),
                         self.banks.eq(self.run.banks), self.chain.eq(self.run.chain)]
            if self._prev:
                m.d.sync += self.run.prev_cycles.eq(Mux(self.run.busy, cycles_next,
                                                        self.run.cycles))
        if self._counters:
            from tessera.hdl.ctrl.protocol import COUNTER_NAMES
            checked = Signal()       # the engine reported this RUN's check
            with m.If(self.run.start):
                m.d.sync += checked.eq(0)
            with m.If(self.engine.check_done):
                m.d.sync += checked.eq(1)
            busy = self.run.busy
            writing = self.run.writing
            cause = {"idle": ~busy & ~writing, "data": ~busy & writing,
                     "check": busy & ~checked,
                     "compute": busy & checked & self.engine.active,
                     "other": busy & checked & ~self.engine.active}
            counts = []
            for name in COUNTER_NAMES:
                c = Signal(32, name=f"count_{name}")
                with m.If(cause[name]):
                    m.d.sync += c.eq(c + 1)
                counts.append(c)
            m.d.comb += self.run.counters.eq(Cat(*counts))
        return m

