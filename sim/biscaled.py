"""BiScaled fixed point (BiScaled-DNN): two-scale format, encoder, block-sparse storage, twin.

Format, encoder and datapath follow ``../shared/spec/approx.md`` section 4 (docs/approx.md).
A tensor uses one code width ``bits`` (sign included) and two scales: scale-fine
(``fine_frac_bits``, for the many small values) and scale-wide (``wide_frac_bits``, the few
large ones), ``D = fine_frac_bits - wide_frac_bits > 0``. Storage is the dense array of codes
plus, per block of ``block`` elements, the count and the list of the scale-wide indices; the
decoder turns the index lists back into a per-element selector ``sw`` in element order, which
travels beside the code (to the core: the A selector as a side-band bit, the B selector as the
bit above the B code; see `BiScaledFormat.lane_codes`).

Dot product (the twin, integers only): ``sum (qx * qy) << (swx * Dx + swy * Dy)``, in units
of ``2**-(FBx_fine + FBy_fine)``, wrapped to the accumulator width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tessera.hdl.arith.fixed import FixedFormat


__all__ = ["BiScaledFormat", "BiScaledTensor", "tail_threshold", "BiScaledTwin",
           "biscaled_dot_codes", "encode_operands", "result_values", "index_words"]


def tail_threshold(x, *, bins=None, ratio=0.5, min_count=None, max_tail=0.05):
    """The magnitude where the long tail of ``x`` starts, from its histogram (the patent's
    rule: the density ratio between successive bins against a threshold).

    Histogram ``|x|`` into ``bins`` equal bins on ``[0, max |x|]`` (default ``sqrt(n)``
    clipped to 8..64); walking outward from the fullest bin, the tail starts at the lower edge
    of the first bin whose count is below ``ratio`` times its predecessor's, or below
    ``min_count`` (default ``max(2, n / 1000)``: where the density is too thin to estimate).
    Returns ``max |x|`` when no bin qualifies (no tail). Exact zeros (ReLU outputs, pruned
    weights) are left out of the histogram, and the result is raised to at least the
    ``1 - max_tail`` quantile of ``|x|`` so the tail holds at most ``max_tail`` of the nonzero
    elements (the ratio rule alone fires early on thin, noisy histograms).
    """
    a = np.abs(np.asarray(x, dtype=np.float64)).ravel()
    a = a[a > 0]
    top = float(a.max()) if a.size else 0.0
    if top == 0.0:
        return 0.0
    bins = int(np.clip(np.sqrt(a.size), 8, 64)) if bins is None else bins
    min_count = max(2.0, a.size / 1000) if min_count is None else min_count
    counts, edges = np.histogram(a, bins=bins, range=(0.0, top))
    floor = float(np.quantile(a, 1.0 - max_tail))
    for i in range(int(np.argmax(counts)) + 1, bins):
        if counts[i] < ratio * counts[i - 1] or counts[i] < min_count:
            return max(float(edges[i]), floor)
    return top


@dataclass(frozen=True)
class BiScaledFormat:
    """A BiScaled operand format: ``bits``-wide signed codes at two scales.

    Parameters
    ----------
    bits : int
        Code width including the sign, 2..16.
    fine_frac_bits, wide_frac_bits : int
        Fraction bits of scale-fine and scale-wide (either may be negative);
        ``fine_frac_bits > wide_frac_bits``.
    block : int
        Elements per storage block (a power of two, 2..4096; default 64).
    """
    bits: int
    fine_frac_bits: int
    wide_frac_bits: int
    block: int = 64

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or \
                not 2 <= self.bits <= 16:
            raise ValueError(f"BiScaledFormat.bits must be an integer 2..16, not {self.bits!r}")
        if not self.fine_frac_bits > self.wide_frac_bits:
            raise ValueError(f"BiScaledFormat.fine_frac_bits must be larger than "
                             f"wide_frac_bits, not {self.fine_frac_bits!r} <= "
                             f"{self.wide_frac_bits!r}")
        if self.block < 2 or self.block & (self.block - 1) or self.block > 4096:
            raise ValueError(f"BiScaledFormat.block must be a power of two 2..4096, not "
                             f"{self.block!r}")

    @property
    def fine(self):
        return FixedFormat(self.bits - 1 - self.fine_frac_bits, self.fine_frac_bits)

    @property
    def wide(self):
        return FixedFormat(self.bits - 1 - self.wide_frac_bits, self.wide_frac_bits)

    @property
    def d(self):
        """``D = fine_frac_bits - wide_frac_bits``: the shift of one scale-wide operand."""
        return self.fine_frac_bits - self.wide_frac_bits

    @property
    def index_bits(self):
        return (self.block - 1).bit_length()

    # -- encoder / decoder ---------------------------------------------------------------------
    def encode(self, x, *, threshold=None, mask=None):
        """Real values -> ``(codes, sw)``. ``mask`` (bool array): scale-wide where set, as
        given. Otherwise scale-wide where ``|x| >= threshold`` (default: `tail_threshold`) or
        where ``x`` does not fit scale-fine (it would saturate)."""
        x = np.asarray(x, dtype=np.float64)
        if mask is not None:
            sw = np.asarray(mask, dtype=bool)
            if sw.shape != x.shape:
                raise ValueError(f"mask must have the shape {x.shape}, not {sw.shape}")
        else:
            t = tail_threshold(x) if threshold is None else float(threshold)
            f = self.fine
            overflow = (x >= float(f.max_value + f.lsb / 2)) | (x < float(f.min_value - f.lsb / 2))
            sw = (np.abs(x) >= t) | overflow
        q = np.where(sw, self.wide.quantize_int(x), self.fine.quantize_int(x))
        return self.fine.to_code(q), sw.astype(np.int64)

    def decode(self, codes, sw):
        """``(codes, sw)`` -> float64 values."""
        q = self.fine.from_code(codes)
        return np.where(np.asarray(sw) == 1, self.wide.value(q), self.fine.value(q))

    def lane_codes(self, codes, sw):
        """Core element codes: the selector as the bit above the code (``sw << bits``)."""
        return (np.asarray(codes, dtype=np.uint64)
                | (np.asarray(sw, dtype=np.uint64) << np.uint64(self.bits)))

    def split_lane_codes(self, lanes):
        lanes = np.asarray(lanes, dtype=np.uint64)
        return lanes & np.uint64((1 << self.bits) - 1), (lanes >> np.uint64(self.bits)) & 1

    # -- storage -------------------------------------------------------------------------------
    def store(self, codes, sw):
        """Dense codes + sw flags (1-D, any length) -> `BiScaledTensor` (block index lists)."""
        codes = np.asarray(codes, dtype=np.uint64).ravel()
        sw = np.asarray(sw).ravel()
        lists = []
        for b0 in range(0, codes.size, self.block):
            lists.append(np.flatnonzero(sw[b0:b0 + self.block]).astype(np.int64))
        return BiScaledTensor(self, codes, tuple(lists))

    def as_dict(self):
        return {"kind": "biscaled", "bits": self.bits, "fine": self.fine.as_dict(),
                "wide": self.wide.as_dict(), "d": self.d, "block": self.block,
                "lane": {"code": [0, self.bits], "sw": self.bits}}


@dataclass(frozen=True)
class BiScaledTensor:
    """BiScaled storage: ``codes`` (dense, ``fmt.bits`` each) and, per block, the sorted
    in-block indices of the scale-wide elements (stored as a count and ``index_bits`` each)."""
    fmt: BiScaledFormat
    codes: np.ndarray
    indices: tuple

    def selector(self):
        """The decoder: index lists -> the per-element ``sw`` stream in element order."""
        sw = np.zeros(self.codes.size, dtype=np.int64)
        for blk, idx in enumerate(self.indices):
            sw[blk * self.fmt.block + np.asarray(idx, dtype=np.int64)] = 1
        return sw

    @property
    def storage_bits(self):
        """Codes + per block a count (``index_bits + 1`` bits) + the indices."""
        f = self.fmt
        return (self.codes.size * f.bits + len(self.indices) * (f.index_bits + 1)
                + sum(len(i) for i in self.indices) * f.index_bits)

    @property
    def effective_bits(self):
        return self.storage_bits / max(1, self.codes.size)

    @property
    def wide_fraction(self):
        return sum(len(i) for i in self.indices) / max(1, self.codes.size)


def _wrap(v, bits):
    v = np.asarray(v, dtype=np.int64)
    if bits >= 64:
        return v.astype(np.uint64)
    return (v & np.int64((1 << bits) - 1)).astype(np.uint64)


def _terms(fa, fb, xa, swa, yb, swb):
    qx = fa.fine.from_code(xa)
    qy = fb.fine.from_code(yb)
    shift = np.asarray(swa, dtype=np.int64) * fa.d + np.asarray(swb, dtype=np.int64) * fb.d
    return (qx * qy) << shift


def biscaled_dot_codes(fa, fb, x, swx, y, swy, acc_bits=64):
    """Dot product (last axis) in units of ``2**-(FBx_fine + FBy_fine)``: wrapped codes and
    the unwrapped integer."""
    t = _terms(fa, fb, x, swx, y, swy).sum(axis=-1)
    return _wrap(t, acc_bits), t


class BiScaledTwin:
    """Tile twin: K x rows A lanes (code | sw << bits) and K x cols B lanes (the same) ->
    rows x cols result codes."""

    def __init__(self, fa, fb, acc_bits):
        self.fa, self.fb, self.acc_bits = fa, fb, acc_bits

    def tile(self, a_lanes, b_lanes, mode=None):
        xa, swa = self.fa.split_lane_codes(a_lanes)
        yb, swb = self.fb.split_lane_codes(b_lanes)
        t = _terms(self.fa, self.fb, xa[:, :, None], swa[:, :, None], yb[:, None, :],
                   swb[:, None, :])
        return _wrap(t.sum(axis=0), self.acc_bits)


def encode_operands(kind, a, b, *, threshold_a=None, threshold_b=None, mask_a=None,
                    mask_b=None):
    """Host side of a ``biscaled`` core: float A (M x K) and B (K x N) -> lane codes for
    `TesseraDriver.gemm`, by way of the storage format: each operand is encoded (tail
    threshold, explicit threshold or mask), stored as dense codes + block index lists (A by
    rows, B by columns: the K direction, the order the array consumes), and the index lists
    decoded back into the selectors that travel with the codes. Returns
    ``(a_lanes, b_lanes, (a_store, b_store))``."""
    fa, fb = kind.a_format, kind.b_format
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ca, sa = fa.encode(a, threshold=threshold_a, mask=mask_a)
    cb, sb = fb.encode(b.T, threshold=threshold_b,
                       mask=None if mask_b is None else np.asarray(mask_b).T)
    st_a, st_b = fa.store(ca, sa), fb.store(cb, sb)
    a_l = fa.lane_codes(st_a.codes, st_a.selector()).reshape(a.shape)
    b_l = fb.lane_codes(st_b.codes, st_b.selector()).reshape(b.shape[::-1]).T
    return a_l, b_l, (st_a, st_b)


def result_values(kind, codes):
    """Result codes of a ``biscaled`` core -> float64 values (``2**-(FBx_fine+FBy_fine)``)."""
    bits = kind.acc_bits
    c = np.asarray(codes, dtype=np.uint64).astype(np.int64)
    if bits < 64:
        c = np.where(c >= 1 << (bits - 1), c - (1 << bits), c)
    return c * 2.0 ** -(kind.a_fine_frac_bits + kind.b_fine_frac_bits)


def index_words(tensor):
    """The index-list stream of a `BiScaledTensor` in storage order: per block its count, then
    its in-block indices (the input of `tessera.hdl.arith.biscaled_decoder`)."""
    out = []
    for idx in tensor.indices:
        out.append(len(idx))
        out.extend(int(i) for i in idx)
    return np.array(out, dtype=np.uint64)
