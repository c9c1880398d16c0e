"""FPEC (fixed point with error compensation, Compensated-DNN): format, quantizer, twin.

Format, quantizer and datapath follow ``../shared/spec/approx.md`` section 3 (docs/approx.md).
An FPEC element code is ``w + 2 + m`` bits, least significant first:

* bits ``[0, w)``: the fixed-point value code ``q`` (two's complement, `FixedFormat`);
* bit ``w``: ``not EZB`` (the error-zero bit, stored inverted: 1 = compensate, 0 = treat the
  quantization error as 0; so the all-zero code is exactly 0, which zero-filled memories and
  the driver's zero padding rely on);
* bit ``w + 1``: EDB (error direction: 0 = the true value lies above the level, 1 = below);
* bits ``[w + 2, w + 2 + m)``: EMB (error magnitude, ``m`` = 0, 1 or 2 bits).

Error estimate of a compensated element (EZB = 0), in LSBs: ``mag(e) / 2**s`` with
``s = 1, mag = 1`` when ``m = 0`` (half an LSB) and ``s = m + 2, mag(e) = 2**m + e + 1`` when
``m > 0`` (the upper edges of ``2**m`` equal sub-ranges of ``[LSB/4, LSB/2]``).

The compensated dot product in integer units (the twin; no floats anywhere):
``P = sum qx*qy``, ``C = sum (EZBx ? 0 : ±mag(ex)*qy) + (EZBy ? 0 : ±mag(ey)*qx)`` and the
result code ``O = (P << s) + C`` with the value ``O * 2**-(FBx + FBy + s)``, wrapped to the
accumulator width (so adding result codes of two partial dot products is the result code of
the whole: the map ``(P, C) -> (P << s) + C`` is linear).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from tessera.hdl.arith.fixed import FixedFormat


__all__ = ["compensated_codes", "FpecFormat", "emb_scale", "emb_magnitude", "FpecTwin", "fpec_dot_codes",
           "fpec_dot_value", "quantize_operands", "result_values"]


def emb_scale(emb_bits):
    """``s``: the compensation accumulator counts units of ``2**-s`` product LSBs."""
    return 1 if emb_bits == 0 else emb_bits + 2


def emb_magnitude(emb_bits, e):
    """Estimated error magnitude of EMB code ``e`` in units of ``LSB * 2**-s`` (int array)."""
    e = np.asarray(e, dtype=np.int64)
    if emb_bits == 0:
        return np.ones_like(e)
    return (1 << emb_bits) + e + 1


@dataclass(frozen=True)
class FpecFormat:
    """An FPEC operand format: a `FixedFormat` plus EZB, EDB and ``emb_bits`` EMB bits.

    Parameters
    ----------
    fixed : FixedFormat
        The computation bits (signed).
    emb_bits : int
        Error-magnitude bits, 0..2.
    threshold : float
        The quantizer's EZB threshold ``T`` in LSBs, in (0, 0.5]: ``|x - level| < T`` sets
        EZB. Default 0.25 (a quarter of the interval between adjacent levels).
    """
    fixed: FixedFormat
    emb_bits: int = 0
    threshold: float = 0.25

    def __post_init__(self):
        if not isinstance(self.fixed, FixedFormat) or not self.fixed.signed:
            raise ValueError(f"FpecFormat.fixed must be a signed FixedFormat, not {self.fixed!r}")
        if self.emb_bits not in (0, 1, 2):
            raise ValueError(f"FpecFormat.emb_bits must be 0, 1 or 2, not {self.emb_bits!r}")
        if not 0 < self.threshold <= 0.5:
            raise ValueError(f"FpecFormat.threshold must be in (0, 0.5], not {self.threshold!r}")

    @property
    def w(self):
        """Computation bits (the value code)."""
        return self.fixed.bits

    @property
    def bits(self):
        """Element code width: ``w + 2 + emb_bits``."""
        return self.w + 2 + self.emb_bits

    @property
    def s(self):
        return emb_scale(self.emb_bits)

    # -- codes ---------------------------------------------------------------------------------
    def pack(self, q, ezb, edb, emb=0):
        """Fields -> element codes."""
        w = self.w
        code = self.fixed.to_code(q).astype(np.int64)
        code |= (1 - np.asarray(ezb, dtype=np.int64)) << w      # stored inverted
        code |= np.asarray(edb, dtype=np.int64) << (w + 1)
        code |= (np.asarray(emb, dtype=np.int64) & ((1 << self.emb_bits) - 1)) << (w + 2)
        return code.astype(np.uint64)

    def fields(self, codes):
        """Element codes -> ``(q, ezb, edb, emb)`` int64 arrays."""
        c = np.asarray(codes, dtype=np.uint64).astype(np.int64)
        w = self.w
        return (self.fixed.from_code(c), 1 - ((c >> w) & 1), (c >> (w + 1)) & 1,
                (c >> (w + 2)) & ((1 << self.emb_bits) - 1))

    # -- quantizer and decoder -----------------------------------------------------------------
    def quantize(self, x):
        """Real values -> element codes: the nearest level, then EZB/EDB/EMB from the residual
        ``r = x - level`` (in LSBs): ``|r| < T`` sets EZB; otherwise EDB = (r < 0) and EMB
        the index of the sub-range of ``[T, 1/2]`` (``2**m`` equal parts) that holds ``|r|``
        (saturated values, whose ``|r|`` exceeds 1/2, get the top one)."""
        x = np.asarray(x, dtype=np.float64)
        q = self.fixed.quantize_int(x)
        r = (x - self.fixed.value(q)) * 2.0 ** self.fixed.frac_bits
        ezb = np.abs(r) < self.threshold
        edb = r < 0
        n = 1 << self.emb_bits
        width = (0.5 - self.threshold) / n
        if width > 0:
            e = np.floor((np.abs(r) - self.threshold) / width)
        else:
            e = np.zeros_like(r)
        e = np.where(ezb, 0, np.clip(e, 0, n - 1)).astype(np.int64)
        return self.pack(q, ezb.astype(np.int64), np.where(ezb, 0, edb).astype(np.int64), e)

    def decode(self, codes):
        """Element codes -> ``(level, error estimate)`` as float64 arrays (value = the sum)."""
        q, ezb, edb, e = self.fields(codes)
        lsb = 2.0 ** -self.fixed.frac_bits
        est = emb_magnitude(self.emb_bits, e) * lsb * 2.0 ** -self.s
        est = np.where(ezb == 1, 0.0, np.where(edb == 1, -est, est))
        return self.fixed.value(q), est

    def decode_exact(self, code):
        """One element code -> ``(level, error estimate)`` as exact Fractions."""
        q, ezb, edb, e = (int(v[0]) for v in self.fields(np.array([code])))
        level = self.fixed.exact(q)
        if ezb:
            return level, Fraction(0)
        mag = int(emb_magnitude(self.emb_bits, e)) * self.fixed.lsb / (1 << self.s)
        return level, (-mag if edb else mag)

    def compensated_fraction(self, codes):
        """Fraction of elements with EZB = 0 (the compensation frequency)."""
        return float(np.mean(self.fields(codes)[1] == 0))

    def as_dict(self):
        return {"kind": "fpec", "bits": self.bits, "fixed": self.fixed.as_dict(),
                "emb_bits": self.emb_bits, "threshold": self.threshold,
                "fields": {"q": [0, self.w], "not_ezb": self.w, "edb": self.w + 1,
                           "emb": [self.w + 2, self.bits]}}


def _terms(fa, fb, xa, yb):
    """``(qx*qy, compensation)`` per element pair (broadcast), int64, in output units."""
    qx, zx, dx, ex = fa.fields(xa)
    qy, zy, dy, ey = fb.fields(yb)
    mx = emb_magnitude(fa.emb_bits, ex) * np.where(dx == 1, -1, 1) * (1 - zx)
    my = emb_magnitude(fb.emb_bits, ey) * np.where(dy == 1, -1, 1) * (1 - zy)
    return qx * qy, mx * qy + my * qx


def fpec_dot_codes(fa, fb, x, y, acc_bits=64):
    """Compensated dot product of element codes ``x``, ``y`` (last axis): result codes
    ``(P << s) + C`` wrapped to ``acc_bits``, plus ``(P, C)`` unwrapped."""
    if fa.emb_bits != fb.emb_bits:
        raise ValueError("A and B must have the same emb_bits")
    p, c = _terms(fa, fb, x, y)
    P, C = p.sum(axis=-1), c.sum(axis=-1)
    return _wrap((P << fa.s) + C, acc_bits), P, C


def fpec_dot_value(fa, fb, x, y):
    """Value of the compensated dot product (float64): ``((P << s) + C) * 2**-(FBx+FBy+s)``."""
    _, P, C = fpec_dot_codes(fa, fb, x, y)
    return ((P << fa.s) + C) * 2.0 ** -(fa.fixed.frac_bits + fb.fixed.frac_bits + fa.s)


def _wrap(v, bits):
    v = np.asarray(v, dtype=np.int64)
    if bits >= 64:
        return v.astype(np.uint64)
    return (v & np.int64((1 << bits) - 1)).astype(np.uint64)


class FpecTwin:
    """Tile twin of the FPEC array: K x rows A codes and K x cols B codes -> rows x cols result
    codes ``(P << s) + C`` (unsigned ``acc_bits``-bit)."""

    def __init__(self, fa, fb, acc_bits):
        self.fa, self.fb, self.acc_bits = fa, fb, acc_bits

    def tile(self, a_lanes, b_lanes, mode=None):
        a = np.asarray(a_lanes, dtype=np.uint64)[:, :, None]     # K x rows x 1
        b = np.asarray(b_lanes, dtype=np.uint64)[:, None, :]     # K x 1 x cols
        p, c = _terms(self.fa, self.fb, a, b)
        return _wrap((p.sum(axis=0) << self.fa.s) + c.sum(axis=0), self.acc_bits)


def quantize_operands(kind, a, b):
    """Host side of an ``fpec`` core: float tensors A (M x K) and B (K x N) -> element codes
    for `TesseraDriver.gemm` (the quantizer of each operand's format, EZB threshold of the
    config)."""
    return kind.a_format.quantize(a), kind.b_format.quantize(b)


def result_values(kind, codes):
    """Result codes of an ``fpec`` core -> float64 values ``O * 2**-(FBx + FBy + s)``."""
    bits = kind.acc_bits
    c = np.asarray(codes, dtype=np.uint64).astype(np.int64) if bits < 64 else \
        np.asarray(codes, dtype=np.uint64).view(np.int64)
    if bits < 64:
        c = np.where(c >= 1 << (bits - 1), c - (1 << bits), c)
    return c * 2.0 ** -(kind.a_frac_bits + kind.b_frac_bits + kind.s)


def compensated_codes(fmt, values):
    """FPEC element codes (`FpecFormat` ``fmt``) of values that are a level plus an error
    estimate, as `FpecFormat.decode` and the fpec epilogue's ``decode`` give them: the level
    ``q = ceil(u - 1/2)`` of ``u = value / LSB`` (saturated to the format), the estimate the
    rest. Where the estimate is below half an LSB these are the codes the epilogue and
    `FpecFormat.quantize` wrote. A value half an LSB between two levels (every compensated
    value without EMB bits; the top EMB otherwise) has two codes, the lower level upward and
    the upper level downward; the lower level's is returned (the same value, so the same
    products with exact weights). Raises `ValueError` (one line, the first bad element) for a
    value that is no level plus an estimate of the format."""
    f = fmt.fixed
    x = np.asarray(values, dtype=np.float64)
    s = fmt.s
    u = np.ldexp(x, f.frac_bits + s)                     # units of LSB * 2**-s, exact
    ok = np.isfinite(u) & (np.floor(u) == u)
    ui = np.where(ok, u, 0).astype(np.int64)
    q = np.clip(-np.floor_divide((1 << (s - 1)) - ui, 1 << s), f.min_int, f.max_int)
    d = ui - (q << s)
    mag = np.abs(d)
    if fmt.emb_bits == 0:
        e = np.zeros_like(d)
        ok &= (mag <= 1)
    else:
        e = mag - (1 << fmt.emb_bits) - 1
        ok &= (d == 0) | ((e >= 0) & (e < (1 << fmt.emb_bits)))
    if not ok.all():
        i = int(np.flatnonzero(~ok.ravel())[0])
        raise ValueError(f"values[{i}]: {float(x.ravel()[i])!r} is not an FPEC level plus an "
                         f"error estimate of {fmt.fixed} (EMB {fmt.emb_bits} bits)")
    ezb = (d == 0).astype(np.int64)
    return fmt.pack(q, ezb, np.where(ezb == 1, 0, d < 0).astype(np.int64),
                    np.where(ezb == 1, 0, e))
