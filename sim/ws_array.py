"""Golden twin of `tessera.hdl.array.ws.WSArray`, a GEMM schedule for it, and an independent
reference.

`WSArrayTwin` follows the array's contract (its docstring), not its registers: weight bursts
fill a shadow tile, a ``swap`` vector activates it, each vector's dot products enter each
column's accumulator ring, and a vector's sum shows on ``result[c]`` from cycle
t + ``rows`` + 3 + c (``result_valid[c]`` in that cycle if it is ``last``). It gives both ports
in every cycle, so the RTL is compared with it cycle for cycle, and it rejects input streams
that break the weight-burst contract (the RTL's output would then be undefined).

`gemm_schedule` turns ``A @ W`` into a cycle-by-cycle input stream (tiles back to back, each
tile's weights loaded during the previous one), `gemm_results` reads the product back from the
output ports, and `reference` is NumPy's int64 matmul wrapped to ``acc_bits``.
"""

import numpy as np

from tessera.sim.intmac import wrap


__all__ = ["WSArrayTwin", "gemm_schedule", "gemm_results", "reference", "idle"]


def _wrap_int(x, bits):
    m = 1 << bits
    return ((x + (m >> 1)) % m) - (m >> 1)


def idle(rows, cols):
    """One cycle of inputs with nothing presented."""
    return {"a": [0] * rows, "valid": 0, "first": 0, "last": 0, "swap": 0,
            "w_in": [0] * cols, "w_valid": 0}


class WSArrayTwin:
    """Port-level twin of `WSArray` (same parameters, unchecked: the HDL checks them)."""

    def __init__(self, *, rows, cols, a_bits=8, b_bits=8, acc_bits=32, acc_depth=1):
        self.rows, self.cols = rows, cols
        self.a_bits, self.b_bits = a_bits, b_bits
        self.acc_bits, self.acc_depth = acc_bits, acc_depth

    @property
    def latency(self):
        return self.rows + 3

    def run(self, cycles, tail=None):
        """Outputs for the input stream ``cycles`` (a list of dicts as `idle` gives), followed
        by ``tail`` idle cycles (default: enough to drain, ``latency + cols``).

        Returns
        -------
        result : ndarray, int64, (cycles, cols)
            ``result[c]`` in each cycle (signed).
        result_valid : ndarray, int64, (cycles, cols)

        Raises
        ------
        ValueError
            If the stream breaks the weight-burst contract (a swap while a burst is under way)
            or an operand is out of range.
        """
        R, C = self.rows, self.cols
        tail = self.latency + C if tail is None else tail
        n = len(cycles) + tail
        a_lo, a_hi = -(1 << (self.a_bits - 1)), (1 << (self.a_bits - 1)) - 1
        b_lo, b_hi = -(1 << (self.b_bits - 1)), (1 << (self.b_bits - 1)) - 1
        active = [[0] * C for _ in range(R)]
        shadow = [[0] * C for _ in range(R)]
        burst = []                           # weight rows pushed by the burst under way
        rings = [[0] * self.acc_depth for _ in range(C)]
        result = np.zeros((n, C), dtype=np.int64)
        result_valid = np.zeros((n, C), dtype=np.int64)
        shown = [0] * C                       # result[c] since the last ring update
        updates = {}                          # cycle -> [(c, value, last)]
        for t in range(n):
            x = cycles[t] if t < len(cycles) else idle(R, C)
            for c, value, last in updates.pop(t, ()):
                shown[c] = value
                result_valid[t, c] = last
            result[t] = shown
            if x["swap"]:
                if burst:
                    raise ValueError(f"cycle {t}: swap while a weight burst is under way "
                                     f"({len(burst)} of {R} rows loaded)")
                active = [row[:] for row in shadow]
            if x["valid"]:
                a = [int(v) for v in x["a"]]
                if min(a) < a_lo or max(a) > a_hi:
                    raise ValueError(f"cycle {t}: activation out of {self.a_bits}-bit range")
                for c in range(C):
                    dot = sum(a[r] * active[r][c] for r in range(R))
                    ring = rings[c]
                    value = _wrap_int((0 if x["first"] else ring[-1]) + dot, self.acc_bits)
                    rings[c] = [value] + ring[:-1]
                    updates.setdefault(t + self.latency + c, []).append(
                        (c, value, int(bool(x["last"]))))
            if x["w_valid"]:
                w = [int(v) for v in x["w_in"]]
                if min(w) < b_lo or max(w) > b_hi:
                    raise ValueError(f"cycle {t}: weight out of {self.b_bits}-bit range")
                burst.append(w)
                if len(burst) == R:          # pushed k = R-1 first, k = 0 last
                    shadow = [burst[R - 1 - k] for k in range(R)]
                    burst = []
        return result, result_valid


