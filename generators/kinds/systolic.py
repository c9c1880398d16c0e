"""Engine ``systolic``: the output-stationary systolic GEMM (`tessera.hdl.engine.gemm_os`) or,
with ``array.dataflow = "weight_stationary"``, the weight-stationary one
(`tessera.hdl.engine.gemm_ws`, on the PE kind's arithmetic parts)."""

from dataclasses import dataclass

from tessera.generators.kinds.base import (ConfigError, Engine, EngineSection, check_choice,
                                           check_int)
from tessera.hdl.ctrl.memmap import StoreSpec, build_geometry
from tessera.hdl.ctrl.protocol import ArgLayout, Field


__all__ = ["SystolicGemm", "SystolicSection"]

DATAFLOWS = ("output_stationary", "weight_stationary")
#: Short names a config may use; the section keeps the long one (manifests, digests).
DATAFLOW_ALIASES = {"os": "output_stationary", "ws": "weight_stationary"}


@dataclass(frozen=True)
class SystolicSection(EngineSection):
    """``[array] kind = "systolic"``: the array's shape and dataflow (``output_stationary``,
    ``weight_stationary``; ``os`` and ``ws`` are the same); ``chain`` builds the
    chain writer (`tessera.hdl.engine.chain.TransposeChain`: a RUN's epilogue outputs go
    straight into store A as the next dense layer's operands; needs the epilogue)."""
    name = "systolic"
    rows: int = 8
    cols: int = 8
    dataflow: str = "output_stationary"
    chain: bool = False

    def __post_init__(self):
        check_int("array.rows", self.rows, 1, 64)
        check_int("array.cols", self.cols, 1, 64)
        if isinstance(self.dataflow, str) and self.dataflow in DATAFLOW_ALIASES:
            object.__setattr__(self, "dataflow", DATAFLOW_ALIASES[self.dataflow])
        check_choice("array.dataflow", self.dataflow, DATAFLOWS + tuple(DATAFLOW_ALIASES))
        if not isinstance(self.chain, bool):
            raise ConfigError(f"array.chain: {self.chain!r} is not a boolean; allowed: true, "
                              f"false")

    def to_dict(self):
        d = super().to_dict()
        if not self.chain:        # left out: configs without it keep their digest
            d.pop("chain")
        return d


