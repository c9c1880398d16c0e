"""Golden twin of `tessera.hdl.arith.intmac.IntMacPE`: wrapping signed integer multiply-accumulate."""

import numpy as np


__all__ = ["wrap", "to_codes", "from_codes", "mac"]


def wrap(x, bits):
    """Reduce integers ``x`` to signed ``bits``-bit two's complement (what a register holds)."""
    x = np.asarray(x, dtype=object if bits > 62 else np.int64)
    m = 1 << bits
    return ((x + (m >> 1)) % m) - (m >> 1)


def to_codes(x, bits):
    """Signed integers -> unsigned ``bits``-bit codes (the bits on a port)."""
    x = np.asarray(x, dtype=np.int64)
    return (x & ((1 << bits) - 1)).astype(np.uint64)


def from_codes(codes, bits):
    """Unsigned ``bits``-bit codes -> signed integers."""
    c = np.asarray(codes, dtype=np.int64)
    return np.where(c >= (1 << (bits - 1)), c - (1 << bits), c)


def mac(a, b, *, a_bits=8, b_bits=8, acc_bits=32):
    """Accumulate ``sum_k a[..., k] * b[..., k]`` as the PE does: exact products, wrapping sum.

    ``a`` and ``b`` are signed integers within their widths (checked); the result is the final
    accumulator value as a signed ``acc_bits`` integer. Vectorized over leading axes.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    for name, x, bits in (("a", a, a_bits), ("b", b, b_bits)):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if x.size and (x.min() < lo or x.max() > hi):
            raise ValueError(f"{name} must hold signed {bits}-bit integers {lo}..{hi}")
    # The int64 sum is exact for every shape used here (|product| < 2^62 / K); the wrap then
    # gives the same bits as a wrapping hardware accumulator (addition is associative mod 2^n).
    return wrap(np.sum(a * b, axis=-1), acc_bits)
