"""Golden twin of `tessera.hdl.arith.intmac.IntMacPE`: wrapping signed integer MAC."""

import numpy as np


__all__ = ["wrap", "to_codes", "from_codes", "mac"]


def wrap(x, bits):
    """Reduce integers ``x`` to signed ``bits``-bit two's complement (what a register holds).

    ``bits`` is 1..64. An int64 array is taken as already reduced modulo 2**64 (NumPy integer
    arithmetic wraps), so the result is exact for any sum of products computed in int64;
    Python ints of any size (an object array) are reduced exactly. Returns int64.
    """
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be 1..64, not {bits!r}")
    x = np.asarray(x)
    if x.dtype == object or x.dtype.kind not in "iub":
        m = 1 << bits
        r = np.asarray(((x + (m >> 1)) % m) - (m >> 1), dtype=object)
        return r.astype(np.int64)
    u = np.asarray(x, dtype=np.int64).astype(np.uint64)
    shift = np.uint64(64 - bits)
    return (u << shift).view(np.int64) >> np.int64(64 - bits)


def to_codes(x, bits):
    """Signed integers -> unsigned ``bits``-bit codes (the bits on a port); ``bits`` 1..64."""
    x = np.asarray(x)
    if x.dtype == object:
        x = wrap(x, 64)
    u = np.asarray(x, dtype=np.int64).astype(np.uint64)
    if bits < 64:
        u &= np.uint64((1 << bits) - 1)
    return u


def from_codes(codes, bits):
    """Unsigned ``bits``-bit codes -> signed integers (int64); ``bits`` 1..64."""
    c = np.asarray(codes).astype(np.uint64)
    shift = np.uint64(64 - bits)
    return (c << shift).view(np.int64) >> np.int64(64 - bits)


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
    # Products of at most 32 x 32 bits are exact in int64; their sum wraps modulo 2**64, which
    # for acc_bits <= 64 gives the same bits as a wrapping hardware accumulator (addition is
    # associative modulo 2**acc_bits), 64-bit accumulators included.
    return wrap(np.sum(a * b, axis=-1), acc_bits)
