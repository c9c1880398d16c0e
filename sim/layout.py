"""Scratchpad word layouts: packing lanes into words and words into host bytes."""

import numpy as np


__all__ = ["pack_words", "unpack_words", "tile_a", "tile_b", "untile_c", "empty_stores"]


def pack_words(lanes, lane_bits):
    """Pack ``lanes`` (n_words x n_lanes unsigned codes) into little-endian word bytes.

    Lane 0 sits in the least significant bits; a word takes ceil(n_lanes*lane_bits/8) bytes.
    """
    lanes = np.asarray(lanes)
    n_words, n_lanes = lanes.shape
    nbytes = (n_lanes * lane_bits + 7) // 8
    out = bytearray()
    mask = (1 << lane_bits) - 1
    for w in range(n_words):
        word = 0
        for ln in range(n_lanes):
            word |= (int(lanes[w, ln]) & mask) << (ln * lane_bits)
        out += word.to_bytes(nbytes, "little")
    return bytes(out)


def unpack_words(data, n_lanes, lane_bits):
    """Inverse of `pack_words`: bytes -> (n_words x n_lanes) unsigned codes (uint64)."""
    nbytes = (n_lanes * lane_bits + 7) // 8
    if len(data) % nbytes:
        raise ValueError(f"data length {len(data)} is not a multiple of the word size {nbytes}")
    n_words = len(data) // nbytes
    out = np.zeros((n_words, n_lanes), dtype=np.uint64)
    mask = (1 << lane_bits) - 1
    for w in range(n_words):
        word = int.from_bytes(data[w * nbytes:(w + 1) * nbytes], "little")
        for ln in range(n_lanes):
            out[w, ln] = (word >> (ln * lane_bits)) & mask
    return out


def tile_a(a, rows):
    """Activations ``a`` (M x K codes, M a multiple of ``rows``) -> scratchpad-A words.

    Word ``mi*K + k`` holds ``a[mi*rows + r, k]`` in lane r: an m-tile's K words are contiguous.
    """
    m, k = a.shape
    return a.reshape(m // rows, rows, k).transpose(0, 2, 1).reshape(m // rows * k, rows)


def tile_b(b, cols):
    """Weights ``b`` (K x N codes, N a multiple of ``cols``) -> scratchpad-B words.

    Word ``ni*K + k`` holds ``b[k, ni*cols + c]`` in lane c.
    """
    k, n = b.shape
    return b.reshape(k, n // cols, cols).transpose(1, 0, 2).reshape(n // cols * k, cols)


def untile_c(words, m_tiles, n_tiles, rows, cols):
    """Scratchpad-C words of a RUN -> the (m_tiles*rows) x (n_tiles*cols) result matrix.

    Word ``(mi*n_tiles + ni)*rows + r`` holds row ``mi*rows + r``, columns ``ni*cols + c``.
    """
    w = np.asarray(words).reshape(m_tiles, n_tiles, rows, cols)
    return w.transpose(0, 2, 1, 3).reshape(m_tiles * rows, n_tiles * cols)


def empty_stores(geometry):
    """Zeroed stores for a geometry: {name: words x lanes uint64 codes} (every bank)."""
    return {s.name: np.zeros((s.words, s.lanes), dtype=np.uint64) for s in geometry.stores}


def bank_views(geometry, stores, banks):
    """The banks a RUN uses: {name: depth x lanes view of ``stores[name]``}, bank bit i of
    ``banks`` for store i (writes through the views land in ``stores``)."""
    return {s.name: stores[s.name][(banks >> s.id & 1) * s.depth:
                                   ((banks >> s.id & 1) + 1) * s.depth]
            for s in geometry.stores}
