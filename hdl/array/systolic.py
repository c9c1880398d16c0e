"""Output-stationary systolic array of pluggable processing elements."""

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.array.pe import PE, PESignature


__all__ = ["SystolicArray"]


def _delay(m, sig, n, name):
    """``sig`` delayed by ``n`` register stages (``n`` may be 0)."""
    cur = sig
    for i in range(n):
        nxt = Signal.like(sig, name=f"{name}_d{i + 1}", reset_less=True)
        m.d.sync += nxt.eq(cur)
        cur = nxt
    return cur


class SystolicArray(wiring.Component):
    """``rows`` x ``cols`` output-stationary systolic array with overlapped drain.

    Activations enter on the left (``a[r]`` for row r) and move one PE to the right per cycle;
    weights enter at the top (``b[c]``) and move one PE down per cycle; input skew registers
    delay row r and column c by r and c cycles, so PE(r, c) sees operand pair k in cycle
    t_k + r + c. The control bits (``valid``/``first``/``last``) travel with the activations.
    Each PE accumulates one output element C[r, c] = sum_k a_k[r] * b_k[c].

    When a PE signals ``result_valid`` its result is copied into a shadow register, so the PE
    starts the next tile at once while the shadow registers are drained row by row: row r of
    the tile whose ``last`` pair entered in cycle t appears on ``out_data`` in cycle
    t + ``drain_latency`` + r, with ``out_valid`` high and ``out_row`` = r. Fill and drain of
    one tile overlap the next tile's compute as long as consecutive ``last`` pairs are at least
    ``min_tile_period`` = max(rows, cols) cycles apart.

    Parameters
    ----------
    rows, cols : int
        Array shape, 1..64 each.
    pe : callable
        Called with no arguments, returns a new `PE`; all PEs must share one signature.

    Members
    -------
    a : In(ArrayLayout(pe.a_shape, rows))
    b : In(ArrayLayout(pe.b_shape, cols))
    side_<name> : In(ArrayLayout(shape, rows)), for each side-band member of the PE
        Travels with the activations of its row (same skew, same registers).
    mode : In(pe.mode_shape), only for PEs with a run-time mode
        Broadcast to every PE; the engine holds it for the whole RUN.
    valid, first, last : In(1)
        Pair control, as in `PESignature`, shared by every PE; pairs come at most every
        ``pe_ii`` cycles.
    out_valid : Out(1)
    out_row : Out(range(max(rows, 2)))
    out_data : Out(ArrayLayout(pe.acc_shape, cols))
    """

    def __init__(self, *, rows, cols, pe):
        for name, value in (("rows", rows), ("cols", cols)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
                raise ValueError(f"{name} must be an integer 1..64, not {value!r}")
        if not callable(pe):
            raise TypeError(f"pe must be a callable returning a PE, not {pe!r}")
        self._rows, self._cols = rows, cols
        self._pes = [[pe() for _ in range(cols)] for _ in range(rows)]
        sig0 = self._pes[0][0].signature
        for row in self._pes:
            for p in row:
                if not isinstance(p, PE) or not isinstance(p.signature, PESignature):
                    raise TypeError(f"pe must return PE components, not {p!r}")
                if p.signature != sig0 or p.latency != self._pes[0][0].latency:
                    raise ValueError("pe must return PEs of one signature and latency")
        self._pe_latency = self._pes[0][0].latency
        self._pe_ii = self._pes[0][0].ii
        self._pe_sig = sig0
        members = {
            "a": In(data.ArrayLayout(sig0.a_shape, rows)),
            "b": In(data.ArrayLayout(sig0.b_shape, cols)),
        }
        for name, shape in sig0.side:
            members[f"side_{name}"] = In(data.ArrayLayout(shape, rows))
        if sig0.mode_shape is not None:
            members["mode"] = In(sig0.mode_shape)
        members.update({
            "valid": In(1), "first": In(1), "last": In(1),
            "out_valid": Out(1),
            "out_row": Out(range(max(rows, 2))),
            "out_data": Out(data.ArrayLayout(sig0.acc_shape, cols)),
        })
        super().__init__(members)

    @property
    def rows(self):
        return self._rows

    @property
    def cols(self):
        return self._cols

    @property
    def pe_latency(self):
        return self._pe_latency

    @property
    def pe_signature(self):
        return self._pe_sig

    @property
    def pe_ii(self):
        return self._pe_ii

    @property
    def drain_latency(self):
        """Cycles from a tile's ``last`` pair at the inputs to row 0 on ``out_data``."""
        return self._pe_latency + self._cols + 1

    @property
    def latency(self):
        """Same as `drain_latency`: a tile's ``last`` pair to its first result row."""
        return self.drain_latency

    @property
    def min_tile_period(self):
        """Minimum cycles between consecutive ``last`` pairs for fully overlapped drains."""
        return max(self._rows, self._cols)

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        ctrl = Cat(self.valid, self.first, self.last)

        sig = self._pe_sig
        side_names = [name for name, _ in sig.side]
        a_w = sig.a_shape.width
        side_ws = [shape.width for _, shape in sig.side]

        def row_input(r):
            parts = [self.a[r]]
            parts += [getattr(self, f"side_{n}")[r] for n in side_names]
            return Cat(*parts)

        def split(value):
            """``(a, {side name: value})`` from a row value carried through the array."""
            out, pos = {}, a_w
            for n, w in zip(side_names, side_ws):
                out[n] = value[pos:pos + w]
                pos += w
            return value[:a_w], out

        a_in = [_delay(m, row_input(r), r, f"a_skew{r}") for r in range(R)]
        ctrl_in = [_delay(m, ctrl, r, f"ctrl_skew{r}") for r in range(R)]
        b_in = [_delay(m, self.b[c], c, f"b_skew{c}") for c in range(C)]

        shadow = [[Signal.like(self._pes[r][c].result, name=f"shadow_{r}_{c}", reset_less=True)
                   for c in range(C)] for r in range(R)]
        for r in range(R):
            a_cur, ctrl_cur = a_in[r], ctrl_in[r]
            for c in range(C):
                pe = self._pes[r][c]
                m.submodules[f"pe_{r}_{c}"] = pe
                if r == 0:
                    b_cur = b_in[c]
                else:
                    b_cur = Signal.like(self._pes[r - 1][c].b, name=f"b_{r}_{c}",
                                        reset_less=True)
                    m.d.sync += b_cur.eq(self._pes[r - 1][c].b)
                if c > 0:
                    a_nxt = Signal.like(a_cur, name=f"a_{r}_{c}", reset_less=True)
                    ctrl_nxt = Signal(3, name=f"ctrl_{r}_{c}")
                    m.d.sync += [a_nxt.eq(a_cur), ctrl_nxt.eq(ctrl_cur)]
                    a_cur, ctrl_cur = a_nxt, ctrl_nxt
                a_val, side_vals = split(a_cur)
                m.d.comb += [getattr(pe, n).eq(v) for n, v in side_vals.items()]
                if sig.mode_shape is not None:
                    m.d.comb += pe.mode.eq(self.mode)
                m.d.comb += [
                    pe.a.eq(a_val), pe.b.eq(b_cur),
                    pe.valid.eq(ctrl_cur[0]), pe.first.eq(ctrl_cur[1]),
                    pe.last.eq(ctrl_cur[0] & ctrl_cur[2]),
                ]
                with m.If(pe.result_valid):
                    m.d.sync += shadow[r][c].eq(pe.result)

        # Row r's last PE (column C-1) captures in cycle t + r + (C-1) + L, so row r can be read
        # from the shadow registers in cycle t + L + C + r; the output register adds one cycle.
        start = _delay(m, self.valid & self.last, self._pe_latency + C, "drain_start")
        rows_view = Array(Cat(*shadow[r]) for r in range(R))
        count = Signal(range(R + 1))
        active = Signal()
        row = Signal(range(max(R, 2)))  # at least one bit: Verilog has no zero-width wires
        m.d.comb += row.eq(Mux(start, 0, count))
        with m.If(start):
            m.d.sync += [active.eq(R > 1), count.eq(1)]
        with m.Elif(active):
            m.d.sync += count.eq(count + 1)
            with m.If(count == R - 1):
                m.d.sync += active.eq(0)
        m.d.sync += [
            self.out_valid.eq(start | active),
            self.out_row.eq(row),
            self.out_data.as_value().eq(rows_view[row]),
        ]
        return m

