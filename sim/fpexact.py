"""Golden twin of a `SystolicArray` of `FPExactMac` PEs: what one tile computes."""

import numpy as np

from tessera.sim import fp


__all__ = ["FPExactArrayModel"]


class FPExactArrayModel:
    """C[r, c] = the exact sum of a[k, r] * b[k, c] over k, rounded once into ``acc_format``
    (`tessera.sim.fp.exact_mac`), exactly as each `FPExactMac` PE computes it. A tile longer
    than ``max_k`` products raises ValueError (the hardware window would not hold it)."""

    def __init__(self, *, input_format, acc_format, max_k):
        self.fi, self.fa, self.max_k = input_format, acc_format, max_k

    def tile(self, a_codes, b_codes, mode=None):
        a = np.asarray(a_codes, dtype=np.uint32).T[:, None, :]
        b = np.asarray(b_codes, dtype=np.uint32).T[None, :, :]
        return self._mac(a, b)

    def tiles(self, a_blocks, b_blocks, mode=None):
        """Every tile of a RUN at once (m_tiles x n_tiles x rows x cols); see
        `tessera.sim.fparray.FPArrayModel.tiles`."""
        a = np.asarray(a_blocks, dtype=np.uint32).transpose(0, 2, 1)[:, None, :, None, :]
        b = np.asarray(b_blocks, dtype=np.uint32).transpose(0, 2, 1)[None, :, None, :, :]
        return self._mac(a, b)

    def _mac(self, a, b):
        a, b = np.broadcast_arrays(a, b)
        return fp.exact_mac(self.fi, a, b, self.fa, max_k=self.max_k).astype(np.uint64)
