"""Fixed-point number-format descriptor shared by the HDL units and the golden model."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np


__all__ = ["FixedFormat"]


@dataclass(frozen=True)
class FixedFormat:
    """A binary fixed-point format: ``int_bits`` integer and ``frac_bits`` fraction bits.

    A code is a ``bits``-wide integer ``q`` (two's complement when ``signed``) with value
    ``q * 2**-frac_bits``. ``frac_bits`` may be negative (a step coarser than 1: the format
    ``int_bits=6, frac_bits=-2`` has 5 bits including the sign and a step of 4), so
    ``bits = signed + int_bits + frac_bits``. The quantizer rounds to the nearest level (ties
    upward, i.e. the residual ``x - value`` lies in ``[-lsb/2, +lsb/2)``) and saturates.

    This module is pure Python plus NumPy and never imports Amaranth, so the HDL units, the
    twins and the manifest all build on the same object (the `FloatFormat` pattern).

    Parameters
    ----------
    int_bits : int
        Integer bits (without the sign), -16..32.
    frac_bits : int
        Fraction bits, -16..32; negative values make the step ``2**-frac_bits`` larger than 1.
    signed : bool
        Two's complement codes with a sign bit (default) or unsigned codes.
    """
    int_bits: int
    frac_bits: int
    signed: bool = True

    def __post_init__(self):
        for name in ("int_bits", "frac_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not -16 <= v <= 32:
                raise ValueError(f"FixedFormat.{name} must be an integer in -16..32, not {v!r}")
        if not isinstance(self.signed, bool):
            raise TypeError(f"FixedFormat.signed must be a bool, not {self.signed!r}")
        if not 1 <= self.bits <= 48:
            raise ValueError(f"FixedFormat bits (signed + int_bits + frac_bits) must be in "
                             f"1..48, not {self.bits}")

    # -- derived widths ------------------------------------------------------------------------
    @property
    def bits(self):
        """Width of a code: ``signed + int_bits + frac_bits``."""
        return int(self.signed) + self.int_bits + self.frac_bits

    @property
    def lsb(self):
        """The step ``2**-frac_bits`` as an exact `Fraction`."""
        return Fraction(2) ** -self.frac_bits

    @property
    def min_int(self):
        """Smallest integer code value (``q``), e.g. -8 for 4 signed bits."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max_int(self):
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def max_value(self):
        return self.max_int * self.lsb

    @property
    def min_value(self):
        return self.min_int * self.lsb

    # -- codes ---------------------------------------------------------------------------------
    def to_code(self, q):
        """Integer values ``q`` -> unsigned ``bits``-wide codes (two's complement)."""
        q = np.asarray(q, dtype=np.int64)
        return (q & np.int64((1 << self.bits) - 1)).astype(np.uint64)

    def from_code(self, code):
        """Unsigned codes -> integer values ``q`` (sign-extended when ``signed``)."""
        c = np.asarray(code, dtype=np.uint64).astype(np.int64) & np.int64((1 << self.bits) - 1)
        if self.signed:
            c = np.where(c >= (1 << (self.bits - 1)), c - (1 << self.bits), c)
        return c

    def quantize_int(self, x):
        """Real values -> integer values ``q``: round to nearest (ties up), saturate."""
        x = np.asarray(x, dtype=np.float64)
        q = np.floor(x * 2.0 ** self.frac_bits + 0.5)
        return np.clip(q, self.min_int, self.max_int).astype(np.int64)

    def quantize(self, x):
        """Real values -> codes (`quantize_int` then `to_code`)."""
        return self.to_code(self.quantize_int(x))

    def value(self, q):
        """Integer values ``q`` -> float64 values."""
        return np.asarray(q, dtype=np.float64) * 2.0 ** -self.frac_bits

    def exact(self, q):
        """One integer value ``q`` -> its exact `Fraction` value."""
        return int(q) * self.lsb

    def as_dict(self):
        """Manifest descriptor."""
        return {"kind": "fixed", "bits": self.bits, "int_bits": self.int_bits,
                "frac_bits": self.frac_bits, "signed": self.signed}

    def __str__(self):
        return f"{'s' if self.signed else 'u'}{self.int_bits}.{self.frac_bits}"
