"""Golden twin of `tessera.hdl.arith.fpec_epilogue.FpecEpilogue`: the FPEC requantizing
epilogue (bias, the integer requantizer's exact quotient, ReLU/clip, then the host
quantizer's EZB/EDB/EMB rule applied to the exact remainder). ``docs/epilogue.md`` (section
"fpec") states the rule; `tessera.sim.fpec_epilogue_ref` is the independent reference.

The integer form (what the unit computes), for ``s = wrap(acc + bias)``, ``P = s * M`` and
``K = 31 + shift``, with ``x = P / 2**K + zero_point`` (output LSBs) and ``B`` the threshold
fraction bits (`threshold_bits`):

* ``Z = floor(x * 2**(B+1))`` and ``sticky = (x * 2**(B+1) is not an integer)``;
* ``x < lo`` iff ``Z < lo << (B+1)``; ``x > hi`` iff ``Z > hi << (B+1)`` or
  (``Z == hi << (B+1)`` and ``sticky``); a clipped value is the bound, exactly (EZB). A bound
  at the format's end (``lo = -2**(w-1)``, ``hi = 2**(w-1) - 1``) clips nothing: it is the
  host quantizer's own saturation;
* otherwise ``q = (Z + 2**B) >> (B+1)`` (round half up); a ``q`` beyond the format saturates
  to its end with EDB toward ``x`` and the top EMB (``|r| >= 1/2``), as the host quantizer
  does; else ``G = Z - (q << (B+1))`` in
  ``[-2**B, 2**B)`` is ``floor(r * 2**(B+1))`` of the remainder ``r = x - q``, and
  ``mag = floor(|r| * 2**B)`` is ``G >> 1`` (``G >= 0``) or ``(-G - sticky) >> 1``;
* EZB = ``mag < T*2**B``; EDB = ``G < 0``; EMB = the number of ``j`` in ``1..2**m - 1``
  with ``mag >= (T + j * (1/2 - T) / 2**m) * 2**B`` (all integers by the choice of B).
"""

from fractions import Fraction

import numpy as np


__all__ = ["threshold_bits", "bucket_edges", "fpec_epilogue", "MULT_BITS", "shift_bits_for"]

MULT_BITS = 32


# The bit-width rules the unit and the twin share live in plain Python beside the HDL
# (`tessera.hdl.arith.params`), so the unit imports nothing from `tessera.sim`.
from tessera.hdl.arith.params import (  # noqa: E402
    bucket_edges, fpec_epilogue_frac_bits as _frac_bits, fpec_shift_bits as shift_bits_for,
    threshold_bits)


def fpec_epilogue(acc, bias, mult, shift, zero_point, lo, hi, *, acc_bits, w, emb_bits,
                  threshold):
    """Element-wise (arguments broadcast): signed accumulator values and parameters -> FPEC
    element codes (``w + 2 + emb_bits`` bits, int64), the layout of `tessera.sim.fpec`."""
    B = threshold_bits(threshold, emb_bits)
    t0, edges = bucket_edges(threshold, emb_bits)
    L = max(0, B - 30)
    cap = acc_bits + 31 + L
    arrs = np.broadcast_arrays(*(np.asarray(v, dtype=object) for v in
                                 (acc, bias, mult, shift, zero_point, lo, hi)))
    out = np.empty(arrs[0].shape, dtype=np.int64)
    m = 1 << acc_bits
    for idx in np.ndindex(*out.shape):
        a, b, M, sh, zp, lo_, hi_ = (int(v[idx]) for v in arrs)
        s = (a + b + (m >> 1)) % m - (m >> 1)
        pe = (s * M) << L
        ds = min(sh + 30 + L - B, cap)
        z = (pe >> ds) + (zp << (B + 1))
        sticky = int(pe & ((1 << ds) - 1) != 0)
        qmin, qmax = -(1 << (w - 1)), (1 << (w - 1)) - 1
        if lo_ != qmin and z < (lo_ << (B + 1)):
            q, ezb, edb, emb = min(lo_, hi_), 1, 0, 0
        elif hi_ != qmax and (z > (hi_ << (B + 1)) or (z == (hi_ << (B + 1)) and sticky)):
            q, ezb, edb, emb = hi_, 1, 0, 0
        else:
            y = z + (1 << B)
            q = y >> (B + 1)
            if q > qmax or q < qmin:        # saturated: |r| >= 1/2, the top bucket
                q, ezb, edb, emb = (qmax, 0, 0, len(edges)) if q > qmax else \
                    (qmin, 0, 1, len(edges))
            else:
                g = (y & ((1 << (B + 1)) - 1)) - (1 << B)
                mag = g >> 1 if g >= 0 else (-g - sticky) >> 1
                ezb = int(mag < t0)
                edb = 0 if ezb else int(g < 0)
                emb = 0 if ezb else sum(mag >= e for e in edges)
        out[idx] = ((q & ((1 << w) - 1)) | ((1 - ezb) << w) | (edb << (w + 1))
                    | (emb << (w + 2)))
    return out
