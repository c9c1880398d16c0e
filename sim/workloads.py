"""Test and demo workloads: GEMM operands for a core and their reference results.

Both ask the PE kind (``cfg.pe.operands`` / ``cfg.pe.reference``), so a new kind brings its
own operand generators and its own independent reference.
"""

import numpy as np


__all__ = ["gemm_operands", "reference_gemm", "KINDS"]

KINDS = ("random", "extremes", "min", "zeros_a", "zeros_b", "relu")


def gemm_operands(cfg, m, n, k, *, kind="random", seed=0, mode=None):
    """Operand element codes (A: M x K, B: K x N) for a core, of a named kind.

    ``random``: normal data over the operand range; ``extremes``: extreme values (int: the two
    ends of the range; float: every code, NaN/Inf/subnormals included); ``min``: every operand
    the most negative value (the largest products); ``zeros_a`` / ``zeros_b``: one operand all
    zero; ``relu``: activations with about half zeros, as after a ReLU.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, not {kind!r}")
    return cfg.pe.operands(m, n, k, kind=kind, rng=np.random.default_rng(seed), mode=mode)


def reference_gemm(cfg, a_codes, b_codes, *, k_split=None, mode=None):
    """Expected result codes of ``A @ B`` on the core from the kind's reference, which is
    independent of the golden twin; ``k_split`` is the K (in elements) of each RUN when K is
    split; ``mode`` the PE run-time mode."""
    return cfg.pe.reference(a_codes, b_codes, k_split=k_split, mode=mode)
