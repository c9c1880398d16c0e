"""Golden twin of a `SystolicArray` of `FPMac` PEs: what one tile computes."""

import numpy as np

from tessera.sim import fp


__all__ = ["FPArrayModel"]


class FPArrayModel:
    """C[r, c] = ``acc_format`` accumulation of a[k, r] * b[k, c] over k, in k order (chunked
    with ``chunk``), exactly as each `FPMac` PE does it."""

    def __init__(self, *, input_format, acc_format, chunk=0):
        self.fi, self.fa, self.chunk = input_format, acc_format, chunk

    def tile(self, a_codes, b_codes, mode=None):
        a = np.asarray(a_codes, dtype=np.uint32).T[:, None, :]
        b = np.asarray(b_codes, dtype=np.uint32).T[None, :, :]
        a, b = np.broadcast_arrays(a, b)
        if self.chunk:
            out = fp.chunk_mac(self.fi, a, b, self.fa, chunk=self.chunk)
        else:
            out = fp.mac(self.fi, a, b, self.fa)
        return out.astype(np.uint64)
