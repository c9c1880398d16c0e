"""Golden twin of `tessera.hdl.arith.ternary_tree`: ternary class sums and scaled dot products."""

import numpy as np

from tessera.sim.intmac import wrap


__all__ = ["sum_bits", "accum_bits", "tree_sums", "dot"]


def sum_bits(inputs, act_bits):
    """Exact width of a sum of ``inputs`` unsigned ``act_bits``-bit activations.

    ``bit_length(inputs * (2**act_bits - 1))``: the width of ``TernaryTree.sp``/``sn``.
    """
    for name, value in (("inputs", inputs), ("act_bits", act_bits)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return (inputs * ((1 << act_bits) - 1)).bit_length()


def accum_bits(acc_bits):
    """Width of `TernaryDot`'s two accumulators: ``acc_bits``.

    They wrap modulo ``2**acc_bits``, and ``(wp * S) mod 2**acc_bits`` depends only on
    ``S mod 2**acc_bits``, so `dot` (exact class sums) is bit-exact with the hardware for a dot
    product of any length.
    """
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 1 <= acc_bits <= 64:
        raise ValueError(f"acc_bits must be an integer 1..64, not {acc_bits!r}")
    return acc_bits


def _operands(a, w):
    a = np.asarray(a)
    w = np.asarray(w)
    if a.dtype.kind not in "iub" or w.dtype.kind not in "iub":
        raise ValueError("a and w must be integer arrays")
    if a.size and a.min() < 0:
        raise ValueError("a must hold unsigned activation codes (>= 0)")
    if w.size and (w.min() < 0 or w.max() > 3):
        raise ValueError("w must hold 2-bit weight codes 0..3")
    return a.astype(np.int64), w.astype(np.int64)


def tree_sums(a, w):
    """Class sums of one word, as `TernaryTree` computes them.

    ``a`` holds unsigned activations and ``w`` 2-bit weight codes, both ``(..., inputs)``
    (broadcast against each other). Returns ``(sp, sn)``, int64 arrays of shape ``(...)``:
    ``sp`` sums the activations whose code is 0b01, ``sn`` those whose code is 0b11; codes
    0b00 and 0b10 contribute nothing (the hardware treats 0b10 as zero).
    """
    a, w = _operands(a, w)
    sp = np.where(w == 0b01, a, 0).sum(axis=-1)
    sn = np.where(w == 0b11, a, 0).sum(axis=-1)
    return sp, sn


def dot(a_words, w_words, wp, wn, acc_bits=32):
    """Result of one `TernaryDot` dot product over a sequence of words.

    ``a_words``/``w_words`` are ``(..., words, inputs)``: activations and weight codes of each
    word, first to last. ``wp``/``wn`` are the unsigned scales sampled with the last word
    (scalars or arrays broadcasting against ``(...)``). Returns
    ``(wp * S_p - wn * S_n) mod 2**acc_bits`` as signed int64, with ``S_p``/``S_n`` the class
    sums over all words: bit-exact with `TernaryDot` for any number of words (its accumulators
    wrap modulo ``2**acc_bits``, which does not change the wrapped result; see `accum_bits`).
    """
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 1 <= acc_bits <= 64:
        raise ValueError(f"acc_bits must be an integer 1..64, not {acc_bits!r}")
    a, w = _operands(a_words, w_words)
    if a.ndim < 2 or w.ndim < 2:
        raise ValueError("a_words and w_words must be (..., words, inputs)")
    sp, sn = tree_sums(a, w)
    # Per-word sums are < 2**24 (256 inputs x 16-bit codes), so int64 sums are exact up to
    # 2**39 words.
    sp, sn = sp.sum(axis=-1), sn.sum(axis=-1)
    wp = np.asarray(wp)
    wn = np.asarray(wn)
    for name, x in (("wp", wp), ("wn", wn)):
        if x.dtype.kind not in "iub" or (x.size and x.min() < 0):
            raise ValueError(f"{name} must hold unsigned integer scale codes")
    # uint64 arithmetic is arithmetic modulo 2**64, which determines the result modulo
    # 2**acc_bits for every acc_bits <= 64; 1-d arrays keep NumPy from warning on the
    # (intended) wrap-around of scalar operations.
    shape = np.broadcast_shapes(sp.shape, wp.shape, wn.shape)

    def u64(x):
        return np.broadcast_to(x, shape).reshape(-1).astype(np.uint64)
    r = u64(wp) * u64(sp) - u64(wn) * u64(sn)
    return wrap(r.view(np.int64), acc_bits).reshape(shape)
