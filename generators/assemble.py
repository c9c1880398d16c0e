"""Turn a validated `CoreConfig` into HDL components (through the kind registries)."""

__all__ = ["build_core"]


def build_core(cfg):
    """A fresh `tessera.hdl.core.TesseraCore` for ``cfg`` (components elaborate once: call per
    use). The engine comes from ``array.kind``, the PEs and the combiner from ``pe.kind``."""
    from tessera.hdl.core import TesseraCore
    engine = cfg.engine
    return TesseraCore(geometry=cfg.geometry, engine=engine.make_hdl(), engine_args=engine.args(),
                       engine_code=engine.code, combiner=cfg.pe.combiner(),
                       info=cfg.core_info().pack(), counters=cfg.core.counters)
