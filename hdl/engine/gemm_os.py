"""Output-stationary systolic GEMM engine: argument check, tile issue loop and the PE array."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.array.systolic import SystolicArray
from tessera.hdl.engine.base import EngineControlSignature, ResultSignature, StorePortSignature
from tessera.hdl.engine.check import Rooms, SerialProducts, argument_check, drive_lanes
from tessera.hdl.engine.params import CHECK_CYCLES, FLAG_ACCUMULATE, FLAG_EPILOGUE


__all__ = ["GemmOSEngine", "FLAG_ACCUMULATE", "FLAG_EPILOGUE", "CHECK_CYCLES"]

# FLAG_ACCUMULATE, FLAG_EPILOGUE and CHECK_CYCLES live in `tessera.hdl.engine.params` (the twin
# reads them there); re-exported here.


class GemmOSEngine(wiring.Component):
    """Executes GEMM RUNs on an output-stationary `SystolicArray`.

    A RUN computes, for every m-tile ``mi < m_tiles`` and n-tile ``ni < n_tiles`` (m outer),
    ``C[c_base + (mi*n_tiles + ni)*rows + r] (+)= sum_{kk<k} A[a_base + mi*k + kk][r] (x)
    B[b_base + ni*k + kk][c]``, where an A word holds ``rows`` lanes, a B word ``cols`` lanes
    and a C word ``cols`` results; what one lane pair contributes is the PE kind's business
    (one product, or several with packed lanes). With ``FLAG_ACCUMULATE`` the result words
    ask the output stage to combine them with the stored words.

    On ``ctl.start`` the arguments are checked for `CHECK_CYCLES` cycles; ``ctl.check_done``
    then pulses with 0 or an `Err` code. Tiles are issued back to back, each taking
    ``P = max(k * ii, rows, cols)`` cycles (an operand pair every ``ii`` cycles, the PE's
    initiation interval). Store reads are registered: a pair reaches the array 2 cycles
    after its issue (the store's read, then the operand register); the cycle model is `tessera.sim.engines.gemm_os.cycle_model`.

    Parameters
    ----------
    rows, cols : int
        Array shape.
    pe : callable
        Returns a new `PE` (`tessera.hdl.array.pe`).
    args : ArgLayout
        The engine's RUN argument layout (`tessera.hdl.ctrl.protocol`): fields ``m_tiles``,
        ``n_tiles``, ``k``, ``a_base``, ``b_base``, ``c_base``, ``flags`` and, for PEs with a
        run-time mode, ``mode``.
    depths : tuple of 3 int
        Depths of stores A, B and C.
    accumulate : bool
        Whether the PE kind has a combiner (otherwise ``FLAG_ACCUMULATE`` is an `Err.ARG`).
    modes : int
        Number of PE run-time modes (a ``mode`` argument at or above it is an `Err.ARG`).
    ii : tuple of int or None
        The PE's initiation interval per mode code (one entry without modes); None: the PE's
        own ``ii`` for every mode.
    epilogue : Epilogue or None
        The PE kind's epilogue when the core builds one (the core's output stage applies it;
        the engine checks ``FLAG_EPILOGUE`` and supplies each result word's n-tile).
    p_depth : int
        Depth of the epilogue parameter store; 0: no epilogue (``FLAG_EPILOGUE`` is an
        `Err.ARG`). With an epilogue, ``args`` also has ``p_base``, and a RUN with
        ``FLAG_EPILOGUE`` whose ``p_base + n_tiles`` passes ``p_depth`` is an `Err.TILE`.

    Members
    -------
    ctl : In(EngineControlSignature(args.nbytes * 8))
    a_port : Out(StorePortSignature(depths[0], rows * a lane bits, write=False))
    b_port : Out(StorePortSignature(depths[1], cols * b lane bits, write=False))
    result : Out(ResultSignature(depths[2], cols * acc bits))
    """

    def __init__(self, *, rows, cols, pe, args, depths, accumulate, modes=0, ii=None,
                 epilogue=None, p_depth=0, chain=False):
        self._array = SystolicArray(rows=rows, cols=cols, pe=pe)
        self._rows, self._cols = rows, cols
        self._args = args
        self._depths = tuple(depths)
        self._accumulate = bool(accumulate)
        self._p_depth = p_depth if epilogue is not None else 0
        self._epilogue = epilogue
        self._chain = bool(chain) and self._p_depth > 0
        self._modes = modes
        n = max(1, modes)
        self._iis = tuple(ii) if ii is not None else (self._array.pe_ii,) * n
        if len(self._iis) != n or any(not isinstance(v, int) or v < 1 for v in self._iis):
            raise ValueError(f"ii must give a positive int for each of the {n} modes, not {ii!r}")
        self._ii = max(self._iis)
        names = {f.name for f in args.fields}
        need = {"m_tiles", "n_tiles", "k", "a_base", "b_base", "c_base", "flags"}
        if p_depth:
            need.add("p_base")
        if self._chain:
            need |= {"chain_base", "chain_stride"}
        if not need <= names:
            raise ValueError(f"args must have the fields {sorted(need)}, not {sorted(names)}")
        members = self._array.signature.members
        if "mode" in members and "mode" not in names:
            raise ValueError("a PE with a run-time mode needs a 'mode' argument field")
        # An A lane is the PE's activation operand with its side-band members above it.
        self._side = [(name, members[f"side_{name}"].shape.elem_shape.width)
                      for name, _ in self._array.pe_signature.side]
        self._a_bits = members["a"].shape.elem_shape.width
        a_bits = self._a_bits + sum(w for _, w in self._side)
        b_bits = members["b"].shape.elem_shape.width
        acc_bits = members["out_data"].shape.elem_shape.width
        da, db, dc = self._depths
        #: With ``chain``: the writer that lays a chaining RUN's epilogue rows out as the next
        #: layer's A words (`TransposeChain`; the core puts it between the output stage and A).
        self.chain_writer = None
        if self._chain:
            from tessera.hdl.engine.chain import TransposeChain
            if epilogue.out_bits != a_bits:
                raise ValueError(f"chain: the epilogue's {epilogue.out_bits}-bit outputs are not "
                                 f"A lanes of {a_bits} bits")
            self.chain_writer = TransposeChain(rows=rows, cols=cols, lane_bits=a_bits,
                                               depth=da, args=args)
        super().__init__({
            "ctl": In(EngineControlSignature(8 * args.nbytes)),
            "a_port": Out(StorePortSignature(depth=da, width=rows * a_bits, write=False)),
            "b_port": Out(StorePortSignature(depth=db, width=cols * b_bits, write=False)),
            "result": Out(ResultSignature(depth=dc, width=cols * acc_bits)),
        })

    @property
    def epilogue(self):
        """The epilogue descriptor the output stage must apply (None: no epilogue)."""
        return self._epilogue

    @property
    def p_depth(self):
        return self._p_depth

    @property
    def pe_latency(self):
        return self._array.pe_latency

    @property
    def pe_ii(self):
        """The largest initiation interval over the modes."""
        return self._ii

    def _field(self, value, name):
        lo, hi = self._args.bit_slice(name)
        return value[lo:hi]

    def elaborate(self, platform):
        m = Module()
        R, C, ii = self._rows, self._cols, self._ii
        a_depth, b_depth, c_depth = self._depths
        m.submodules.array = array = self._array
        args = self.ctl.args

        mt, nt, k = Signal(16), Signal(16), Signal(16)
        a_base, b_base, c_base = Signal(16), Signal(16), Signal(16)
        flags = Signal(8)
        acc_mode = Signal()
        epi_mode = Signal()
        out_row = Signal(range(max(R, 2)))    # row and n-tile of the next result word
        out_tile = Signal(16)
        # Serial shift-add products for the bounds: mt*k, nt*k, the C rows mt*nt*R (and
        # mt*chain_stride). With R a power of two the rows are mt*nt shifted; otherwise
        # (mt*R)*nt, 37 bits, so that no multiplier by R sits between the product and the
        # bound compare (on a 12-row array it was a DSP on the check's critical path).
        pow2 = R & (R - 1) == 0
        n_prods = 4 if self._chain else 3
        prods = SerialProducts(n_prods, bits=32 if pow2 else [32, 32, 40, 32][:n_prods])
        a_words, b_words, tiles = prods.products[:3]
        c_rows = tiles * R if pow2 else tiles
        period = Signal(17 + max(ii, 1).bit_length())
        total_rows = Signal(range(c_depth + 1))

        t = Signal.like(period)       # cycle within the current tile's issue period
        slot = Signal(range(max(ii, 2)))
        kk = Signal(16)               # operand pairs issued in the current tile
        mi, ni = Signal(16), Signal(16)
        a_row, b_row = Signal(17), Signal(17)
        emitted = Signal(range(c_depth + 1))
        c_ptr = Signal(range(c_depth))

        if "mode" in array.signature.members:
            # The whole RUN field is latched and checked; the PE sees its own width of it.
            lo, hi = self._args.bit_slice("mode")
            mode = Signal(hi - lo, name="mode")
            m.d.comb += array.mode.eq(mode)
        else:
            mode = None

        issue = Signal()
        m.d.comb += [
            self.a_port.r_addr.eq(a_row + kk), self.b_port.r_addr.eq(b_row + kk),
            self.a_port.r_en.eq(issue), self.b_port.r_en.eq(issue),
        ]
        # Registered reads: the operand words are registered as they leave the stores (the
        # block RAM's clock-to-out does not share a cycle with the multipliers), so the array
        # sees a pair 2 cycles after its issue; the control bits take the same 2 registers.
        valid1, first1, last1 = Signal(), Signal(), Signal()
        m.d.sync += [
            valid1.eq(issue), first1.eq(issue & (kk == 0)), last1.eq(issue & (kk == k - 1)),
            array.valid.eq(valid1), array.first.eq(first1), array.last.eq(last1),
        ]
        a_q = Signal.like(self.a_port.r_data, name="a_q", reset_less=True)
        b_q = Signal.like(self.b_port.r_data, name="b_q", reset_less=True)
        m.d.sync += [a_q.eq(self.a_port.r_data), b_q.eq(self.b_port.r_data)]
        drive_lanes(m, array, a_q, lanes=R, a_bits=self._a_bits, side=self._side)
        m.d.comb += array.b.as_value().eq(b_q)

        allowed = FLAG_ACCUMULATE | ((FLAG_EPILOGUE | self._epilogue.flag_mask())
                                     if self._p_depth else 0)
        bad_arg = (mt == 0) | (nt == 0) | (k == 0) | (flags & ~allowed & 0xFF).any()
        if not self._accumulate:
            bad_arg = bad_arg | (flags & FLAG_ACCUMULATE).any()
        if mode is not None:
            bad_arg = bad_arg | (mode >= max(1, self._modes))
        rooms = Rooms([(n, self._field(args, f"{n}_base"), d)
                       for n, d in (("a", a_depth), ("b", b_depth), ("c", c_depth))])
        bad_tile = (rooms.exceeds("a", a_words) | rooms.exceeds("b", b_words)
                    | rooms.exceeds("c", c_rows))
        if self._p_depth:
            p_base = Signal(16)
            bad_tile = bad_tile | (flags[1] & (p_base + nt > self._p_depth))
        chain_latch, chain_pairs = [], []
        if self._chain:
            # A chaining RUN writes A words chain_base + mi*chain_stride + ni*cols + c: the
            # last one, (mt-1)*stride + nt*cols - 1 above chain_base, must be in A's bank.
            chaining = Signal()
            chain_base, stride = Signal(16), Signal(16)
            chain_latch = [chaining.eq(self.ctl.chain != 0),
                           chain_base.eq(self._field(args, "chain_base")),
                           stride.eq(self._field(args, "chain_stride"))]
            chain_pairs = [(self._field(args, "chain_stride"), self._field(args, "m_tiles"))]
            end = chain_base + prods.products[3] - stride + nt * C
            bad_tile = bad_tile | (chaining & (end > a_depth))
        # k * ii(mode): a constant multiply per mode (II may depend on the mode).
        kii = k * self._iis[0]
        if mode is not None:
            for code in range(1, len(self._iis)):
                kii = Mux(mode == code, k * self._iis[code], kii)
        maxrc = max(R, C)
        with m.FSM():
            argument_check(
                m, self.ctl, products=prods, bad_arg=bad_arg, bad_tile=bad_tile,
                latch=[mt.eq(self._field(args, "m_tiles")), nt.eq(self._field(args, "n_tiles")),
                       k.eq(self._field(args, "k")),
                       a_base.eq(self._field(args, "a_base")),
                       b_base.eq(self._field(args, "b_base")),
                       c_base.eq(self._field(args, "c_base")),
                       flags.eq(self._field(args, "flags")),
                       *rooms.latch,
                       *([mode.eq(self._field(args, "mode"))] if mode is not None else []),
                       *([p_base.eq(self._field(args, "p_base"))] if self._p_depth else []),
                       *chain_latch],
                pairs=[(self._field(args, "k"), self._field(args, "m_tiles")),
                       (self._field(args, "k"), self._field(args, "n_tiles")),
                       (self._field(args, "n_tiles"), self._field(args, "m_tiles")) if pow2
                       else (self._field(args, "m_tiles") * R, self._field(args, "n_tiles")),
                       *chain_pairs],
                start=[period.eq(Mux(kii > maxrc, kii, maxrc)),
                       total_rows.eq(c_rows),
                       acc_mode.eq(flags[0]), epi_mode.eq(flags[1]),
                       out_row.eq(0), out_tile.eq(0),
                       t.eq(0), slot.eq(0), kk.eq(0), mi.eq(0), ni.eq(0),
                       a_row.eq(a_base), b_row.eq(b_base),
                       c_ptr.eq(c_base), emitted.eq(0)],
                run_state="ISSUE")
            with m.State("ISSUE"):
                m.d.comb += issue.eq((slot == 0) & (kk < k))
                # COUNTERS compute: a tile's k x ii issue cycles (the rest of its period is a
                # short-K bubble).
                m.d.comb += self.ctl.active.eq(t < kii)
                with m.If(issue):
                    m.d.sync += kk.eq(kk + 1)
                if ii > 1:
                    last_slot = self._iis[0] - 1
                    if mode is not None:
                        for code in range(1, len(self._iis)):
                            last_slot = Mux(mode == code, self._iis[code] - 1, last_slot)
                    m.d.sync += slot.eq(Mux(slot == last_slot, 0, slot + 1))
                m.d.sync += t.eq(t + 1)
                with m.If(t == period - 1):
                    m.d.sync += [t.eq(0), slot.eq(0), kk.eq(0), ni.eq(ni + 1),
                                 b_row.eq(b_row + k)]
                    with m.If(ni == nt - 1):
                        m.d.sync += [ni.eq(0), b_row.eq(b_base), mi.eq(mi + 1),
                                     a_row.eq(a_row + k)]
                        with m.If(mi == mt - 1):
                            m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(emitted == total_rows):
                    m.d.comb += self.ctl.done.eq(1)
                    m.next = "IDLE"

        # Result rows leave the array one per cycle, in tile order: consecutive C words.
        m.d.comb += [
            self.result.valid.eq(array.out_valid),
            self.result.payload.addr.eq(c_ptr),
            self.result.payload.data.eq(array.out_data.as_value()),
            self.result.payload.accumulate.eq(acc_mode),
            self.result.payload.epilogue.eq(epi_mode),
            self.result.payload.tile.eq(out_tile),
        ]
        with m.If(array.out_valid):
            m.d.sync += [c_ptr.eq(c_ptr + 1), emitted.eq(emitted + 1), out_row.eq(out_row + 1)]
            with m.If(out_row == R - 1):
                m.d.sync += [out_row.eq(0), out_tile.eq(Mux(out_tile == nt - 1, 0, out_tile + 1))]
        return m
