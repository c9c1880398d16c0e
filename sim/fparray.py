"""Golden twin of a PE array built from `FPMacPE`s, and FP GEMM workloads."""

import numpy as np

from tessera.hdl.arith.formats import FORMATS
from tessera.sim import fp


__all__ = ["FPArrayModel", "fp_operands", "reference_fp_gemm"]


def _dot(cfg, a, b):
    """Sequential (chunked) FP accumulation along the last axis, as the PE does it."""
    fi, fa = FORMATS[cfg.pe.input_format], FORMATS[cfg.pe.acc_format]
    if cfg.pe.chunk:
        return fp.chunk_mac(fi, a, b, fa, chunk=cfg.pe.chunk)
    return fp.mac(fi, a, b, fa)


class FPArrayModel:
    """C[r, c] = acc_format accumulation of a[k, r] * b[k, c] over k, in k order."""

    def __init__(self, cfg):
        self.cfg = cfg

    def tile(self, a_codes, b_codes):
        a = np.asarray(a_codes, dtype=np.uint32).T[:, None, :]
        b = np.asarray(b_codes, dtype=np.uint32).T[None, :, :]
        a, b = np.broadcast_arrays(a, b)
        return _dot(self.cfg, a, b).astype(np.uint64)

    def accumulate(self, old_codes, new_codes):
        raise ValueError("floating-point cores do not support RUN accumulation")


def fp_operands(cfg, m, n, k, *, kind, rng):
    """FP operand codes for a GEMM: normal data (``random``), every code including NaN/Inf and
    subnormals (``extremes``), the largest negative value (``min``), zeros, ReLU activations."""
    fi = FORMATS[cfg.pe.input_format]
    def normal(shape):
        return fp.encode(fi, rng.normal(0.0, 1.0, shape))
    if kind == "extremes":
        a = rng.integers(0, 1 << fi.width, (m, k)).astype(np.uint32)
        b = rng.integers(0, 1 << fi.width, (k, n)).astype(np.uint32)
    elif kind == "min":
        code = fi.max_code(1)
        a = np.full((m, k), code, dtype=np.uint32)
        b = np.full((k, n), code, dtype=np.uint32)
    else:
        a, b = normal((m, k)), normal((k, n))
        if kind == "zeros_a":
            a[:] = fp.encode(fi, np.zeros(1))[0]
        if kind == "zeros_b":
            b[:] = fp.encode(fi, np.zeros(1))[0]
        if kind == "relu":
            a = fp.encode(fi, np.maximum(rng.normal(0.0, 1.0, (m, k)), 0.0))
    return a.astype(np.uint64), b.astype(np.uint64)


def reference_fp_gemm(cfg, a_codes, b_codes):
    """Expected result codes of an FP GEMM: the verified sequential-accumulation twin."""
    a = np.asarray(a_codes, dtype=np.uint32)[:, None, :]
    b = np.asarray(b_codes, dtype=np.uint32).T[None, :, :]
    a, b = np.broadcast_arrays(a, b)
    return _dot(cfg, a, b).astype(np.uint64)
