"""Weight-stationary systolic GEMM engine: argument check, pass loop, weight bursts and the
array; the output stage is the accumulator store."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.array.ws_gemm import WSGemmArray
from tessera.hdl.engine.base import EngineControlSignature, ResultSignature, StorePortSignature
from tessera.hdl.engine.check import Rooms, SerialProducts, argument_check, drive_lanes
from tessera.hdl.engine.params import FLAG_ACCUMULATE, FLAG_EPILOGUE


__all__ = ["GemmWSEngine"]


class GemmWSEngine(wiring.Component):
    """Executes GEMM RUNs on a weight-stationary `WSGemmArray`.

    A RUN computes, for every n-tile ``ni < n_tiles`` and output row ``mm < m``,
    ``C[c_base + ni*m + mm] (+)= sum_{kt<k_tiles} sum_{r<rows} A[a_base + kt*m + mm][r] (x)
    B[b_base + (ni*k_tiles + kt)*rows + r][c]``: an A word holds one output row's ``rows``
    activation lanes of one K tile, a B word one K step's ``cols`` weight lanes (the
    output-stationary engine's B layout), a C word one output row's ``cols`` results.

    **Passes.** The RUN is ``n_tiles * k_tiles`` passes (n-tile outer, K tile inner); a pass
    streams its ``m`` A words through the array under one weight tile, one every ``ii(mode)``
    cycles (1 but for kinds whose pair takes several cycles), and
    sends each vector's column sums to the output stage as a word: the first K tile's words
    replace the stored ones (or, with ``FLAG_ACCUMULATE``, combine with them), every later K
    tile's words combine, so the result store is the accumulator (the PE kind's combiner, a
    wrapping add). The last K tile's words carry ``FLAG_EPILOGUE``. The weight tile of the
    next pass is read from B (``rows`` words, k = rows-1 first) during the current one; the
    first pass's is read before it. A pass takes ``P = max(m ii, rows, 2 + acc_latency)``
    cycles (``acc_latency``: the output stage's extra cycles for a combining word), so a
    combining word never reads a word still in flight; the last pass of an n-tile before a
    replacing pass takes ``max(P, m ii + acc_latency)``, so a replacing write never meets a
    combining one (`tessera.hdl.engine.params.ws_periods`).

    Store reads are registered as in `GemmOSEngine`: a vector or weight row reaches the array
    2 cycles after its read. The cycle model is `tessera.sim.engines.gemm_ws.cycle_model`.

    Parameters
    ----------
    rows, cols : int
        Array shape.
    parts : callable
        Returns a new parts provider of the PE kind (`tessera.hdl.array.parts`).
    args : ArgLayout
        Fields ``m``, ``n_tiles``, ``k_tiles``, ``a_base``, ``b_base``, ``c_base``, ``flags``
        and, for parts with a run-time mode, ``mode``; with an epilogue ``p_base`` and its own.
    depths : tuple of 3 int
        Depths of stores A, B and C.
    ii : tuple of int or None
        Cycles between vectors in each run-time mode (None: 1 in every mode); above 1 only
        for parts that read the pair's valid (`tessera.hdl.array.parts.Parts.uses_valid`).
    acc_latency : int or None
        The output stage's extra cycles for a combining word
        (`tessera.hdl.engine.params.accumulate_latency`); None: the kind cannot combine.
    modes : int
        Number of run-time modes (a ``mode`` argument at or above it is an `Err.ARG`).
    epilogue : Epilogue or None
    p_depth : int
        Depth of the epilogue parameter store (0: no epilogue).

    Members
    -------
    ctl : In(EngineControlSignature(args.nbytes * 8))
    a_port : Out(StorePortSignature(depths[0], rows * a lane bits, write=False))
    b_port : Out(StorePortSignature(depths[1], cols * b lane bits, write=False))
    result : Out(ResultSignature(depths[2], cols * acc bits))
    """

    def __init__(self, *, rows, cols, parts, args, depths, acc_latency, modes=0, ii=None,
                 epilogue=None, p_depth=0):
        self._array = WSGemmArray(rows=rows, cols=cols, parts=parts)
        n = max(modes, 1)
        self._iis = tuple(ii) if ii is not None else (1,) * n
        if len(self._iis) != n or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                      for v in self._iis):
            raise ValueError(f"ii must give a positive int for each of the {n} modes, not {ii!r}")
        if max(self._iis) > 1 and not self._array.pe_parts_use_valid:
            raise ValueError("ii > 1 needs parts that read the pair's valid (uses_valid)")
        self._rows, self._cols = rows, cols
        self._args = args
        self._depths = tuple(depths)
        if acc_latency is not None and (not isinstance(acc_latency, int) or acc_latency < 0):
            raise ValueError(f"acc_latency must be None or an int >= 0, not {acc_latency!r}")
        self._acc_latency = acc_latency
        self._p_depth = p_depth if epilogue is not None else 0
        self._epilogue = epilogue
        self._modes = modes
        names = {f.name for f in args.fields}
        need = {"m", "n_tiles", "k_tiles", "a_base", "b_base", "c_base", "flags"}
        if self._p_depth:
            need.add("p_base")
        if not need <= names:
            raise ValueError(f"args must have the fields {sorted(need)}, not {sorted(names)}")
        members = self._array.signature.members
        if "mode" in members and "mode" not in names:
            raise ValueError("parts with a run-time mode need a 'mode' argument field")
        self._side = [(name, members[f"side_{name}"].shape.elem_shape.width)
                      for name, _ in self._array.pe_signature.side]
        self._a_bits = members["a"].shape.elem_shape.width
        a_bits = self._a_bits + sum(w for _, w in self._side)
        b_bits = members["w_in"].shape.elem_shape.width
        acc_bits = members["out_data"].shape.elem_shape.width
        da, db, dc = self._depths
        super().__init__({
            "ctl": In(EngineControlSignature(8 * args.nbytes)),
            "a_port": Out(StorePortSignature(depth=da, width=rows * a_bits, write=False)),
            "b_port": Out(StorePortSignature(depth=db, width=cols * b_bits, write=False)),
            "result": Out(ResultSignature(depth=dc, width=cols * acc_bits)),
        })

    @property
    def epilogue(self):
        return self._epilogue

    @property
    def p_depth(self):
        return self._p_depth

    @property
    def array_latency(self):
        return self._array.latency

    def _field(self, value, name):
        lo, hi = self._args.bit_slice(name)
        return value[lo:hi]

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        da, db, dc = self._depths
        AL = self._acc_latency or 0
        m.submodules.array = array = self._array
        args = self.ctl.args

        mm_n, nt, kt_n = Signal(16), Signal(16), Signal(16)
        a_base, b_base, c_base = Signal(16), Signal(16), Signal(16)
        flags = Signal(8)
        acc_mode, epi_mode = Signal(), Signal()
        # A: k_tiles*m words; B: n_tiles*k_tiles*rows; C: n_tiles*m. With rows a power of
        # two the B words are (n_tiles*k_tiles) shifted, else (n_tiles*rows)*k_tiles.
        pow2 = R & (R - 1) == 0
        prods = SerialProducts(3, bits=32 if pow2 else [32, 40, 32])
        a_words, passes_x, c_words = prods.products
        b_words = passes_x * R if pow2 else passes_x
        # Control from registered flags and counters only (no subtract-and-compare of RUN
        # fields on a cycle's path): the pass's cycles left, whether it issues a vector or
        # reads a weight row, whether its K tile / n-tile is the last.
        pm1, pgm1 = Signal(17), Signal(17)   # P - 1 and P_gap - 1 (ws_periods)
        m_m1, m_m2, kt_m2, nt_m1, nt_m2 = (Signal(17, name=n) for n in
                                           ("m_m1", "m_m2", "kt_m2", "nt_m1", "nt_m2"))
        single_kt, gap_mode = Signal(), Signal()
        t = Signal(17)               # cycle within the current pass (the A offset)
        left = Signal(17)            # cycles of the pass after this one
        issuing, reading = Signal(), Signal()
        kt, ni = Signal(16), Signal(16)
        last_kt, last_ni = Signal(), Signal()
        a_row = Signal(17)           # A word of the pass's first vector
        b_next = Signal(17)          # B word after the next weight tile's (bursts read down)
        burst = Signal(range(R + 1))
        # The output side: the next result word's row, K tile and n-tile, and its address.
        o_mm, o_kt, o_ni = Signal(16), Signal(16), Signal(16)
        o_last_mm, o_last_kt, o_first_kt = Signal(), Signal(), Signal()
        c_ptr, c_tile = Signal(range(dc)), Signal(range(dc + 1))
        finished = Signal()

        if "mode" in array.signature.members:
            lo, hi = self._args.bit_slice("mode")
            mode = Signal(hi - lo, name="mode")
            m.d.comb += array.mode.eq(mode)
        else:
            mode = None

        issue = Signal()             # a vector read this cycle
        swap = Signal()
        wread = Signal()             # a weight row read this cycle
        m.d.comb += [
            self.a_port.r_addr.eq(a_row + t), self.a_port.r_en.eq(issue),
            self.b_port.r_addr.eq(b_next - 1 - burst), self.b_port.r_en.eq(wread),
        ]
        # Registered reads, as in the OS engine: data and control reach the array 2 cycles
        # after the read.
        v1, s1, w1 = Signal(), Signal(), Signal()
        m.d.sync += [v1.eq(issue), s1.eq(issue & swap), w1.eq(wread),
                     array.valid.eq(v1), array.swap.eq(s1), array.w_valid.eq(w1)]
        a_q = Signal.like(self.a_port.r_data, name="a_q", reset_less=True)
        b_q = Signal.like(self.b_port.r_data, name="b_q", reset_less=True)
        m.d.sync += [a_q.eq(self.a_port.r_data), b_q.eq(self.b_port.r_data)]
        drive_lanes(m, array, a_q, lanes=R, a_bits=self._a_bits, side=self._side)
        m.d.comb += array.w_in.as_value().eq(b_q)

        allowed = (FLAG_ACCUMULATE if self._acc_latency is not None else 0) | (
            (FLAG_EPILOGUE | self._epilogue.flag_mask()) if self._p_depth else 0)
        bad_arg = (mm_n == 0) | (nt == 0) | (kt_n == 0) | (flags & ~allowed & 0xFF).any()
        if self._acc_latency is None:      # no combiner: a RUN cannot span K tiles
            bad_arg = bad_arg | (kt_n > 1)
        if mode is not None:
            bad_arg = bad_arg | (mode >= max(1, self._modes))
        rooms = Rooms([(n, self._field(args, f"{n}_base"), d)
                       for n, d in (("a", da), ("b", db), ("c", dc))])
        bad_tile = (rooms.exceeds("a", a_words) | rooms.exceeds("b", b_words)
                    | rooms.exceeds("c", c_words))
        if self._p_depth:
            p_base = Signal(16)
            bad_tile = bad_tile | (flags[1] & (p_base + nt > self._p_depth))
        f = lambda name: self._field(args, name)            # noqa: E731
        p_min = max(R, 2 + AL)
        # m * ii(mode) and ii(mode) - 1: a constant multiply per mode (pairs of a kind with
        # ii > 1 come every ii cycles).
        m_ii, ii_last = mm_n * self._iis[0], self._iis[0] - 1
        if mode is not None:
            for code in range(1, len(self._iis)):
                m_ii = Mux(mode == code, mm_n * self._iis[code], m_ii)
                ii_last = Mux(mode == code, self._iis[code] - 1, ii_last)
        ii_max = max(self._iis)
        ii_m1 = Signal(range(max(ii_max, 2)), name="ii_m1")
        ph = Signal(range(max(ii_max, 2)), name="ph")   # cycle within the vector slot
        with m.FSM():
            argument_check(
                m, self.ctl, products=prods, bad_arg=bad_arg, bad_tile=bad_tile,
                latch=[mm_n.eq(f("m")), nt.eq(f("n_tiles")), kt_n.eq(f("k_tiles")),
                       a_base.eq(f("a_base")), b_base.eq(f("b_base")),
                       c_base.eq(f("c_base")), flags.eq(f("flags")),
                       *rooms.latch,
                       *([mode.eq(f("mode"))] if mode is not None else []),
                       *([p_base.eq(f("p_base"))] if self._p_depth else [])],
                pairs=[(f("k_tiles"), f("m")),
                       (f("n_tiles"), f("k_tiles")) if pow2
                       else (f("n_tiles") * R, f("k_tiles")),
                       (f("n_tiles"), f("m"))],
                start=[pm1.eq(Mux(m_ii > p_min, m_ii, p_min) - 1),
                       pgm1.eq(Mux(m_ii + AL > p_min, m_ii + AL, p_min) - 1),
                       ii_m1.eq(ii_last), ph.eq(0),
                       m_m1.eq(mm_n - 1), m_m2.eq(mm_n - 2), kt_m2.eq(kt_n - 2),
                       nt_m1.eq(nt - 1), nt_m2.eq(nt - 2),
                       single_kt.eq(kt_n == 1), gap_mode.eq((kt_n != 1) & ~flags[0]),
                       acc_mode.eq(flags[0]), epi_mode.eq(flags[1]),
                       t.eq(0), kt.eq(0), ni.eq(0), a_row.eq(a_base),
                       last_kt.eq(kt_n == 1), last_ni.eq(nt == 1),
                       b_next.eq(b_base + R), burst.eq(0),
                       o_mm.eq(0), o_kt.eq(0), o_ni.eq(0), c_ptr.eq(c_base),
                       c_tile.eq(c_base), finished.eq(0), o_last_mm.eq(mm_n == 1),
                       o_last_kt.eq(kt_n == 1), o_first_kt.eq(1)],
                run_state="PRELOAD")
            more = ~(last_kt & last_ni)                  # a pass follows this one
            with m.State("PRELOAD"):         # the first pass's weight tile
                m.d.comb += wread.eq(1)
                m.d.sync += burst.eq(burst + 1)
                with m.If(burst == R - 1):
                    # The first pass: the last K tile of an n-tile before a replacing pass
                    # waits for the combining writes (ws_periods).
                    m.d.sync += [burst.eq(0), b_next.eq(b_next + R), issuing.eq(1),
                                 reading.eq(more),
                                 left.eq(Mux(single_kt & gap_mode, pgm1, pm1))]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += [issue.eq(issuing & (ph == 0)), swap.eq(t == 0),
                             wread.eq(reading)]
                m.d.comb += self.ctl.active.eq(issuing)   # COUNTERS compute: m x ii a pass
                if ii_max > 1:
                    m.d.sync += ph.eq(Mux(ph == ii_m1, 0, ph + 1))
                with m.If(reading):
                    m.d.sync += burst.eq(burst + 1)
                    with m.If(burst == R - 1):
                        m.d.sync += [burst.eq(0), b_next.eq(b_next + R), reading.eq(0)]
                with m.If(issuing & (t == m_m1) & (ph == ii_m1)):
                    m.d.sync += issuing.eq(0)
                with m.If(issuing & (ph == ii_m1)):        # the slot's last cycle
                    m.d.sync += t.eq(t + 1)
                m.d.sync += left.eq(left - 1)
                with m.If(left == 0):                    # the next pass starts
                    nxt_last_kt = Signal()
                    m.d.comb += nxt_last_kt.eq(Mux(last_kt, single_kt, kt == kt_m2))
                    m.d.sync += [t.eq(0), ph.eq(0), issuing.eq(1), kt.eq(kt + 1), a_row.eq(a_row + mm_n),
                                 last_kt.eq(nxt_last_kt),
                                 left.eq(Mux(nxt_last_kt & gap_mode, pgm1, pm1))]
                    nxt_last_ni = Mux(last_kt, ni == nt_m2, last_ni)
                    m.d.sync += [last_ni.eq(nxt_last_ni),
                                 reading.eq(~(nxt_last_kt & nxt_last_ni))]
                    with m.If(last_kt):
                        m.d.sync += [kt.eq(0), a_row.eq(a_base), ni.eq(ni + 1)]
                    with m.If(~more):
                        m.d.sync += [issuing.eq(0), reading.eq(0)]
                        m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(finished):
                    m.d.comb += self.ctl.done.eq(1)
                    m.next = "IDLE"

        # Result words leave the array one per vector, in issue order.
        m.d.comb += [
            self.result.valid.eq(array.out_valid),
            self.result.payload.addr.eq(c_ptr),
            self.result.payload.data.eq(array.out_data.as_value()),
            self.result.payload.accumulate.eq(acc_mode | ~o_first_kt),
            self.result.payload.epilogue.eq(epi_mode & o_last_kt),
            self.result.payload.tile.eq(o_ni),
        ]
        with m.If(array.out_valid):
            m.d.sync += [c_ptr.eq(c_ptr + 1), o_mm.eq(o_mm + 1), o_last_mm.eq(o_mm == m_m2)]
            with m.If(o_last_mm):
                m.d.sync += [o_mm.eq(0), o_last_mm.eq(m_m1 == 0), o_kt.eq(o_kt + 1),
                             o_first_kt.eq(0), o_last_kt.eq(o_kt == kt_m2), c_ptr.eq(c_tile)]
                with m.If(o_last_kt):
                    m.d.sync += [o_kt.eq(0), o_first_kt.eq(1), o_last_kt.eq(single_kt),
                                 o_ni.eq(o_ni + 1), c_ptr.eq(c_tile + mm_n),
                                 c_tile.eq(c_tile + mm_n)]
                    with m.If(o_ni == nt_m1):
                        m.d.sync += finished.eq(1)
        return m
