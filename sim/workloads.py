"""Test and demo workloads: GEMM operands for a core and their reference results."""

import numpy as np

from tessera.sim import intmac


__all__ = ["gemm_operands", "reference_gemm", "KINDS"]

KINDS = ("random", "extremes", "min", "zeros_a", "zeros_b", "relu")


def gemm_operands(cfg, m, n, k, *, kind="random", seed=0):
    """Operand codes (A: M x K, B: K x N) for a core, of a named kind.

    ``random``: uniform over the whole operand range; ``extremes``: only the two extreme
    values (int: -2^(b-1) and 2^(b-1)-1); ``min``: every operand the most negative value (the
    largest products); ``zeros_a`` / ``zeros_b``: one operand all zero; ``relu``: activations
    with about half zeros, as after a ReLU.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, not {kind!r}")
    rng = np.random.default_rng(seed)
    if cfg.pe.kind == "int":
        def draw(shape, bits):
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            if kind == "extremes":
                return rng.choice(np.array([lo, hi]), size=shape)
            if kind == "min":
                return np.full(shape, lo)
            return rng.integers(lo, hi + 1, size=shape)
        a = draw((m, k), cfg.pe.a_bits)
        b = draw((k, n), cfg.pe.b_bits)
        if kind == "zeros_a":
            a[:] = 0
        if kind == "zeros_b":
            b[:] = 0
        if kind == "relu":
            top = (1 << (cfg.pe.a_bits - 1)) - 1
            a = np.where(rng.random(a.shape) < 0.5, 0, np.abs(a).clip(max=top))
        return intmac.to_codes(a, cfg.pe.a_bits), intmac.to_codes(b, cfg.pe.b_bits)
    from tessera.sim.fparray import fp_operands
    return fp_operands(cfg, m, n, k, kind=kind, rng=rng)


def reference_gemm(cfg, a_codes, b_codes):
    """Expected result codes of ``A @ B`` on the core, from a reference independent of the core
    model (int: exact int64 matrix product, then two's complement wrap to the accumulator)."""
    if cfg.pe.kind == "int":
        a = intmac.from_codes(a_codes, cfg.pe.a_bits)
        b = intmac.from_codes(b_codes, cfg.pe.b_bits)
        return intmac.to_codes(intmac.wrap(a @ b, cfg.pe.acc_bits), cfg.pe.acc_bits)
    from tessera.sim.fparray import reference_fp_gemm
    return reference_fp_gemm(cfg, a_codes, b_codes)
