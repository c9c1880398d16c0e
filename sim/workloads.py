"""Test and demo workloads: GEMM operands for a core and their reference results.

Both ask the PE kind (``cfg.pe.operands`` / ``cfg.pe.reference``), so a new kind brings its
own operand generators and its own independent reference.
"""

import numpy as np


__all__ = ["gemm_operands", "reference_gemm", "save_operands", "load_operands", "case_operands",
           "KINDS"]

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


def save_operands(cfg, path, a, b):
    """Write a layer's operands (element codes; ``b`` as the kind hands it over) to ``path``
    (``.npz``), for a regression case ``{"operands": path, ...}``."""
    arrays = {"a": np.asarray(a)}
    arrays.update({f"b_{k}": v for k, v in cfg.pe.operand_arrays(b).items()})
    np.savez(path, **arrays)


def load_operands(cfg, path):
    """The operands `save_operands` wrote."""
    with np.load(path) as d:
        b = {k[2:]: d[k] for k in d.files if k.startswith("b_")}
        return d["a"], cfg.pe.operand_from_arrays(b)


def case_operands(cfg, spec):
    """The operands of a regression case: from its ``operands`` file, or generated from its
    ``kind`` and ``seed``."""
    if spec.get("operands"):
        return load_operands(cfg, spec["operands"])
    return gemm_operands(cfg, spec["m"], spec["n"], spec["k"], kind=spec["kind"],
                         seed=spec["seed"], mode=spec.get("mode"))
