"""Scratchpad banks on `amaranth.lib.memory.Memory` (synchronous read, so they map to BRAM)."""

from amaranth import Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.engine.base import StorePortSignature


__all__ = ["Scratchpad", "StoreArbiter"]


class Scratchpad(wiring.Component):
    """A simple dual-port scratchpad: one write port, one synchronous read port.

    Read latency 1: ``r_data`` holds ``mem[r_addr]`` in the cycle after ``r_en`` (transparent:
    a write to the same address in the same cycle is seen). Both ports accept one access per
    cycle. With a synchronous read port yosys maps the memory to block RAM (EBR on iCE40,
    DP16KD on ECP5), never to LUTs.

    Parameters
    ----------
    width : int
        Word width in bits, 1..4096.
    depth : int
        Number of words, 2..65536.

    Members
    -------
    w_addr : In(range(depth))
    w_data : In(width)
    w_en : In(1)
    r_addr : In(range(depth))
    r_en : In(1)
    r_data : Out(width)
    """

    def __init__(self, *, width, depth):
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= 4096:
            raise ValueError(f"width must be an integer 1..4096, not {width!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or not 2 <= depth <= 65536:
            raise ValueError(f"depth must be an integer 2..65536, not {depth!r}")
        self._width, self._depth = width, depth
        super().__init__(StorePortSignature(depth=depth, width=width).flip())

    @property
    def width(self):
        return self._width

    @property
    def depth(self):
        return self._depth

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=unsigned(self._width), depth=self._depth,
                                               init=[])
        wp = mem.write_port()
        rp = mem.read_port(transparent_for=(wp,))
        m.d.comb += [
            wp.addr.eq(self.w_addr), wp.data.eq(self.w_data), wp.en.eq(self.w_en),
            rp.addr.eq(self.r_addr), rp.en.eq(self.r_en), self.r_data.eq(rp.data),
        ]
        return m


class StoreArbiter(wiring.Component):
    """Gives a store's port to the host (decoder) or, while a RUN executes, to the core.

    Reads go to the core while ``busy``, to the host otherwise; both see the read data.
    Writes: for a result store (``core_writes``) they follow the reads; an operand store is
    written only by the host, at any time (so the next operands load during a RUN).

    Parameters
    ----------
    depth, width : int
    core_writes : bool

    Members
    -------
    host : In(StorePortSignature(depth, width))
    core : In(StorePortSignature(depth, width, write=core_writes))
    mem : Out(StorePortSignature(depth, width))
    busy : In(1)
    """

    def __init__(self, *, depth, width, core_writes):
        self._core_writes = bool(core_writes)
        super().__init__({
            "host": In(StorePortSignature(depth=depth, width=width)),
            "core": In(StorePortSignature(depth=depth, width=width, write=core_writes)),
            "mem": Out(StorePortSignature(depth=depth, width=width)),
            "busy": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        h, c, mem = self.host, self.core, self.mem
        m.d.comb += [h.r_data.eq(mem.r_data), c.r_data.eq(mem.r_data)]
        with m.If(self.busy):
            m.d.comb += [mem.r_addr.eq(c.r_addr), mem.r_en.eq(c.r_en)]
        with m.Else():
            m.d.comb += [mem.r_addr.eq(h.r_addr), mem.r_en.eq(h.r_en)]
        if self._core_writes:
            with m.If(self.busy):
                m.d.comb += [mem.w_addr.eq(c.w_addr), mem.w_data.eq(c.w_data),
                             mem.w_en.eq(c.w_en)]
            with m.Else():
                m.d.comb += [mem.w_addr.eq(h.w_addr), mem.w_data.eq(h.w_data),
                             mem.w_en.eq(h.w_en)]
        else:
            m.d.comb += [mem.w_addr.eq(h.w_addr), mem.w_data.eq(h.w_data), mem.w_en.eq(h.w_en)]
        return m