class SystolicGemm(Engine):
    """``[array] kind = "systolic"``, dataflow ``output_stationary`` or ``weight_stationary``.

    Stores: A (operand words of ``rows`` activation lanes), B (``cols`` weight lanes) and C
    (result words of ``cols`` accumulators). Output stationary: an A word is one K step of
    ``rows`` output rows, a C word one array row; RUN arguments: the GEMM tile counts, K (in
    words), the three base addresses, flags (bit 0: accumulate with the PE kind's combiner)
    and, for PE kinds with run-time modes, the mode. Weight stationary: an A word is one
    output row's ``rows`` lanes of one K tile, a C word one output row; RUN arguments: the
    output rows ``m``, ``n_tiles``, ``k_tiles``, the bases, flags and mode.
    """
    name = "systolic"
    code = 1
    Section = SystolicSection
    layer_types = ("Dense", "Conv2d")

    def geometry(self):
        cfg, pe = self.cfg, self.cfg.pe
        lay = pe.layout()
        R, C = cfg.array.rows, cfg.array.cols
        specs = [
            StoreSpec("a", "operand", R, lay.a_lane_bits, doc="activations, one lane per row",
                      chain=self.chains()),
            StoreSpec("b", "operand", C, lay.b_lane_bits, doc="weights, one lane per column"),
            StoreSpec("c", "result", C, pe.result_bits, doc="results, one array row per word"),
        ]
        epi = self.epilogue()
        if epi is not None:
            specs += [
                StoreSpec("p", "parameter", epi.lanes_per_channel * C, epi.lane_bits,
                          doc="epilogue parameters, one word per column tile "
                              f"({epi.lanes_per_channel} lanes per column)"),
                StoreSpec("r", "result", C, epi.out_bits, depth=cfg.memory.depth("c"),
                          doc="epilogue outputs at operand width, one array row per word"),
            ]
        return build_geometry(R, C, specs, cfg.memory)

    def epilogue(self):
        """The PE kind's epilogue when this core builds it (``memory.p_depth`` > 0), else
        None."""
        if not self.cfg.memory.p_depth:
            return None
        return self.cfg.pe.epilogue()

    @property
    def ws(self):
        """Whether the array is weight stationary."""
        return self.cfg.array.dataflow == "weight_stationary"

    def chains(self):
        """Whether this core builds the chain writer: ``array.chain`` with an epilogue whose
        outputs are A lanes (one element per lane), on the output-stationary array."""
        if self.ws:
            return False
        epi = self.epilogue()
        lay = self.cfg.pe.layout()
        return bool(self.cfg.array.chain and epi is not None and not self.cfg.pe.modes
                    and lay.k_per_word == 1 and epi.out_bits == lay.a_lane_bits)

    def check(self):
        mem = self.cfg.memory
        pe = self.cfg.pe
        if self.ws and pe.parts() is None:
            why = getattr(pe, "no_parts_reason", "")
            raise ConfigError(f"array.dataflow: 'weight_stationary' needs a PE kind whose "
                              f"arithmetic comes as parts (product, term, "
                              f"accumulate, finish); pe.kind {pe.name!r} has none"
                              f"{f' ({why})' if why else ''}; allowed: 'output_stationary'")
        if self.ws and self.cfg.array.chain:
            raise ConfigError("array.chain: true needs array.dataflow 'output_stationary' (the "
                              "chain writer lays out output-stationary A words); allowed: "
                              "false")
        if self.cfg.array.chain and not self.chains():
            raise ConfigError("array.chain: true needs the epilogue (memory.p_depth > 0) of a "
                              "PE kind without run-time modes whose outputs are A lanes "
                              f"(pe.kind {self.cfg.pe.name!r} here); allowed: false")
        if mem.p_depth and self.cfg.pe.epilogue() is None:
            why = getattr(self.cfg.pe, "no_epilogue_reason", "")
            raise ConfigError(f"memory.p_depth: {mem.p_depth} asks for an epilogue and pe.kind "
                              f"{self.cfg.pe.name!r} has none{f' ({why})' if why else ''}; "
                              f"allowed: 0")
        # A result store must hold one tile of results (one word per array row), or no RUN
        # can ever be accepted.
        g = self.cfg.geometry
        for s in g.result_stores:
            if s.depth < g.rows and not self.ws:
                raise ConfigError(f"memory.{s.name}_depth: {s.depth} cannot hold one tile of "
                                  f"results ({g.rows} words, one per array row); allowed: "
                                  f"{g.rows}..32768 (at least array.rows)")

    def k_capacity(self, mode=None):
        g = self.cfg.geometry
        return min(g.store("a").depth, g.store("b").depth) * self.cfg.pe.layout(mode).k_per_word

    def args(self):
        epi = self.epilogue()
        if self.ws:
            fields = [Field("m", 2, "output rows (vectors per pass)"),
                      Field("n_tiles", 2, "column tiles of cols outputs"),
                      Field("k_tiles", 2, "K tiles of rows lanes")]
        else:
            fields = [Field("m_tiles", 2, "row tiles of rows outputs"),
                      Field("n_tiles", 2, "column tiles of cols outputs"),
                      Field("k", 2, "words of A and B per tile")]
        fields += [Field("a_base", 2), Field("b_base", 2), Field("c_base", 2),
                  Field("flags", 1, "bit 0: accumulate into C with the PE kind's combiner"
                                    + (epi.flags_doc() if epi is not None else ""))]
        if self.cfg.pe.modes:
            fields.append(Field("mode", 1, "PE run-time mode code"))
        if epi is not None:         # p_base and the epilogue's own RUN fields
            fields += epi.run_arg_fields()
        if self.chains():
            fields += [Field("chain_base", 2, "chaining RUN: first A word of its outputs"),
                       Field("chain_stride", 2, "chaining RUN: A words from one m-tile's "
                                                "outputs to the next's")]
        return ArgLayout(fields)

    def make_hdl(self):
        from tessera.hdl.engine.gemm_os import GemmOSEngine
        cfg = self.cfg
        g = cfg.geometry
        epi = self.epilogue()
        if self.ws:
            from tessera.hdl.engine.gemm_ws import GemmWSEngine
            from tessera.hdl.engine.params import accumulate_latency
            comb = cfg.pe.combiner()
            return GemmWSEngine(rows=cfg.array.rows, cols=cfg.array.cols, parts=cfg.pe.parts(),
                                args=self.args(), depths=tuple(s.depth for s in g.stores[:3]),
                                acc_latency=None if comb is None else accumulate_latency(comb),
                                modes=len(cfg.pe.modes),
                                ii=tuple(cfg.pe.ii(m) for m in cfg.pe.modes) or (cfg.pe.ii(),),
                                epilogue=epi,
                                p_depth=g.store("p").depth if epi is not None else 0)
        return GemmOSEngine(rows=cfg.array.rows, cols=cfg.array.cols, pe=cfg.pe.make_pe,
                            args=self.args(), depths=tuple(s.depth for s in g.stores[:3]),
                            epilogue=epi, p_depth=g.store("p").depth if epi is not None else 0,
                            accumulate=cfg.pe.combiner() is not None,
                            modes=len(cfg.pe.modes),
                            ii=tuple(cfg.pe.ii(m) for m in cfg.pe.modes) or (cfg.pe.ii(),),
                            chain=self.chains())

    def twin(self):
        from tessera.sim.engines.gemm_os import GemmOSTwin
        cfg = self.cfg
        if self.ws:
            from tessera.sim.engines.gemm_ws import GemmWSTwin
            front, finish = cfg.pe.parts_timing()
            return GemmWSTwin(rows=cfg.array.rows, cols=cfg.array.cols, pe=cfg.pe,
                              geometry=cfg.geometry, epilogue=self.epilogue(),
                              front=front, finish=finish)
        return GemmOSTwin(rows=cfg.array.rows, cols=cfg.array.cols, pe=cfg.pe,
                          geometry=cfg.geometry, epilogue=self.epilogue(),
                          chain=self.chains())

    def mapper(self):
        if self.ws:
            from tessera.sim.engines.gemm_ws import GemmWSMapper
            return GemmWSMapper(self.cfg)
        from tessera.sim.engines.gemm_os import GemmMapper
        return GemmMapper(self.cfg)

    def perf_model(self):
        if self.ws:
            from tessera.sim.engines.gemm_ws_perf import layer_runs
            return layer_runs
        from tessera.sim.engines.gemm_os_perf import layer_runs
        return layer_runs

    def overlap_model(self):
        if self.ws:
            from tessera.sim.engines.gemm_ws_perf import overlap_seconds
            return overlap_seconds
        from tessera.sim.engines.gemm_os_perf import overlap_seconds
        return overlap_seconds

    def timing(self):
        """Manifest ``timing``: the cycle model as an evaluable tree, and the ideal."""
        twin = self.twin()
        sizes = ({"m": "RUN m", "n_tiles": "RUN n_tiles", "k_tiles": "RUN k_tiles"} if self.ws
                 else {"m_tiles": "RUN m_tiles", "n_tiles": "RUN n_tiles", "k": "RUN k"})
        return {"model": "gemm_ws" if self.ws else "gemm_os", "check_cycles": twin.check_cycles,
                "pe_latency": self.cfg.pe.latency, "pe_ii": self.cfg.pe.ii(),
                **({"product_front": twin.front, "finish_latency": twin.finish}
                   if self.ws else {}),
                "combiner_latency": twin.combiner_latency,
                **({"epilogue": twin.epilogue.as_dict()} if twin.epilogue else {}),
                "run_cycles": twin.model,
                "run_cycles_variables": {
                    **sizes,
                    "accumulate": "RUN flags bit 0",
                    **({"epilogue": "RUN flags bit 1"} if twin.epilogue else {}),
                    **({"mode": "RUN mode"} if self.cfg.pe.modes else {})},
                "ideal_cycles": {"macs_per_cycle": (
                    {m: self.macs_per_cycle(m) for m in self.cfg.pe.modes} if self.cfg.pe.modes
                    else self.macs_per_cycle())}}

    def macs_per_cycle(self, mode=None):
        """Peak MACs per cycle in ``mode``: every PE's products per operand pair over its II."""
        pe = self.cfg.pe
        n, ii = self.cfg.array.rows * self.cfg.array.cols * pe.layout(mode).k_per_word, \
            pe.ii(mode)
        return n // ii if n % ii == 0 else n / ii
