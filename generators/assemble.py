"""Turn a validated `CoreConfig` into HDL components."""

from tessera.hdl.ctrl.protocol import PE_CODES


__all__ = ["pe_factory", "build_core", "pe_latency"]


def pe_factory(cfg):
    """A zero-argument callable returning a fresh PE for ``cfg.pe``."""
    pe = cfg.pe
    if pe.kind == "int":
        from tessera.hdl.arith.intmac import IntMacPE
        return lambda: IntMacPE(a_bits=pe.a_bits, b_bits=pe.b_bits, acc_bits=pe.acc_bits)
    if pe.kind == "fpmac":
        from tessera.hdl.arith.formats import FORMATS
        from tessera.hdl.arith.fpmac import FPMacPE
        return lambda: FPMacPE(input_format=FORMATS[pe.input_format],
                               acc_format=FORMATS[pe.acc_format],
                               chunk=pe.chunk or None, stages=pe.stages)
    raise ValueError(f"pe.kind: {pe.kind!r} has no hardware")  # config validation prevents this


def pe_latency(cfg):
    """Latency of the configured PE (builds one PE to ask it)."""
    pe = pe_factory(cfg)()
    pe._MustUse__silence = True  # built only to ask its latency, never elaborated
    return pe.latency


def build_core(cfg):
    """A fresh `tessera.hdl.core.TesseraCore` for ``cfg`` (components elaborate once: call per use)."""
    from tessera.hdl.core import TesseraCore
    return TesseraCore(
        rows=cfg.array.rows, cols=cfg.array.cols, pe=pe_factory(cfg),
        a_width=cfg.pe.a_width, b_width=cfg.pe.b_width, acc_width=cfg.pe.acc_width,
        depths=(cfg.memory.a_depth, cfg.memory.b_depth, cfg.memory.c_depth),
        pe_code=PE_CODES[cfg.pe.kind], accumulate=cfg.pe.kind == "int")