def gemm_schedule(a, w, *, rows, acc_depth, gap=0):
    """The input stream computing ``a @ w`` on a ``rows`` x ``w.shape[1]`` array.

    ``a`` (M x K) and ``w`` (K x N) are signed integers; K is padded with zeros to a multiple
    of ``rows`` (J tiles) and M to a multiple of ``acc_depth`` = D (blocks of D output rows).
    Each block runs its J K-tiles back to back: every tile presents the block's D vectors
    (``swap`` on the first, ``first`` on the first tile's, ``last`` on the last's), followed
    by ``max(0, rows - D) + gap`` idle cycles; each tile's weight burst runs in the first
    ``rows`` cycles of the previous tile (the first tile's before it).

    Returns
    -------
    list of dict
        One dict of inputs per cycle (see `idle`).
    """
    a = np.asarray(a, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    M, K = a.shape
    N = w.shape[1]
    R, D = rows, acc_depth
    J = max(1, -(-K // R))
    Mp = -(-M // D) * D
    ap = np.zeros((Mp, J * R), dtype=np.int64)
    ap[:M, :K] = a
    wp = np.zeros((J * R, N), dtype=np.int64)
    wp[:K] = w
    tiles = [(b, j) for b in range(Mp // D) for j in range(J)]
    period = max(D, R) + gap
    start = R                                 # cycle of tile 0's first vector
    cycles = [idle(R, N) for _ in range(start + len(tiles) * period)]

    def load(t0, j):
        for i in range(R):                    # k = R-1 first
            cyc = cycles[t0 + i]
            cyc["w_valid"] = 1
            cyc["w_in"] = [int(v) for v in wp[j * R + R - 1 - i]]

    for n, (b, j) in enumerate(tiles):
        t0 = start + n * period
        load(t0 - (R if n == 0 else period), j)
        for i in range(D):
            cyc = cycles[t0 + i]
            cyc.update(a=[int(v) for v in ap[b * D + i, j * R:(j + 1) * R]], valid=1,
                       first=int(j == 0), last=int(j == J - 1), swap=int(i == 0))
    return cycles


def gemm_results(result, result_valid, m):
    """The first ``m`` rows of the product from the output ports: column c's ``last`` sums in
    order are rows 0, 1, ... of column c. Returns an int64 array (m x cols)."""
    result = np.asarray(result)
    result_valid = np.asarray(result_valid)
    cols = result.shape[1]
    out = np.zeros((m, cols), dtype=np.int64)
    for c in range(cols):
        vals = result[result_valid[:, c] == 1, c]
        if len(vals) < m:
            raise ValueError(f"column {c}: {len(vals)} results, expected at least {m}")
        out[:, c] = vals[:m]
    return out


def reference(a, w, acc_bits):
    """``a @ w`` in int64, wrapped to signed ``acc_bits``: the independent reference of the
    array's results (exact for any K: int64 arithmetic wraps modulo 2**64, and ``acc_bits`` is
    at most 48, so the low ``acc_bits`` bits are those of the exact product)."""
    return wrap(np.asarray(a, dtype=np.int64) @ np.asarray(w, dtype=np.int64), acc_bits)
