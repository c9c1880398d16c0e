"""Weight-stationary systolic array of signed integer MACs, accumulating at the bottom edge."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["WSArray"]


def _clog2(n):
    return (n - 1).bit_length()


def _int_in(name, value, lo, hi, what=None):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer {lo}..{hi}{what or ''}, not {value!r}")


class WSArray(wiring.Component):
    """``rows`` x ``cols`` weight-stationary systolic array of signed ``a_bits`` x ``b_bits``
    multipliers, with one wrapping accumulator (or a ring of ``acc_depth`` of them) at the
    bottom of each column.

    PE(r, c) holds the weight W[k = r, n = c] of the current tile in an *active* register and
    the next tile's in a *shadow* register. One activation vector (``a[r]`` = A[m, k = r], for
    every row r) enters per cycle; the array skews it inside (row r is delayed by r cycles),
    the activations move right one PE per cycle, partial sums move down one PE per cycle and
    each PE adds its product ``a * w`` (a registered product: a plain multiply that yosys maps
    to one ECP5 MULT18X18D, then a carry-chain add). The partial sums are exact: row r's is
    ``a_bits + b_bits + ceil(log2(r + 1))`` bits wide, so the bottom of column c gives the
    exact dot product of the vector with weight column c (``a_bits + b_bits +
    ceil(log2(rows))`` bits), which the column's edge accumulator adds into its sum.

    **Vectors.** In every cycle the host presents ``a``, ``valid``, ``first``, ``last`` and
    ``swap`` (no back-pressure; initiation interval 1). ``valid`` marks a vector the
    accumulators take; ``first`` (with ``valid``) starts a new sum (clear-and-load: the old sum
    is dropped), ``last`` (with ``valid``) ends it. ``swap`` makes the shadow weights active
    for this vector and all later ones (taken whether or not ``valid``): it travels with the
    activations' skew, so PE(r, c) copies shadow to active in the same clock edge at which it
    takes this vector's activation, i.e. exactly between the last activation of the old tile
    and the first of the new one. Without a swap the active weights stay; the shadow keeps
    its contents after a swap (a second swap re-activates the same tile).

    **Weights.** A weight tile is loaded in a *burst* of exactly ``rows`` cycles with
    ``w_valid`` high (gaps with ``w_valid`` low are allowed inside a burst; the bursts are
    counted modulo ``rows`` from reset), ``w_in[c]`` giving W[k, c] for k = rows-1 first,
    down to k = 0 last. Inside the array the shadow registers of column c shift down one row
    per ``w_valid`` (column c delayed by c cycles, like the activations of the tile's rows),
    and load cycle j of a burst shifts only rows 0..j, so row r's shadow is first written
    after row r has taken the previous swap. The contract, with T the cycle of a ``swap``
    vector and T' the cycle of the next one:

    * a burst whose tile the swap at T' activates has its first ``w_valid`` cycle at or after
      T and its last one at or before T' - 1 (a burst may start in the swap's own cycle);
    * the first tile's burst ends before the first swap.

    So a tile of M >= ``rows`` vectors follows the previous one with no bubble when its
    weights were loaded during the previous tile (`min_tile_vectors`).

    **Accumulation** (``acc_depth`` = D). Each column has a ring of D ``acc_bits`` registers
    that advances by one entry per ``valid`` vector reaching the bottom: the entry leaving the
    ring (the sum of the vector D valid vectors earlier) plus the vector's dot product (or the
    dot product alone on ``first``) enters it, modulo ``2**acc_bits`` (the repo's integer
    accumulate convention, `tessera.hdl.arith.intacc.wrap_accumulate` and ``WrapAdd``:
    two's-complement wrap, signed result). With D = 1 this is one accumulator per column,
    which sums consecutive vectors; with D = M every tile presents the same M output rows
    (vectors m = 0..M-1, all ``valid``, in the same order) and the ring accumulates each of
    them over the K tiles: ``first`` on the first K tile's vectors, ``last`` on the last's.

    **Timing.** A vector presented in cycle t reaches PE(r, c)'s activation register at the
    end of cycle t + r + c, its product register one cycle later and the bottom of column c
    in cycle t + rows + 2 + c; its sum shows on ``result[c]`` from cycle t + rows + 3 + c on.
    If it is ``last``, ``result_valid[c]`` is high in exactly that cycle t + ``latency`` + c,
    ``latency`` = rows + 3, with ``result[c]`` the finished sum as a signed ``acc_bits``
    integer. Columns come out one cycle apart (column c, c cycles after column 0; no output
    deskew). ``result[c]`` holds the last sum until the next ``valid`` vector reaches the
    bottom. Tiles follow each other with no bubble (initiation interval 1 whatever the
    swaps), provided each tile's weights were loaded in time (above): a block of D output rows
    over J K-tiles of P = max(D, rows) cycles each, its first vector (row 0's first ``a``) in
    cycle t0 and the weights of its first tile preloaded, gives column c's sums of output row
    m in cycle t0 + (J - 1) P + m + rows + 3 + c; the next block's first vector may follow in
    cycle t0 + J P.

    Parameters
    ----------
    rows : int
        K per tile, 1..32.
    cols : int
        N, 1..32.
    a_bits, b_bits : int
        Signed activation and weight widths, 2..16.
    acc_bits : int
        Edge accumulator width, ``a_bits + b_bits + ceil(log2(rows))``..48.
    acc_depth : int
        Accumulators per column (the ring, see above), 1..64.

    Members
    -------
    a : In(ArrayLayout(signed(a_bits), rows))
        One activation vector, unskewed.
    valid, first, last, swap : In(1)
        Per vector, as above.
    w_in : In(ArrayLayout(signed(b_bits), cols))
        One weight row W[k, :] of a burst, unskewed.
    w_valid : In(1)
    result : Out(ArrayLayout(signed(acc_bits), cols))
    result_valid : Out(cols)
        Bit c for column c.
    """

    def __init__(self, *, rows, cols, a_bits=8, b_bits=8, acc_bits=32, acc_depth=1):
        _int_in("rows", rows, 1, 32)
        _int_in("cols", cols, 1, 32)
        _int_in("a_bits", a_bits, 2, 16)
        _int_in("b_bits", b_bits, 2, 16)
        lo = a_bits + b_bits + _clog2(rows)
        _int_in("acc_bits", acc_bits, lo, 48, " (a_bits + b_bits + ceil(log2(rows)) at least)")
        _int_in("acc_depth", acc_depth, 1, 64)
        self._rows, self._cols = rows, cols
        self._a_bits, self._b_bits = a_bits, b_bits
        self._acc_bits, self._acc_depth = acc_bits, acc_depth
        super().__init__({
            "a": In(data.ArrayLayout(signed(a_bits), rows)),
            "valid": In(1), "first": In(1), "last": In(1), "swap": In(1),
            "w_in": In(data.ArrayLayout(signed(b_bits), cols)),
            "w_valid": In(1),
            "result": Out(data.ArrayLayout(signed(acc_bits), cols)),
            "result_valid": Out(cols),
        })

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    a_bits = property(lambda self: self._a_bits)
    b_bits = property(lambda self: self._b_bits)
    acc_bits = property(lambda self: self._acc_bits)
    acc_depth = property(lambda self: self._acc_depth)

    @property
    def psum_bits(self):
        """Width of the exact dot product at the bottom of a column."""
        return self._a_bits + self._b_bits + _clog2(self._rows)

    @property
    def latency(self):
        """Cycles from a ``last`` vector at the inputs to ``result_valid[0]`` (column c: + c)."""
        return self._rows + 3

    @property
    def min_tile_vectors(self):
        """Fewest vectors per tile for back-to-back tiles with no bubble (a weight burst)."""
        return self._rows

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        ab, bb = self._a_bits, self._b_bits

        def reg(shape, name, reset_less=True):
            return Signal(shape, name=name, reset_less=reset_less)

        # -- input skew: row r's activation delayed by r cycles; swap by r (one shared chain).
        a_skew = []
        for r in range(R):
            cur = self.a[r]
            for i in range(r):
                nxt = reg(signed(ab), f"a_sk{r}_{i}")
                m.d.sync += nxt.eq(cur)
                cur = nxt
            a_skew.append(cur)
        sw_skew = [self.swap]
        for i in range(1, R):
            nxt = reg(1, f"sw_sk{i}", reset_less=False)
            m.d.sync += nxt.eq(sw_skew[-1])
            sw_skew.append(nxt)

        # -- weight bursts: load cycle j shifts rows 0..j of column 0's shadows; column c gets
        # the same enables (and w_in[c]) c cycles later.
        wcnt = Signal(range(R), name="wcnt")
        with m.If(self.w_valid):
            m.d.sync += wcnt.eq(Mux(wcnt == R - 1, 0, wcnt + 1))
        en0 = [self.w_valid & (wcnt >= r) if r else self.w_valid for r in range(R)]
        en = [en0]                       # en[c][r]
        for c in range(1, C):
            row = [reg(1, f"wen{r}_{c}", reset_less=False) for r in range(R)]
            m.d.sync += [row[r].eq(en[c - 1][r]) for r in range(R)]
            en.append(row)
        w_top = []
        for c in range(C):
            cur = self.w_in[c]
            for i in range(c):
                nxt = reg(signed(bb), f"w_sk{c}_{i}")
                m.d.sync += nxt.eq(cur)
                cur = nxt
            w_top.append(cur)

        # -- the PEs
        a_reg = [[None] * C for _ in range(R)]
        sw_reg = [[None] * C for _ in range(R)]
        shadow = [[None] * C for _ in range(R)]
        psum = [[None] * C for _ in range(R)]
        for r in range(R):
            for c in range(C):
                a_in = a_skew[r] if c == 0 else a_reg[r][c - 1]
                sw_in = sw_skew[r] if c == 0 else sw_reg[r][c - 1]
                a = a_reg[r][c] = reg(signed(ab), f"a_{r}_{c}")
                m.d.sync += a.eq(a_in)
                if c < C - 1:
                    sw = sw_reg[r][c] = reg(1, f"sw_{r}_{c}", reset_less=False)
                    m.d.sync += sw.eq(sw_in)
                ws = shadow[r][c] = reg(signed(bb), f"ws_{r}_{c}")
                with m.If(en[c][r]):
                    m.d.sync += ws.eq(w_top[c] if r == 0 else shadow[r - 1][c])
                w = reg(signed(bb), f"w_{r}_{c}")
                with m.If(sw_in):
                    m.d.sync += w.eq(ws)
                prod = reg(signed(ab + bb), f"prod_{r}_{c}")
                m.d.sync += prod.eq(a * w)
                p = psum[r][c] = reg(signed(ab + bb + _clog2(r + 1)), f"psum_{r}_{c}")
                m.d.sync += p.eq(prod if r == 0 else psum[r - 1][c] + prod)

        # -- control to the bottom: vector control delayed rows + 2 (+ c for column c)
        ctrl = [(self.valid, self.valid & self.first, self.valid & self.last)]
        for i in range(1, R + 2 + C):
            nxt = tuple(reg(1, f"{n}_d{i}", reset_less=False) for n in ("valid", "first", "last"))
            m.d.sync += [nxt[j].eq(ctrl[-1][j]) for j in range(3)]
            ctrl.append(nxt)

        # -- edge accumulators: a ring of acc_depth registers per column. The sum is a plain
        # carry-chain add of the ring's last entry; clear-and-load on ``first`` is done by
        # clearing that entry in the edge *before* the first vector reaches the bottom (its
        # control is one register earlier in the chain): a synchronous reset of reset-less
        # registers, which maps onto the flip-flops' own set/reset input instead of a LUT per
        # bit. With one entry the ring's register cannot also show the finished sum (it may be
        # cleared in the very edge the sum is written), so ``result`` then has a register of
        # its own.
        D = self._acc_depth
        for c in range(C):
            v, _, last = ctrl[R + 2 + c]
            nv, nf, _ = ctrl[R + 1 + c]              # the vector reaching the bottom next
            ring = [reg(signed(self._acc_bits), f"acc{c}_{i}") for i in range(D)]
            total = Signal(signed(self._acc_bits), name=f"sum{c}")
            m.d.comb += total.eq(ring[-1] + psum[R - 1][c])
            for i in range(D):
                src = total if i == 0 else ring[i - 1]
                if i == D - 1:
                    with m.If(nf):
                        m.d.sync += ring[i].eq(0)
                    with m.Elif(v):
                        m.d.sync += ring[i].eq(src)
                else:
                    with m.If(v):
                        m.d.sync += ring[i].eq(src)
            if D == 1:
                out = reg(signed(self._acc_bits), f"result{c}")
                with m.If(v):
                    m.d.sync += out.eq(total)
            else:
                out = ring[0]
            rv = reg(1, f"result_valid{c}", reset_less=False)
            m.d.sync += rv.eq(last)
            m.d.comb += [self.result[c].eq(out), self.result_valid[c].eq(rv)]
        return m
