"""Turn a validated `CoreConfig` into HDL components (through the kind registries)."""

__all__ = ["build_core"]


def build_core(cfg):
    """A fresh `tessera.hdl.core.TesseraCore` for ``cfg`` (components elaborate once: call per
    use). The engine comes from ``array.kind``, the PEs and the combiner from ``pe.kind``."""
    from tessera.hdl.core import TesseraCore
    return TesseraCore.from_config(cfg)
