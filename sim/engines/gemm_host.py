"""Host-side pieces every GEMM mapper shares: the operands' shape check and the epilogue's
per-column parameters and RUN fields."""

import numpy as np


__all__ = ["gemm_operands_checked", "epilogue_setup"]


def gemm_operands_checked(a, b):
    """``a`` (M x K) and ``b`` (K x N) element codes as uint64 arrays; a ValueError naming
    both shapes when they do not chain."""
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"gemm: shapes {a.shape} and {b.shape} do not chain (M x K, K x N)")
    return a, b


def epilogue_setup(cfg, epilogue, n, n_padded):
    """The epilogue of a GEMM of ``n`` output columns padded to ``n_padded``: ``(epi, params,
    run_fields, flags)``, where ``params`` are the packed per-column parameters
    (``n_padded * lanes_per_channel`` codes, the padding columns zero), ``run_fields`` the
    epilogue's RUN fields and ``flags`` its flag bits (`Epilogue.run_codes`); ``(None, None,
    {}, 0)`` without ``epilogue``. Raises ValueError when the core has no epilogue."""
    if epilogue is None:
        return None, None, {}, 0
    epi = cfg.engine.epilogue()
    if epi is None:
        raise ValueError("gemm: epilogue= needs a core with an epilogue "
                         "(memory.p_depth > 0 and a PE kind that has one)")
    params = epi.pack_params(**{f.name: np.broadcast_to(np.asarray(epilogue[f.name]), (n,))
                                for f in epi.channel_fields})
    params = np.concatenate([params, np.zeros((n_padded - n) * epi.lanes_per_channel,
                                              dtype=np.uint64)])
    run_fields, flags = epi.run_codes(epilogue)
    return epi, params, dict(run_fields), flags
