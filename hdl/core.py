"""The tessera core: command decoder, RUN front end, an engine, an output stage, scratchpads."""

from amaranth import Module
from amaranth.lib import wiring

from tessera.hdl.ctrl.decoder import CommandDecoder
from tessera.hdl.ctrl.output_stage import OutputStage
from tessera.hdl.ctrl.runctl import RunControl
from tessera.hdl.io.hostlink import HostLinkSignature
from tessera.hdl.mem.scratchpad import BankedStore


__all__ = ["HostLinkSignature", "TesseraCore"]


class TesseraCore(wiring.Component):
    """A complete accelerator core behind a byte-stream host interface.

    ``host bytes -> CommandDecoder -> RunControl -> engine -> OutputStage``, with one
    `BankedStore` (one or two scratchpad banks) per store of the geometry. While a RUN
    executes, the engine reads the bank of each operand store the RUN names and the output
    stage owns that bank of every result store (and reads the epilogue parameter store);
    otherwise the decoder has them all (operand and parameter stores stay host-writable
    during a RUN, and the host reads a banked result store's other bank). A RUN sent while
    another executes is held and starts in the cycle that one completes. The command set is
    docs/commands.md.

    Parameters
    ----------
    geometry : Geometry
        Stores in id order (`tessera.hdl.ctrl.memmap`); the engine's ports are named
        ``<store>_port`` for its operand stores, and the first result store takes its results.
        With an epilogue (the engine's ``epilogue`` attribute, not None), the second result
        store takes the epilogue's outputs and the one host-written store the engine has no
        port for is the epilogue's parameter store; the engine's ``p_channels`` attribute (if
        any) gives the output channels per parameter word (`OutputStage`).
    engine : wiring.Component
        An engine (`tessera.hdl.engine`): members ``ctl``, ``<store>_port`` per operand store
        and ``result``.
    engine_args : ArgLayout
        The engine's RUN argument layout.
    engine_code : int
        The engine id RUN must name.
    combiner : object or None
        The PE kind's combiner for accumulation across RUNs (`OutputStage`).
    info : bytes
        The INFO payload.
    counters : bool
        Build the COUNTERS cycle counters (`RunControl`); INFO must say so (CAP_COUNTERS).
    read_register : bool
        Register each store's read data on the host's READ path (`CommandDecoder`).

    Members
    -------
    i, o, busy, error : as in `HostLinkSignature`
    """

    def __init__(self, *, geometry, engine, engine_args, engine_code, combiner, info,
                 counters=False, read_register=False):
        self._read_register = bool(read_register)
        self._geometry = geometry
        self._engine = engine
        self._engine_args = engine_args
        self._engine_code = engine_code
        self._combiner = combiner
        self._info = bytes(info)
        self._counters = bool(counters)
        from tessera.hdl.ctrl.protocol import CoreInfo
        if CoreInfo.unpack(self._info).has_counters != self._counters:
            raise ValueError(f"INFO's CAP_COUNTERS says {not self._counters}, counters is "
                             f"{self._counters}: INFO must describe the core")
        self._epilogue = getattr(engine, "epilogue", None)
        want = 1 if self._epilogue is None else 2
        results = geometry.result_stores
        if len(results) != want:
            raise ValueError(f"geometry must have exactly {want} result store(s) (the "
                             f"accumulator store{' and the epilogue store' if want == 2 else ''}"
                             f"), not {[s.name for s in results]}")
        unported = [s.name for s in geometry.operand_stores
                    if f"{s.name}_port" not in engine.signature.members]
        if len(unported) > (want - 1):
            raise ValueError(f"engine has no port for operand store {unported[-1]!r}")
        if want == 2 and len(unported) != 1:
            raise ValueError("an epilogue needs one parameter store the engine does not read")
        self._param_store = unported[0] if unported else None
        super().__init__(HostLinkSignature())

    @classmethod
    def from_config(cls, cfg):
        """A fresh core for a validated config (duck-typed: ``geometry``, ``engine``
        (``make_hdl()``, ``args()``, ``code``), ``pe.combiner()``, ``core_info()`` and
        ``core.counters``); the one place that maps a config onto the constructor, for the
        generator, the Verilator harness and the board top alike."""
        engine = cfg.engine
        return cls(geometry=cfg.geometry, engine=engine.make_hdl(), engine_args=engine.args(),
                   engine_code=engine.code, combiner=cfg.pe.combiner(),
                   info=cfg.core_info().pack(), counters=cfg.core.counters,
                   read_register=cfg.memory.read_register)

    @property
    def geometry(self):
        return self._geometry

    @property
    def info(self):
        return self._info

    def elaborate(self, platform):
        m = Module()
        g = self._geometry
        res = g.result_stores[0]
        m.submodules.dec = dec = CommandDecoder(geometry=g, info=self._info,
                                                engine_args=self._engine_args,
                                                engine_code=self._engine_code,
                                                counters=self._counters,
                                                read_register=self._read_register)
        m.submodules.runctl = runctl = RunControl(
            arg_bits=8 * self._engine_args.nbytes, counters=self._counters,
            prev_cycles=any(s.banks > 1 for s in g.stores))
        m.submodules.engine = engine = self._engine
        epi = self._epilogue
        # Not "out": epilogue lanes give the stage a port named out (Verilator VARHIDDEN).
        m.submodules.output_stage = out = OutputStage(
            depth=res.depth, lanes=res.lanes, lane_bits=res.lane_bits, combiner=self._combiner,
            epilogue=epi, p_depth=g.store(self._param_store).depth if epi is not None else 0,
            p_channels=getattr(self._engine, "p_channels", None) if epi is not None else None,
            args=self._engine_args)
        core_ports = {res.name: out.port}
        if epi is not None:
            core_ports[g.result_stores[1].name] = out.epi_port
            core_ports[self._param_store] = out.param_port
            m.d.comb += [out.run_start.eq(runctl.engine.start),
                         out.run_args.eq(runctl.engine.args)]

        wiring.connect(m, wiring.flipped(self.i), dec.i)
        wiring.connect(m, dec.o, wiring.flipped(self.o))
        wiring.connect(m, dec.run, runctl.run)
        wiring.connect(m, runctl.engine, engine.ctl)
        wiring.connect(m, engine.result, out.i)
        m.d.comb += [self.busy.eq(runctl.run.busy), self.error.eq(dec.error)]

        # Chaining: a RUN naming a chain target sends the epilogue's words there instead,
        # through the engine's chain writer when it has one (which lays them out as the next
        # layer reads them; the RUN completes when the writer is idle too).
        targets = g.chain_targets if epi is not None else ()
        chaining = runctl.chain != 0
        writer = getattr(self._engine, "chain_writer", None) if targets else None
        if writer is not None:
            m.submodules.chain_writer = writer
            ep = out.epi_port
            m.d.comb += [writer.start.eq(runctl.engine.start),
                         writer.args.eq(runctl.engine.args),
                         writer.i_en.eq(ep.w_en & chaining), writer.i_data.eq(ep.w_data),
                         runctl.out_idle.eq(out.idle & writer.idle)]
            chain_w = (writer.o_addr, writer.o_data, writer.o_en)
        else:
            m.d.comb += runctl.out_idle.eq(out.idle)
            if targets:
                chain_w = (out.epi_port.w_addr, out.epi_port.w_data, out.epi_port.w_en)
        for s in g.stores:
            m.submodules[f"store_{s.name}"] = store = BankedStore(
                depth=s.depth, width=s.word_bits, banks=s.banks, core_writes=s.result,
                chain=s in targets)
            wiring.connect(m, getattr(dec, f"port_{s.name}"), store.host)
            port = core_ports.get(s.name) or getattr(engine, f"{s.name}_port")
            if targets and s.name == g.result_stores[1].name:
                sc = store.core
                m.d.comb += [sc.r_addr.eq(port.r_addr), sc.r_en.eq(port.r_en),
                             port.r_data.eq(sc.r_data), sc.w_addr.eq(port.w_addr),
                             sc.w_data.eq(port.w_data), sc.w_en.eq(port.w_en & ~chaining)]
            else:
                wiring.connect(m, port, store.core)
            if s in targets:
                m.d.comb += [store.chain_addr.eq(chain_w[0]), store.chain_data.eq(chain_w[1]),
                             store.chain_en.eq(chain_w[2]),
                             store.chain_active.eq(runctl.chain == s.id + 1)]
            m.d.comb += [store.busy.eq(runctl.run.busy), store.bank.eq(runctl.banks[s.id])]
        return m
