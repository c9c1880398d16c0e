"""The GEMM engine's chain writer: a RUN's epilogue rows, transposed into the next layer's A."""

from amaranth import Array, Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["TransposeChain"]


class TransposeChain(wiring.Component):
    """Lays a chaining RUN's epilogue words out as the next layer's A words.

    The output-stationary engine's result words are array rows: tile (mi, ni) of a RUN gives
    ``rows`` consecutive words, word r holding ``Y[m0 + mi*rows + r, n0 + ni*cols + c]`` in
    lane c. The next layer reads A words of ``rows`` lanes, one per output row, at one K index:
    ``A[base + mi*stride + kk][r]`` with ``kk`` the previous layer's output channel. So a
    tile's ``rows`` words are collected and written out as ``cols`` words, word c (lane r =
    row r's lane c) at ``chain_base + mi*chain_stride + ni*cols + c``; ``chain_base`` and
    ``chain_stride`` are RUN fields, the tiles come m-tile outer, n-tile inner (``n_tiles``
    per m-tile), rows in order.

    Timing: the word of a tile's last row arrives in cycle t; its ``cols`` words go out in
    cycles t+1 .. t+cols while the next tile fills the other buffer (the engine issues a tile
    every ``max(k*ii, rows, cols)`` cycles, so a tile's words never wait for the previous
    tile's). ``idle`` falls with the first row of a tile and rises after its last word: a
    chaining RUN ends ``cols`` cycles after one that does not chain.

    Parameters
    ----------
    rows, cols : int
        Array shape.
    lane_bits : int
        Bits of an output (epilogue) lane = bits of an A lane.
    depth : int
        Words per bank of store A.
    args : ArgLayout
        The engine's RUN layout (``chain_base``, ``chain_stride``, ``n_tiles``).

    Members
    -------
    start : In(1)
        The RUN starts: ``args`` valid.
    args : In(8 * args.nbytes)
    i_en : In(1)
    i_data : In(cols * lane_bits)
        An epilogue word (one result row), in order.
    o_en : Out(1)
    o_addr : Out(range(depth))
    o_data : Out(rows * lane_bits)
    idle : Out(1)
    """

    def __init__(self, *, rows, cols, lane_bits, depth, args):
        self._rows, self._cols, self._bits, self._depth = rows, cols, lane_bits, depth
        self._args = args
        super().__init__({
            "start": In(1), "args": In(max(1, 8 * args.nbytes)),
            "i_en": In(1), "i_data": In(cols * lane_bits),
            "o_en": Out(1), "o_addr": Out(range(depth)), "o_data": Out(rows * lane_bits),
            "idle": Out(1),
        })

    def _field(self, name):
        lo, hi = self._args.bit_slice(name)
        return self.args[lo:hi]

    def elaborate(self, platform):
        m = Module()
        R, C, w = self._rows, self._cols, self._bits
        fill = [Signal(C * w, name=f"fill{r}", reset_less=True) for r in range(R - 1)]
        emit = [Signal(C * w, name=f"emit{r}", reset_less=True) for r in range(R)]
        row = Signal(range(max(R, 2)))
        col = Signal(range(max(C, 2)))
        emitting = Signal()
        stride = Signal(16)
        nt = Signal(16)
        ni = Signal(16)
        row_base = Signal(17)          # chain_base + mi * stride
        tile_base = Signal(17)         # row_base + ni * cols
        emit_base = Signal(17)
        # First, so that a tile completing in the cycle the previous one's last word goes out
        # starts its own words (the statements below win).
        with m.If(emitting):
            m.d.sync += col.eq(col + 1)
            with m.If(col == C - 1):
                m.d.sync += emitting.eq(0)
        with m.If(self.start):
            m.d.sync += [stride.eq(self._field("chain_stride")), nt.eq(self._field("n_tiles")),
                         ni.eq(0), row_base.eq(self._field("chain_base")),
                         tile_base.eq(self._field("chain_base")), row.eq(0)]
        with m.Elif(self.i_en):
            with m.If(row == R - 1):
                m.d.sync += [row.eq(0), emitting.eq(1), col.eq(0), emit_base.eq(tile_base)]
                m.d.sync += [e.eq(f) for e, f in zip(emit, fill)]
                m.d.sync += emit[R - 1].eq(self.i_data)
                # The next tile: ni + 1, or the next m-tile's row of A words.
                with m.If(ni == nt - 1):
                    m.d.sync += [ni.eq(0), row_base.eq(row_base + stride),
                                 tile_base.eq(row_base + stride)]
                with m.Else():
                    m.d.sync += [ni.eq(ni + 1), tile_base.eq(tile_base + C)]
            with m.Else():
                m.d.sync += row.eq(row + 1)
                for r in range(R - 1):
                    with m.If(row == r):
                        m.d.sync += fill[r].eq(self.i_data)
        lanes = [Array(e[c * w:(c + 1) * w] for c in range(C)) for e in emit]
        m.d.comb += [self.o_en.eq(emitting), self.o_addr.eq(emit_base + col),
                     self.o_data.eq(Cat(*(ln[col] for ln in lanes))),
                     self.idle.eq(~emitting & (row == 0))]
        return m
