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
        return self._mac(a, b)

    def tiles(self, a_blocks, b_blocks, mode=None):
        """Every tile of a RUN at once: ``a_blocks`` (m_tiles x K x rows), ``b_blocks``
        (n_tiles x K x cols) -> m_tiles x n_tiles x rows x cols codes, each element the same
        sequence of roundings as `tile` (the elements are independent; one vectorized pass
        over K instead of one per tile)."""
        a = np.asarray(a_blocks, dtype=np.uint32).transpose(0, 2, 1)[:, None, :, None, :]
        b = np.asarray(b_blocks, dtype=np.uint32).transpose(0, 2, 1)[None, :, None, :, :]
        return self._mac(a, b)

    def _mac(self, a, b):
        a, b = np.broadcast_arrays(a, b)
        if self.chunk:
            out = fp.chunk_mac(self.fi, a, b, self.fa, chunk=self.chunk)
        else:
            out = fp.mac(self.fi, a, b, self.fa)
        return out.astype(np.uint64)
