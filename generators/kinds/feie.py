"""Engine ``feie``: the FEIE / ZASCA time-multiplexed convolution array with zero skipping
(`tessera.hdl.engine.feie`, twin `tessera.sim.engines.feie`, docs/feie.md)."""

from dataclasses import dataclass

from tessera.generators.kinds.base import ConfigError, Engine, EngineSection, check_int


__all__ = ["FeieEngine", "FeieSection"]


@dataclass(frozen=True)
class FeieSection(EngineSection):
    """``[array] kind = "feie"``.

    ``tiles`` PE groups (1..16), each on its own output channel, share the pixel broadcast;
    ``pes`` PEs per group (at least ceil(K/S) for a K-wide filter at stride S); ``kmax`` the
    widest filter row (1..7, the taps a W word holds per group); ``zero_skip`` the mapper's
    default mode (true: ZASCAS, zero pixels cost nothing; false: ZASCAD, every position costs
    a cycle; a RUN flag either way); ``col_bits``/``row_bits`` the entry's column and row
    fields (padded row widths below ``2**col_bits``, RUNs of up to ``2**row_bits`` rows);
    ``drain`` the outputs each PE hands to one result word (1..4): a C word holds
    ``pes * drain`` consecutive outputs, so the drain writes up to ``pes * drain`` outputs per
    cycle while the broadcast goes on.
    """
    name = "feie"
    tiles: int = 4
    pes: int = 3
    kmax: int = 3
    zero_skip: bool = True
    col_bits: int = 8
    row_bits: int = 8
    drain: int = 1

    def __post_init__(self):
        check_int("array.tiles", self.tiles, 1, 16)
        check_int("array.pes", self.pes, 1, 7)
        check_int("array.kmax", self.kmax, 1, 7)
        check_int("array.col_bits", self.col_bits, 2, 12)
        check_int("array.row_bits", self.row_bits, 1, 12)
        check_int("array.drain", self.drain, 1, 4)
        if not isinstance(self.zero_skip, bool):
            raise ConfigError(f"array.zero_skip: {self.zero_skip!r} is not a boolean; "
                              f"allowed: true, false")
        if self.pes < -(-self.kmax // 2):
            raise ConfigError(f"array.pes: {self.pes} PEs cannot run a {self.kmax}-wide "
                              f"filter even at stride 2; allowed: {-(-self.kmax // 2)}..7")


def _unit_cfg(*, tiles, pes, kmax, acc_bits, a_depth, w_depth, c_depth, drain=1):
    from tessera.generators.config import config_from_dict
    return config_from_dict({
        "array": {"kind": "feie", "tiles": tiles, "pes": pes, "kmax": kmax, "drain": drain},
        "pe": {"kind": "int", "a_bits": 8, "b_bits": 8, "acc_bits": acc_bits},
        "memory": {"a_depth": a_depth, "b_depth": w_depth, "c_depth": c_depth}})


def _unit_array(**opts):
    from tessera.hdl.engine.feie import FeieArrayUnit
    return FeieArrayUnit(_unit_cfg(**opts).engine.make_hdl())


def _unit_formats(**opts):
    cfg = _unit_cfg(**opts)
    lay = cfg.engine.entry_layout()
    return {"a": {"kind": "feie_entry", "bits": lay.bits,
                  "fields": [{"name": "value", "offset": 0, "width": lay.act_bits,
                              "kind": "int", "signed": True},
                             {"name": "col", "offset": lay.act_bits, "width": lay.col_bits},
                             {"name": "q", "offset": lay.act_bits + lay.col_bits,
                              "width": lay.q_bits},
                             {"name": "row", "offset": lay.act_bits + lay.col_bits
                              + lay.q_bits, "width": lay.row_bits}]},
            "w": {"kind": "int", "bits": 8, "signed": True,
                  "lanes": f"tiles x kmax ({opts['tiles']} x {opts['kmax']})"},
            "acc": {"kind": "int", "bits": cfg.pe.result_bits, "signed": True,
                    "overflow": "wrap"},
            "args": [{"name": f.name, "bytes": f.nbytes} for f in cfg.engine.args().fields]}


class FeieEngine(Engine):
    """``[array] kind = "feie"`` with an ``int`` PE kind of at most 8-bit operands.

    Stores: A (activation entries: value, column, sub-position, row; one per word), W (one
    word per sub-position (input channel, filter row): ``kmax`` taps for each of ``tiles``
    output channels) and C (results: ``pes * drain`` consecutive output positions, ``tiles``
    channels each, per word).
    """
    name = "feie"
    code = 3
    Section = FeieSection
    layer_types = ("Dense", "Conv2d")

    @classmethod
    def accepts(cls, kind):
        from tessera.generators.kinds.int import IntKind
        k = kind if isinstance(kind, type) else type(kind)
        return issubclass(k, IntKind)

    @classmethod
    def units(cls):
        """``tessera unit feie_array``: the engine alone (`FeieHdl`), store ports and RUN
        control as the core's seam wires them."""
        from tessera.generators.kinds.unitspec import Option, Unit
        return (Unit(
            name="feie_array",
            summary="FEIE / ZASCAS zero-skipping convolution engine: one activation entry "
                    "broadcast per cycle to pes x tiles int8 PEs; docs/feie.md",
            options=(Option("tiles", int, 4, "PE groups, one output channel each (1..16)"),
                     Option("pes", int, 3, "PEs per group (1..7, at least ceil(kmax/2))"),
                     Option("kmax", int, 3, "widest filter row (1..7)"),
                     Option("drain", int, 1, "outputs per PE in one result word (1..4)"),
                     Option("acc_bits", int, 24, "partial-sum width (16..64)"),
                     Option("a_depth", int, 1024, "activation entries (store A)"),
                     Option("w_depth", int, 64, "filter-row words (store W)"),
                     Option("c_depth", int, 256, "result words (store C)")),
            build=_unit_array, formats=_unit_formats),)

    @property
    def _a(self):
        return self.cfg.array

    def entry_layout(self):
        from tessera.sim.engines.feie import EntryLayout
        mem = self.cfg.memory
        return EntryLayout(act_bits=self.cfg.pe.a_bits, col_bits=self._a.col_bits,
                           q_bits=max(1, (mem.depth("w", "b_depth") - 1).bit_length()),
                           row_bits=self._a.row_bits)

    def geometry(self):
        from tessera.hdl.ctrl.memmap import StoreSpec, build_geometry
        a, pe = self._a, self.cfg.pe
        lay = self.entry_layout()
        specs = (
            StoreSpec("a", "operand", 1, lay.bits,
                      doc=f"activation entries: value (bits {lay.act_bits - 1}:0), column, "
                          f"sub-position q, output row (docs/feie.md)"),
            StoreSpec("w", "operand", a.tiles * a.kmax, pe.b_bits, depth_from="b_depth",
                      doc="filter rows: word q = the taps of sub-position q, kmax lanes per "
                          "tile"),
            StoreSpec("c", "result", a.pes * a.drain * a.tiles, pe.result_bits,
                      doc=f"results: word w = outputs w*{a.pes * a.drain} .. "
                          f"w*{a.pes * a.drain}+{a.pes * a.drain - 1} (pes x drain), one lane "
                          f"per tile each"),
        )
        return build_geometry(a.pes, a.tiles, specs, self.cfg.memory)

    def args(self):
        from tessera.hdl.ctrl.protocol import ArgLayout, Field
        return ArgLayout([
            Field("rows", 2, "output rows"), Field("ow", 2, "outputs per row"),
            Field("wp", 2, "padded input row width (positions per row and sub-position)"),
            Field("q", 2, "sub-positions (input channel x filter row) per column"),
            Field("k", 1, "filter width"), Field("stride", 1, "stride (1 or 2)"),
            Field("entries", 2, "activation entries in A"),
            Field("a_base", 2), Field("w_base", 2), Field("c_base", 2),
            Field("flags", 1, "bit 0: accumulate into C; bit 2: dense (every position)")])

    def check(self):
        pe = self.cfg.pe
        if pe.a_bits > 8 or pe.b_bits > 8:
            raise ConfigError(f"pe.a_bits/b_bits: {pe.a_bits}/{pe.b_bits}; allowed: at most 8 "
                              f"on array.kind 'feie' (int8 PEs)")

    def make_hdl(self):
        from tessera.hdl.engine.feie import FeieHdl
        a = self._a
        depths = {s.name: s.depth for s in self.cfg.geometry.stores}
        return FeieHdl(tiles=a.tiles, pes=a.pes, kmax=a.kmax, layout=self.entry_layout(),
                       b_bits=self.cfg.pe.b_bits, acc_bits=self.cfg.pe.result_bits,
                       args=self.args(), depths=depths, drain=a.drain)

    def twin(self):
        from tessera.sim.engines.feie import FeieTwin
        return FeieTwin(cfg=self.cfg)

    def mapper(self):
        from tessera.sim.engines.feie import FeieLowering
        return FeieLowering(self.cfg)

    def perf_model(self):
        from tessera.sim.engines.feie_perf import layer_runs
        return layer_runs

    def overlap_model(self):
        """The mapper's ping-pong time (`FeieLowering.overlaps`: A, W and C of two banks):
        `tessera.sim.engines.feie_perf.overlap_seconds`."""
        from tessera.sim.engines.feie_perf import overlap_seconds
        return overlap_seconds

    def layer_mapper(self):
        return self.mapper()

    def layer_cases(self, *, quick=False):
        from tessera.sim.layers import Conv2d
        cases = [
            ("seed_1x3", Conv2d(1, 1, kernel=(1, 3)), (1, 1, 2, 8)),
            ("conv3x3", Conv2d(3, self._a.tiles + 1, kernel=3, padding=1), (1, 3, 6, 5)),
            ("conv3x3_s2", Conv2d(2, 3, kernel=3, stride=2, padding=1), (1, 2, 7, 7)),
            ("depthwise3x3", Conv2d(2, 2, kernel=3, padding=1, groups=2), (1, 2, 5, 5)),
            ("conv1x1", Conv2d(5, 3, kernel=1), (2, 5, 3, 4)),
        ]
        if quick:
            cases = [c for c in cases if c[0] in ("seed_1x3", "conv3x3_s2", "depthwise3x3")]
        return [{"name": n, "layer": layer.to_dict(), "input": list(shape), "kind": "relu",
                 "seed": 3000 + i} for i, (n, layer, shape) in enumerate(cases)]

    def ptq_options(self):
        """Zero skipping needs a real 0 to be code 0: activations with zero point 0
        (`tessera.sim.ptq_int`, option ``act_zero_point``)."""
        return {"act_zero_point": 0}

    def pe_count(self):
        return self._a.pes * self._a.tiles

    def macs_per_cycle(self, mode=None):
        """Peak MACs per cycle: every PE of every tile busy (``pes`` x ``tiles``)."""
        return self._a.pes * self._a.tiles

    def k_capacity(self, mode=None):
        return self.cfg.geometry.store("w").depth

    def timing(self):
        from tessera.sim.engines.feie import CHECK_CYCLES, END_CYCLES, START_CYCLES
        a = self._a
        return {"model": "feie", "check_cycles": CHECK_CYCLES,
                "run_cycles": None,
                "run_cycles_rule": (
                    f"data-dependent: {START_CYCLES} + the schedule's cycles + {END_CYCLES}; "
                    f"one entry (skip) or position (dense) broadcast per cycle from the first "
                    f"RUN cycle (the first entry is fetched during the one-cycle argument "
                    f"check), stalling only while a PE's done queue (depth {a.drain + 2}) is "
                    f"full; result words of {a.pes * a.drain} outputs written in order, one "
                    f"per cycle in parallel with the broadcast, once the broadcast has passed "
                    f"their last output's last column; tessera.sim.engines.feie.simulate "
                    f"computes it and predict() is the closed form"),
                "ideal_cycles": {"macs_per_cycle": self.macs_per_cycle()}}
