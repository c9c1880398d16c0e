"""Run-time precision modes of the integer family: names, element codes, a plain reference."""

import re
from dataclasses import dataclass

import numpy as np


__all__ = ["PrecisionMode", "precision_modes", "reference_matmul"]

_NAME_RE = re.compile(r"^a(\d+)([su])_w(\d+)([su])$")


@dataclass(frozen=True)
class PrecisionMode:
    """One run-time mode: activation and weight precision, each signed or unsigned.

    The name is ``a<bits><s|u>_w<bits><s|u>``, e.g. ``a8s_w8s`` (int8 x int8) or ``a2u_w4s``
    (unsigned 2-bit activations, signed 4-bit weights). An element code is the element's
    ``bits``-bit two's complement (signed) or binary (unsigned) pattern.
    """
    a_bits: int
    a_signed: bool
    b_bits: int
    b_signed: bool

    @property
    def name(self):
        return (f"a{self.a_bits}{'s' if self.a_signed else 'u'}_"
                f"w{self.b_bits}{'s' if self.b_signed else 'u'}")

    @classmethod
    def parse(cls, name):
        """The mode named ``name`` (``ValueError`` if it does not follow the grammar)."""
        m = _NAME_RE.match(name) if isinstance(name, str) else None
        if not m:
            raise ValueError(f"mode must be a name like 'a8s_w4u', not {name!r}")
        return cls(int(m[1]), m[2] == "s", int(m[3]), m[4] == "s")

    @staticmethod
    def _range(bits, signed):
        return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)

    @property
    def a_range(self):
        """``(lo, hi)`` of an activation value."""
        return self._range(self.a_bits, self.a_signed)

    @property
    def b_range(self):
        """``(lo, hi)`` of a weight value."""
        return self._range(self.b_bits, self.b_signed)

    @staticmethod
    def _decode(codes, bits, signed):
        c = np.asarray(codes, dtype=np.int64) & ((1 << bits) - 1)
        return np.where(c >= (1 << (bits - 1)), c - (1 << bits), c) if signed else c

    def decode_a(self, codes):
        """Activation codes -> integer values."""
        return self._decode(codes, self.a_bits, self.a_signed)

    def decode_b(self, codes):
        """Weight codes -> integer values."""
        return self._decode(codes, self.b_bits, self.b_signed)

    def encode_a(self, values):
        """Activation values (within `a_range`) -> codes."""
        return (np.asarray(values, dtype=np.int64) & ((1 << self.a_bits) - 1)).astype(np.uint64)

    def encode_b(self, values):
        """Weight values (within `b_range`) -> codes."""
        return (np.asarray(values, dtype=np.int64) & ((1 << self.b_bits) - 1)).astype(np.uint64)


def precision_modes(a_bits, b_bits):
    """Every mode over the given precisions, signed before unsigned: the code order."""
    return tuple(PrecisionMode(a, sa, b, sb) for a in a_bits for b in b_bits
                 for sa in (True, False) for sb in (True, False))


def reference_matmul(mode, a_codes, b_codes, acc_bits):
    """``A @ B`` of the decoded values, exact in int64 (|element| <= 255, so any K below 2**46
    is exact), wrapped to ``acc_bits`` two's complement codes. Plain integer arithmetic: it
    shares nothing with the twins or the HDL."""
    a = mode.decode_a(a_codes)
    b = mode.decode_b(b_codes)
    if a.shape[1] >= 1 << 46:
        raise ValueError(f"K={a.shape[1]} is too long for an exact int64 sum")
    exact = a @ b
    if acc_bits >= 64:
        return exact.astype(np.uint64)
    return (exact & ((1 << acc_bits) - 1)).astype(np.uint64)
