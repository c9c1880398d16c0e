"""Golden twins of the PE array: what one tile computes, per PE kind."""

import numpy as np

from tessera.sim import intmac


__all__ = ["IntArrayModel", "array_model"]


class IntArrayModel:
    """Twin of `SystolicArray` built from `IntMacPE`s: C[r, c] = wrap(sum_k a[k, r] * b[k, c])."""

    def __init__(self, *, a_bits, b_bits, acc_bits):
        self.a_bits, self.b_bits, self.acc_bits = a_bits, b_bits, acc_bits

    def tile(self, a_codes, b_codes):
        """``a_codes`` (K x rows) and ``b_codes`` (K x cols) unsigned codes -> rows x cols codes."""
        a = intmac.from_codes(a_codes, self.a_bits)
        b = intmac.from_codes(b_codes, self.b_bits)
        acc = intmac.mac(a.T[:, None, :], b.T[None, :, :], a_bits=self.a_bits,
                         b_bits=self.b_bits, acc_bits=self.acc_bits)
        return intmac.to_codes(acc, self.acc_bits)

    def accumulate(self, old_codes, new_codes):
        """Output-stage accumulation: lane-wise wrapping add of result codes."""
        s = (np.asarray(old_codes, dtype=np.uint64) + np.asarray(new_codes, dtype=np.uint64))
        if self.acc_bits < 64:
            s &= np.uint64((1 << self.acc_bits) - 1)
        return s


def array_model(cfg):
    """The array twin for a `CoreConfig`."""
    if cfg.pe.kind == "int":
        return IntArrayModel(a_bits=cfg.pe.a_bits, b_bits=cfg.pe.b_bits, acc_bits=cfg.pe.acc_bits)
    if cfg.pe.kind == "fpmac":
        from tessera.sim.fparray import FPArrayModel
        return FPArrayModel(cfg)
    raise ValueError(f"pe.kind: {cfg.pe.kind!r} has no golden model")
