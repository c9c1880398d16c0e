"""Engine ``tree``: ternary reduce-and-scale, dense (`tessera.hdl.engine.tree_dense`) or
run-length (`tessera.hdl.engine.tree_rle`) weights, loaded at run time."""

from dataclasses import dataclass

from tessera.generators.kinds.base import ConfigError, Engine, EngineSection, check_choice, \
    check_int
from tessera.hdl.ctrl.memmap import StoreSpec, build_geometry
from tessera.hdl.ctrl.protocol import ArgLayout, Field


__all__ = ["TreeEngine", "TreeSection", "ENCODINGS"]

ENCODINGS = ("dense", "rle")


@dataclass(frozen=True)
class TreeSection(EngineSection):
    """``[array] kind = "tree"``.

    ``encoding = "dense"``: ``outputs`` adder trees of ``inputs`` leaves, one A word of
    ``inputs`` activations and one W word of ``inputs x outputs`` weight codes per cycle.
    ``encoding = "rle"``: weights as run-length entries (a 2-bit code and a ``z_bits`` zero
    run, the non-zeros only), one entry per cycle applied to ``inputs`` activation rows at
    once (``outputs`` is not used: leave it out). ``scales``: depth of scratchpad S (one
    (Wp, Wn) word per output channel of a RUN).
    """
    name = "tree"
    inputs: int = 16
    outputs: int = None
    encoding: str = "dense"
    z_bits: int = 6
    scales: int = 256

    def __post_init__(self):
        check_choice("array.encoding", self.encoding, ENCODINGS)
        check_int("array.inputs", self.inputs, 1, 127)
        check_int("array.z_bits", self.z_bits, 1, 13)
        check_int("array.scales", self.scales, 16, 32768)
        if self.encoding == "dense":
            if self.outputs is None:
                object.__setattr__(self, "outputs", 4)
            check_int("array.outputs", self.outputs, 1, 32)
            if self.inputs * self.outputs > 1024:
                raise ConfigError(f"array.inputs/outputs: {self.inputs} x {self.outputs} weight "
                                  f"codes make a {2 * self.inputs * self.outputs}-bit W word; "
                                  f"allowed: inputs x outputs at most 1024")
        else:
            if self.outputs not in (None, 1):
                raise ConfigError(f"array.outputs: {self.outputs!r} is not used by encoding "
                                  f"'rle' (one output channel at a time over inputs rows); "
                                  f"allowed: leave it out, or 1")
            object.__setattr__(self, "outputs", 1)

    @property
    def dense(self):
        return self.encoding == "dense"


