"""Output stage: stores engine result words, combining them with the stored ones on request."""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.engine.base import ResultSignature, StorePortSignature
from tessera.hdl.engine.params import STORED_READ_REGISTER, accumulate_latency


__all__ = ["OutputStage"]


def _delay(m, sig, n, name):
    cur = sig
    for i in range(n):
        nxt = Signal.like(sig, name=f"{name}_d{i + 1}")
        m.d.sync += nxt.eq(cur)
        cur = nxt
    return cur


class OutputStage(wiring.Component):
    """Writes each result word to its address; with ``accumulate``, combines it first.

    A word that arrives in cycle t is written in cycle t+1 when it replaces the stored word.
    With ``accumulate`` the stored word is read in cycle t and registered in cycle t+1 as it
    leaves the store, each lane is combined with the new one by a ``combiner`` (the PE kind's:
    a wrapping integer add, an FP adder, ...) of latency L, and the result is written in cycle
    t+2+L (`accumulate_latency`: L+1 cycles more than a replacing word). One word per cycle
    either way; the words of
    one RUN all have the same ``accumulate`` bit and distinct addresses, so writes never
    collide and a read never sees a word still in flight.

    Parameters
    ----------
    depth : int
        Depth of the result store.
    lanes, lane_bits : int
        Lanes per result word and bits per lane.
    combiner : object or None
        The PE kind's combiner: ``latency`` (L) and ``hdl()``, which returns a new one-lane
        combiner component (members ``a`` stored, ``b`` new, ``result``); None if the kind cannot
        accumulate (the bit is then ignored: the engine's argument check refuses such RUNs).
    epilogue : Epilogue or None
        The PE kind's epilogue (`tessera.generators.kinds.epilogue`; E = its ``latency``), or
        None. With one, a word with ``payload.epilogue`` set reads parameter word
        ``p_base + payload.tile`` in its arrival cycle, goes (after the combiner when
        accumulating) through one epilogue lane per result lane, and is written E cycles later
        to the epilogue result store (same address) instead of the accumulator store. The
        stage knows no parameter by name: each lane unit's channel inputs come from the
        parameter word by the epilogue's `channel_layout`, its run inputs from the RUN fields
        of the same names and its flag inputs from the RUN flags bits (`e.flag_first_bit` on).
    p_depth : int
        Depth of the parameter store (with ``epilogue``).
    p_channels : int or None
        Channels per parameter word (default ``lanes``): result lane ``i`` takes the
        parameters of channel ``i % p_channels`` of the word (1: every lane of a word belongs
        to one output channel, as in the tree engine's run-length encoding).
    args : ArgLayout or None
        The RUN argument layout (with ``epilogue``): ``p_base``, the epilogue's run fields and
        ``flags`` are latched from ``run_args`` when ``run_start`` pulses.

    Members
    -------
    i : In(ResultSignature(depth, lanes * lane_bits))
    port : Out(StorePortSignature(depth, lanes * lane_bits))
    idle : Out(1)
        No word is in flight (nothing arrives this cycle, nothing is waiting to be written).
    epi_port : Out(StorePortSignature(depth, lanes * out_bits)), only with ``epilogue``
    param_port : Out(StorePortSignature(p_depth, p_channels * lanes_per_channel * param lane
        bits, write=False)), only with ``epilogue``
    run_start : In(1), only with ``epilogue``
    run_args : In(args.nbytes * 8), only with ``epilogue``
    """

    def __init__(self, *, depth, lanes, lane_bits, combiner=None, epilogue=None, p_depth=0,
                 p_channels=None, args=None):
        self._depth, self._lanes, self._lane_bits = depth, lanes, lane_bits
        self._combiner = combiner
        self._lat = 0 if combiner is None else combiner.latency
        self._epi, self._args = epilogue, args
        width = lanes * lane_bits
        members = {
            "i": In(ResultSignature(depth=depth, width=width)),
            "port": Out(StorePortSignature(depth=depth, width=width)),
            "idle": Out(1),
        }
        if epilogue is not None:
            if epilogue.acc_bits != lane_bits:
                raise ValueError(f"epilogue acc_bits must be the lane width {lane_bits}, not "
                                 f"{epilogue.acc_bits}")
            need = ["p_base"] + [f.name for f in epilogue.run_fields] + (
                ["flags"] if epilogue.flag_fields else [])
            if args is None or not set(need) <= {f.name for f in args.fields}:
                raise ValueError(f"an epilogue needs RUN argument fields {', '.join(need)}")
            self._pch = lanes if p_channels is None else p_channels
            if self._pch < 1 or lanes % self._pch:
                raise ValueError(f"p_channels must divide lanes {lanes}, not {p_channels!r}")
            self._pw = self._pch * epilogue.channel_bits
            members.update({
                "epi_port": Out(StorePortSignature(depth=depth,
                                                   width=lanes * epilogue.out_bits)),
                "param_port": Out(StorePortSignature(depth=p_depth, width=self._pw,
                                                     write=False)),
                "run_start": In(1), "run_args": In(max(1, 8 * args.nbytes)),
            })
        super().__init__(members)

    @property
    def epilogue_latency(self):
        return 0 if self._epi is None else self._epi.latency

    @property
    def combiner_latency(self):
        return self._lat

    @property
    def accumulate_latency(self):
        """Extra cycles of an accumulating word over a replacing one (`accumulate_latency`)."""
        return accumulate_latency(self._combiner)

    def elaborate(self, platform):
        m = Module()
        L, w = self._lat, self._lane_bits
        p = self.i.payload
        # Cycle t: the word arrives (and the stored word is read for accumulation).
        m.d.comb += [self.port.r_addr.eq(p.addr), self.port.r_en.eq(self.i.valid & p.accumulate)]
        # Cycle t+1: replace, or feed the combiners.
        valid1 = Signal()
        addr1 = Signal.like(p.addr)
        acc1 = Signal()
        new1 = Signal.like(p.data, reset_less=True)
        m.d.sync += [valid1.eq(self.i.valid), addr1.eq(p.addr), acc1.eq(p.accumulate),
                     new1.eq(p.data)]
        pending = [valid1]
        # The final word: (valid, address, data) in its write cycle.
        if self._combiner is None:
            w_valid, w_addr, w_data = valid1, addr1, new1
            replace = None
        else:
            # Cycle t+2: the stored word, registered as it leaves the store (the block RAM's
            # clock-to-out does not share a cycle with the combiner), meets the new one.
            old2 = Signal.like(p.data, name="old2", reset_less=True)
            new2 = Signal.like(p.data, name="new2", reset_less=True)
            valid2 = Signal()
            addr2 = Signal.like(p.addr, name="addr2")
            m.d.sync += [old2.eq(self.port.r_data), new2.eq(new1), valid2.eq(valid1 & acc1),
                         addr2.eq(addr1)]
            lanes = []
            for i in range(self._lanes):
                m.submodules[f"comb{i}"] = c = self._combiner.hdl()
                m.d.comb += [c.a.eq(old2[i * w:(i + 1) * w]), c.b.eq(new2[i * w:(i + 1) * w])]
                lanes.append(c.result)
            # The combined word leaves the combiners L cycles after t+2.
            chain = [valid2]
            for j in range(L):
                nxt = Signal(name=f"acc_valid_d{j + 1}")
                m.d.sync += nxt.eq(chain[-1])
                chain.append(nxt)
            valid_acc = chain[-1]
            addr_acc = _delay(m, addr2, L, "acc_addr")
            pending = [valid1] + chain
            replace = valid1 & ~acc1
            w_valid = replace | valid_acc
            w_addr = Signal.like(addr1, name="w_addr")
            w_data = Signal.like(new1, name="w_data")
            m.d.comb += [w_addr.eq(Mux(replace, addr1, addr_acc)),
                         w_data.eq(Mux(replace, new1, Cat(*lanes)))]
        m.d.comb += [self.port.w_addr.eq(w_addr), self.port.w_data.eq(w_data)]
        if self._epi is None:
            m.d.comb += self.port.w_en.eq(w_valid)
        else:
            pending += self._elaborate_epilogue(m, replace, w_valid, w_addr, w_data)
        busy = self.i.valid
        for s in pending:
            busy = busy | s
        m.d.comb += self.idle.eq(~busy)
        return m

    def _elaborate_epilogue(self, m, replace, w_valid, w_addr, w_data):
        """The epilogue lanes after the final word; returns their in-flight valid bits."""
        e, L, p = self._epi, self._lat, self.i.payload
        w, cb = self._lane_bits, e.channel_bits

        def field(name):
            lo, hi = self._args.bit_slice(name)
            return self.run_args[lo:hi]
        p_base = Signal(16)
        latched = {}              # run and flag parameters, latched at run_start
        for f in e.run_fields:
            latched[f.name] = Signal(signed(f.bits) if f.signed else f.bits, name=f"run_{f.name}")
        for i, f in enumerate(e.flag_fields):
            latched[f.name] = Signal(name=f"flag_{f.name}")
        with m.If(self.run_start):
            m.d.sync += p_base.eq(field("p_base"))
            for f in e.run_fields:
                m.d.sync += latched[f.name].eq(field(f.name)[:f.bits])
            for i, f in enumerate(e.flag_fields):
                m.d.sync += latched[f.name].eq(field("flags")[e.flag_first_bit + i])
        # Cycle t: read the parameter word of the word's column tile.
        m.d.comb += [self.param_port.r_addr.eq(p_base + p.tile),
                     self.param_port.r_en.eq(self.i.valid & p.epilogue)]
        epi1 = Signal()
        m.d.sync += epi1.eq(p.epilogue)
        prm1 = self.param_port.r_data
        if replace is None:
            w_epi, w_prm = epi1, prm1
        else:
            # Accumulating words reach the write L+1 cycles later: hold their parameters.
            w_epi = Mux(replace, epi1, _delay(m, epi1, STORED_READ_REGISTER + L, "epi"))
            w_prm = Mux(replace, prm1, _delay(m, prm1, STORED_READ_REGISTER + L, "prm"))
        m.d.comb += self.port.w_en.eq(w_valid & ~w_epi)
        go = w_valid & w_epi
        outs = []
        for i in range(self._lanes):
            m.submodules[f"epi{i}"] = u = e.hdl()
            slab = w_prm[(i % self._pch) * cb:(i % self._pch + 1) * cb]
            m.d.comb += [u.valid.eq(go), u.acc.eq(w_data[i * w:(i + 1) * w])]
            for f, off in e.channel_layout():
                m.d.comb += getattr(u, f.name).eq(slab[off:off + f.bits])
            for name, sig in latched.items():
                m.d.comb += getattr(u, name).eq(sig)
            outs.append(u)
        chain = [go]
        for j in range(e.latency):
            nxt = Signal(name=f"epi_valid_d{j + 1}")
            m.d.sync += nxt.eq(chain[-1])
            chain.append(nxt)
        addr_e = _delay(m, w_addr, e.latency, "epi_addr")
        m.d.comb += [self.epi_port.w_addr.eq(addr_e), self.epi_port.w_en.eq(chain[-1]),
                     self.epi_port.w_data.eq(Cat(*(u.out for u in outs)))]
        return chain[1:]
