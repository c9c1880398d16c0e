"""Scratchpad banks on `amaranth.lib.memory.Memory` (synchronous read, so they map to BRAM)."""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.engine.base import StorePortSignature


__all__ = ["Scratchpad", "StoreArbiter", "BankedStore"]


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


class BankedStore(wiring.Component):
    """One store of the memory map: ``banks`` scratchpads of ``depth`` words and the routing
    of the host's and the core's ports onto them.

    The host addresses ``banks x depth`` words (bank ``b`` from ``b x depth``); the core
    (engine or output stage) addresses ``depth`` words of bank ``bank``. While ``busy``, bank
    ``bank`` belongs to the core (its reads, and its writes for a result store) and every
    other bank to the host; otherwise the host has them all. Host writes to an operand or
    parameter store (``core_writes`` False) always go through (the decoder decides what to
    allow). With one bank and no chain port this is exactly `StoreArbiter` onto one
    `Scratchpad`.

    A chain target (``chain``) also takes the output stage's epilogue words of a chaining
    RUN (``chain_active``): into the bank the RUN does not read (two banks) or its only bank,
    in place of the host's writes there.

    Parameters
    ----------
    depth : int
        Words per bank.
    width : int
    banks : int
        1 or 2.
    core_writes : bool
        The core writes this store (a result store).
    chain : bool
        The store is a chain target (`Geometry.chain_targets`).

    Members
    -------
    host : In(StorePortSignature(banks * depth, width))
    core : In(StorePortSignature(depth, width, write=core_writes))
    busy : In(1)
    bank : In(1)
        The bank the running RUN uses (held for the whole RUN).
    chain_addr : In(range(depth)), chain_data : In(width), chain_en : In(1),
    chain_active : In(1), only with ``chain``
    """

    def __init__(self, *, depth, width, banks=1, core_writes, chain=False):
        if banks not in (1, 2):
            raise ValueError(f"banks must be 1 or 2, not {banks!r}")
        if chain and core_writes:
            raise ValueError("a result store cannot be a chain target")
        self._depth, self._width, self._banks = depth, width, banks
        self._core_writes, self._chain = bool(core_writes), bool(chain)
        members = {
            "host": In(StorePortSignature(depth=banks * depth, width=width)),
            "core": In(StorePortSignature(depth=depth, width=width, write=core_writes)),
            "busy": In(1),
            "bank": In(1),
        }
        if chain:
            members.update({"chain_addr": In(range(depth)), "chain_data": In(width),
                            "chain_en": In(1), "chain_active": In(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        h, c = self.host, self.core
        if self._banks == 1 and not self._chain:
            m.submodules.spad = spad = Scratchpad(width=self._width, depth=self._depth)
            m.submodules.arb = arb = StoreArbiter(depth=self._depth, width=self._width,
                                                  core_writes=self._core_writes)
            wiring.connect(m, wiring.flipped(h), arb.host)
            wiring.connect(m, wiring.flipped(c), arb.core)
            wiring.connect(m, arb.mem, spad)
            m.d.comb += arb.busy.eq(self.busy)
            return m
        D, nb = self._depth, self._banks
        if nb == 2:
            h_rbank, h_wbank = h.r_addr >= D, h.w_addr >= D
            h_rlocal = Mux(h_rbank, h.r_addr - D, h.r_addr)[:len(c.r_addr)]
            h_wlocal = Mux(h_wbank, h.w_addr - D, h.w_addr)[:len(c.r_addr)]
        else:
            h_rbank = h_wbank = 0
            h_rlocal, h_wlocal = h.r_addr, h.w_addr
        h_rsel = Signal()             # the bank the host's last read addressed
        if nb == 2:
            with m.If(h.r_en):
                m.d.sync += h_rsel.eq(h_rbank)
        # The bank a chaining RUN writes: the one it does not read.
        chain_bank = ~self.bank if nb == 2 else 0
        datas = []
        for b in range(nb):
            m.submodules[f"bank{b}"] = spad = Scratchpad(width=self._width, depth=D)
            core_has = self.busy & (self.bank == b)
            with m.If(core_has):
                m.d.comb += [spad.r_addr.eq(c.r_addr), spad.r_en.eq(c.r_en)]
            with m.Else():
                m.d.comb += [spad.r_addr.eq(h_rlocal), spad.r_en.eq(h.r_en & (h_rbank == b))]
            host_w = [spad.w_addr.eq(h_wlocal), spad.w_data.eq(h.w_data),
                      spad.w_en.eq(h.w_en & (h_wbank == b))]
            if self._core_writes:
                with m.If(core_has):
                    m.d.comb += [spad.w_addr.eq(c.w_addr), spad.w_data.eq(c.w_data),
                                 spad.w_en.eq(c.w_en)]
                with m.Else():
                    m.d.comb += host_w
            elif self._chain:
                with m.If(self.busy & self.chain_active & (chain_bank == b)):
                    m.d.comb += [spad.w_addr.eq(self.chain_addr), spad.w_data.eq(self.chain_data),
                                 spad.w_en.eq(self.chain_en)]
                with m.Else():
                    m.d.comb += host_w
            else:
                m.d.comb += host_w
            datas.append(spad.r_data)
        if nb == 2:
            m.d.comb += [h.r_data.eq(Mux(h_rsel, datas[1], datas[0])),
                         c.r_data.eq(Mux(self.bank, datas[1], datas[0]))]
        else:
            m.d.comb += [h.r_data.eq(datas[0]), c.r_data.eq(datas[0])]
        return m
