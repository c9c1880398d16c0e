"""Signatures of the engine seam: RUN control, store ports and the result stream.

``CommandDecoder --RunSignature--> RunControl --EngineControlSignature--> engine``; the engine
reads its operand stores through `StorePortSignature` ports and emits result words on a
`ResultSignature` stream into the `OutputStage`, which owns the result store's port.
"""

from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["RunSignature", "EngineControlSignature", "StorePortSignature", "ResultSignature",
           "TILE_BITS"]


class RunSignature(wiring.Signature):
    """Decoder (initiator) to the RUN front end.

    Members
    -------
    start : Out(1)
        One-cycle pulse: ``args`` holds a RUN's engine arguments and ``banks`` its banks. It
        may come while ``busy`` only in a cycle with ``free`` (the RUN then starts straight
        after the one that completes).
    args : Out(arg_bits)
    banks : Out(8)
        Bit i: the bank of store i the RUN uses.
    chain : Out(8)
        0, or the id + 1 of the store the RUN's epilogue outputs go to (a chain target).
    busy : In(1)
    free : In(1)
        The running RUN completes this cycle (``busy`` falls after it unless a RUN starts).
    check_done : In(1)
        Pulses when the arguments are checked; ``check_err`` is then 0 or an `Err` code.
    check_err : In(8)
    cycles : In(32)
        Busy cycles of the current or last RUN.
    prev_cycles : In(32)
        Busy cycles of the RUN before it.
    writing : Out(1), only with ``counters``
        The decoder is receiving a WRITE (the ``data`` cause while no RUN executes).
    counters : In(32 * len(COUNTER_NAMES)), only with ``counters``
        Cycles since reset by cause, u32 each in `protocol.COUNTER_NAMES` order (the COUNTERS
        response after its status byte).
    """

    def __init__(self, arg_bits, counters=False):
        from tessera.hdl.ctrl.protocol import COUNTER_NAMES
        self._arg_bits, self._counters = arg_bits, bool(counters)
        members = {
            "start": Out(1), "args": Out(max(1, arg_bits)), "banks": Out(8), "chain": Out(8),
            "busy": In(1), "free": In(1), "check_done": In(1), "check_err": In(8),
            "cycles": In(32), "prev_cycles": In(32),
        }
        if counters:
            members["writing"] = Out(1)
            members["counters"] = In(32 * len(COUNTER_NAMES))
        super().__init__(members)

    @property
    def arg_bits(self):
        return self._arg_bits

    @property
    def counters(self):
        return self._counters

    def __eq__(self, other):
        return (isinstance(other, RunSignature) and self.arg_bits == other.arg_bits
                and self.counters == other.counters)

    def __repr__(self):
        return f"RunSignature({self.arg_bits}, counters={self.counters})"


class EngineControlSignature(wiring.Signature):
    """RUN front end (initiator) to an engine.

    Members
    -------
    start : Out(1)
    args : Out(arg_bits)
        Valid with ``start`` only; the engine latches what it needs.
    check_done : In(1)
        The engine pulses it once per ``start``, with ``check_err`` 0 (it runs) or an error
        code (it touches nothing).
    check_err : In(8)
    done : In(1)
        Pulses once when the engine has emitted its last result word.
    active : In(1)
        The engine feeds its datapath this cycle (the ``compute`` cause of COUNTERS, as its
        twin's ``compute_cycles`` counts it).
    chain : Out(8)
        Valid with ``start``: the RUN's chain target (store id + 1; 0: none), for engines that
        check where chained outputs go.
    """

    def __init__(self, arg_bits):
        self._arg_bits = arg_bits
        super().__init__({
            "start": Out(1), "args": Out(max(1, arg_bits)), "chain": Out(8),
            "check_done": In(1), "check_err": In(8), "done": In(1), "active": In(1),
        })

    @property
    def arg_bits(self):
        return self._arg_bits

    def __eq__(self, other):
        return isinstance(other, EngineControlSignature) and self.arg_bits == other.arg_bits

    def __repr__(self):
        return f"EngineControlSignature({self.arg_bits})"


class StorePortSignature(wiring.Signature):
    """A port onto one scratchpad store, from the side that drives addresses.

    Members
    -------
    r_addr : Out(range(depth))
    r_en : Out(1)
    r_data : In(width)
        ``mem[r_addr]`` in the cycle after ``r_en`` (synchronous read).
    w_addr : Out(range(depth)), only with ``write``
    w_data : Out(width), only with ``write``
    w_en : Out(1), only with ``write``
    """

    def __init__(self, *, depth, width, write=True):
        self._depth, self._width, self._write = depth, width, bool(write)
        members = {"r_addr": Out(range(depth)), "r_en": Out(1), "r_data": In(width)}
        if write:
            members.update({"w_addr": Out(range(depth)), "w_data": Out(width), "w_en": Out(1)})
        super().__init__(members)

    depth = property(lambda self: self._depth)
    width = property(lambda self: self._width)
    write = property(lambda self: self._write)

    def __eq__(self, other):
        return (isinstance(other, StorePortSignature) and self.depth == other.depth
                and self.width == other.width and self.write == other.write)

    def __repr__(self):
        return f"StorePortSignature(depth={self.depth}, width={self.width}, write={self.write})"


#: Bits of `ResultSignature`'s ``tile`` member.
TILE_BITS = 16


def ResultSignature(*, depth, width):
    """Engine result words: ``payload.addr`` in the result store, ``payload.data`` (a whole
    word), ``payload.accumulate`` (combine with the stored word instead of replacing it),
    ``payload.epilogue`` (apply the PE kind's epilogue and write the epilogue result store
    instead) and ``payload.tile`` (the RUN's column tile the word belongs to: the output stage
    reads epilogue parameter word ``p_base + tile``). Engines that never set ``epilogue`` may
    leave ``epilogue`` and ``tile`` at 0. Always ready: the output stage takes one word per
    cycle."""
    return stream.Signature(data.StructLayout({
        "addr": range(depth), "data": width, "accumulate": 1, "epilogue": 1,
        "tile": TILE_BITS}), always_ready=True)
