"""Golden twin of a `SystolicArray` of `IntMacPE`s: what one tile computes."""

from tessera.sim import intmac


__all__ = ["IntArrayModel"]


class IntArrayModel:
    """Twin of `SystolicArray` built from `IntMacPE`s: C[r, c] = wrap(sum_k a[k, r] * b[k, c])."""

    def __init__(self, *, a_bits, b_bits, acc_bits):
        self.a_bits, self.b_bits, self.acc_bits = a_bits, b_bits, acc_bits

    def tile(self, a_codes, b_codes, mode=None):
        """``a_codes`` (K x rows) and ``b_codes`` (K x cols) unsigned codes -> rows x cols codes."""
        a = intmac.from_codes(a_codes, self.a_bits)
        b = intmac.from_codes(b_codes, self.b_bits)
        acc = intmac.mac(a.T[:, None, :], b.T[None, :, :], a_bits=self.a_bits,
                         b_bits=self.b_bits, acc_bits=self.acc_bits)
        return intmac.to_codes(acc, self.acc_bits)