class TreeEngine(Engine):
    """``[array] kind = "tree"`` with a ``ternary`` PE kind.

    Stores: A (activations), W (weights: dense words, or run-length entries), S (scales, one
    word of (Wp, Wn) per output channel) and C (results); with ``memory.p_depth`` > 0 also P
    (the epilogue's per-channel parameters) and R (its outputs: activation codes). See
    `TreeDenseEngine` and `TreeRleEngine` for the RUN semantics and docs/architecture.md for
    the layouts.
    """
    name = "tree"
    code = 2
    Section = TreeSection
    layer_types = ("Dense", "Conv2d")

    @property
    def _a(self):
        return self.cfg.array

    def geometry(self):
        a, pe = self._a, self.cfg.pe
        I = a.inputs
        if a.dense:
            w = StoreSpec("w", "operand", I, 2 * a.outputs, depth_from="b_depth",
                          doc="weights: lane i = input i's 2-bit codes, output o at bits "
                              "2o+1:2o")
            c_lanes = a.outputs
            a_doc = "activations: inputs consecutive K elements of one row per word"
            c_doc = "results: the outputs channels of one row per word"
        else:
            w = StoreSpec("w", "operand", 1, 2 + a.z_bits, depth_from="b_depth",
                          doc="run-length entries: code (bits 1:0) and zero run (above)")
            c_lanes = I
            a_doc = "activations: one K element of inputs rows per word"
            c_doc = "results: one output channel of inputs rows per word"
        epi = self.epilogue()
        # With the epilogue and inputs == outputs, an R word (one row's outputs channels) is
        # an A word (one row's next inputs K elements): A takes chained outputs as they are.
        chain = (a.dense and epi is not None and I == a.outputs
                 and epi.out_bits == pe.act_bits)
        specs = [
            StoreSpec("a", "operand", I, pe.act_bits, doc=a_doc, chain=chain),
            w,
            StoreSpec("s", "parameter", 2, pe.scale_bits, depth=a.scales,
                      doc="scales: lane 0 Wp, lane 1 Wn, one word per output channel"),
            StoreSpec("c", "result", c_lanes, pe.result_bits, doc=c_doc),
        ]
        if epi is not None:
            pch = self.p_channels
            p_doc = ("epilogue parameters, one word per n-tile of a RUN" if a.dense else
                     "epilogue parameters, one word per output channel of a RUN")
            specs += [
                StoreSpec("p", "parameter", epi.lanes_per_channel * pch, epi.lane_bits,
                          doc=f"{p_doc} ({epi.lanes_per_channel} lane(s) per channel)"),
                StoreSpec("r", "result", c_lanes, epi.out_bits, depth=self.cfg.memory.depth("c"),
                          doc="epilogue outputs (activation codes), same words as C"),
            ]
        return build_geometry(I, a.outputs, specs, self.cfg.memory)

    @property
    def p_channels(self):
        """Output channels per parameter word (and per result word): dense ``outputs``; the
        run-length engine's result word is one channel of ``inputs`` rows, so 1."""
        return self._a.outputs if self._a.dense else 1

    def epilogue(self):
        """The ternary kind's epilogue when this core builds it (``memory.p_depth`` > 0),
        else None."""
        if not self.cfg.memory.p_depth:
            return None
        return self.cfg.pe.epilogue()

    def args(self):
        if self._a.dense:
            fields = [Field("m", 2, "activation rows"), Field("n_tiles", 2,
                                                              "tiles of outputs channels"),
                      Field("k", 2, "A and W words per row")]
        else:
            fields = [Field("m_tiles", 2, "tiles of inputs activation rows"),
                      Field("k", 2, "K elements (A words) per tile"),
                      Field("n", 2, "output channels (rows of W transposed)"),
                      Field("entries", 2, "run-length entries in W")]
        epi = self.epilogue()
        fields += [Field("a_base", 2), Field("w_base", 2), Field("s_base", 2),
                   Field("c_base", 2),
                   Field("flags", 1, "bit 0: accumulate into C (wrapping add)"
                         + (epi.flags_doc() if epi is not None else ""))]
        if epi is not None:         # p_base and the epilogue's own RUN fields
            fields += epi.run_arg_fields()
        return ArgLayout(fields)

    def check(self):
        a, mem = self._a, self.cfg.memory
        if mem.p_depth and self.cfg.pe.epilogue() is None:
            raise ConfigError(f"memory.p_depth: {mem.p_depth} asks for an epilogue and pe.kind "
                              f"{self.cfg.pe.name!r} has none; allowed: 0")
        if a.scales < a.outputs:
            raise ConfigError(f"array.scales: {a.scales} cannot hold the scales of one tile "
                              f"({a.outputs} output channels); allowed: {a.outputs}..32768")

    def make_hdl(self):
        a, pe = self._a, self.cfg.pe
        depths = {s.name: s.depth for s in self.cfg.geometry.stores}
        epi = self.epilogue()
        common = dict(act_bits=pe.act_bits, scale_bits=pe.scale_bits, acc_bits=pe.acc_bits,
                      args=self.args(), depths=depths, accumulate=pe.combiner() is not None,
                      epilogue=epi, p_depth=depths["p"] if epi is not None else 0)
        if a.dense:
            from tessera.hdl.engine.tree_dense import TreeDenseEngine
            return TreeDenseEngine(inputs=a.inputs, outputs=a.outputs, **common)
        from tessera.hdl.engine.tree_rle import TreeRleEngine
        return TreeRleEngine(lanes=a.inputs, z_bits=a.z_bits, **common)

    def twin(self):
        from tessera.sim.engines.tree import DenseTwin, RleTwin
        return (DenseTwin if self._a.dense else RleTwin)(cfg=self.cfg)

    def mapper(self):
        from tessera.sim.engines.tree import DenseMapper, RleMapper
        return (DenseMapper if self._a.dense else RleMapper)(self.cfg)

    def perf_model(self):
        from tessera.sim.engines.tree_perf import layer_runs
        return layer_runs

    def overlap_model(self):
        """`tessera.sim.engines.tree_perf.overlap_seconds`: the ping-pong time of a layer
        the mappers run on banked stores (`DenseMapper.overlaps`, `RleMapper.overlaps`)."""
        from tessera.sim.engines.tree_perf import overlap_seconds
        return overlap_seconds

    def macs_per_cycle(self, mode=None):
        """Peak ternary MACs per cycle: dense ``inputs x outputs``; run-length ``inputs`` per
        non-zero weight entry (zero weights cost nothing, but are not counted as MACs)."""
        return self._a.inputs * self._a.outputs

    def ideal_cycles(self, a, b, mode=None):
        """The bound a layer ``a @ b`` cannot beat: dense MACs / (inputs x outputs);
        run-length: non-zero weights x activation rows / inputs (one entry per cycle)."""
        m, k = a.shape
        n = b.shape[1]
        if self._a.dense:
            return m * n * k / (self._a.inputs * self._a.outputs)
        return m * b.nonzeros / self._a.inputs

    def k_capacity(self, mode=None):
        g = self.cfg.geometry
        if self._a.dense:
            return min(g.store("a").depth, g.store("w").depth) * self._a.inputs
        return g.store("a").depth

    def timing(self):
        twin = self.twin()
        a = self._a
        epi = {"epilogue": twin.epilogue.as_dict()} if twin.epilogue else {}
        if a.dense:
            return {"model": "tree_dense", "check_cycles": twin.check_cycles,
                    "tree_latency": twin.tree_latency, "combiner_latency": twin.combiner_latency,
                    **epi,
                    "run_cycles": twin.model,
                    "run_cycles_variables": {
                        "m": "RUN m", "n_tiles": "RUN n_tiles", "k": "RUN k",
                        "accumulate": "RUN flags bit 0",
                        **({"epilogue": "RUN flags bit 1"} if twin.epilogue else {})},
                    "ideal_cycles": {"macs_per_cycle": self.macs_per_cycle()}}
        from tessera.sim.engines.tree import SCALER_EXTRA, START_CYCLES
        extra = (f" (+ the epilogue latency {twin.epilogue.latency} with RUN flags bit 1)"
                 if twin.epilogue else "")
        return {"model": "tree_rle", "check_cycles": twin.check_cycles,
                "combiner_latency": twin.combiner_latency, **epi,
                "run_cycles": None,
                "run_cycles_rule": (
                    f"data-dependent: decode step s (one per entry, plus one END step per "
                    f"m-tile) happens at cycle {START_CYCLES} + 1 + s + waits; a step that "
                    f"hands a row (< n) to the scaler waits until {a.inputs} - 1 cycles after "
                    f"the previous hand-over; busy ends at max(last step + 2, last hand-over + "
                    f"{a.inputs} + {SCALER_EXTRA + 2}) (+ combiner latency when "
                    f"accumulating){extra}; tessera.sim.engines.tree.RleTwin.cycles_of "
                    f"computes it"),
                "ideal_cycles": {"entries_per_cycle": 1, "rows_per_entry": a.inputs}}
