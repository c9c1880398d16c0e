"""Ternary reduce-and-scale engine, dense weights: parallel gated adder trees, serial scaling."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.arith.ternary_scale import SerialScaler
from tessera.hdl.arith.ternary_tree import TernaryTree
from tessera.hdl.engine.base import EngineControlSignature, ResultSignature, StorePortSignature
from tessera.hdl.engine.check import SerialProducts, argument_check
from tessera.hdl.engine.params import FLAG_ACCUMULATE, FLAG_EPILOGUE, tree_latency


__all__ = ["TreeDenseEngine", "FLAG_ACCUMULATE", "sum_bits", "tag_results"]


def sum_bits(*, words, inputs, act_bits):
    """Width of an exact sum of ``words`` tree outputs (``inputs`` activations each)."""
    return max(1, (words * inputs * ((1 << act_bits) - 1)).bit_length())


def tag_results(m, engine, sc, load_tile, epi_mode):
    """Drive ``engine.result`` from the scaler's result stream, adding the epilogue tags: the
    ``epilogue`` bit of the RUN and, per word, the parameter ``tile`` it had at its load
    (``load_tile``), delayed by the scaler's fixed latency (``lanes`` + `LATENCY_EXTRA`)."""
    r, q = engine.result, sc.result
    m.d.comb += [r.valid.eq(q.valid), r.payload.addr.eq(q.payload.addr),
                 r.payload.data.eq(q.payload.data),
                 r.payload.accumulate.eq(q.payload.accumulate)]
    if engine.epilogue is None:
        return
    cur = load_tile
    for i in range(sc.lanes + sc.LATENCY_EXTRA):
        nxt = Signal(len(load_tile), name=f"tile_d{i + 1}")
        m.d.sync += nxt.eq(cur)
        cur = nxt
    m.d.comb += [r.payload.tile.eq(cur), r.payload.epilogue.eq(epi_mode)]


class TreeDenseEngine(wiring.Component):
    """Executes dense ternary RUNs: ``outputs`` adder trees of ``inputs`` leaves each.

    A RUN computes, for every n-tile ``ni < n_tiles`` (outer) and activation row ``r < m``
    (inner), output channel ``o < outputs`` of the tile::

        S_p = sum_{kk<k} sum_i A[a_base + r*k + kk][i] * [W[w_base + ni*k + kk][i][o] == +1]
        S_n = (the same over the -1 weights)
        C[c_base + r*n_tiles + ni][o] (+)= Wp * S_p - Wn * S_n

    with (Wp, Wn) the scale word ``S[s_base + ni*outputs + o]``. An A word holds ``inputs``
    activation codes, a W word ``inputs`` lanes of ``outputs`` 2-bit weight codes (lane i:
    input i, output o at bits 2o+1:2o; 0b01 +1, 0b11 -1, others 0), a C word ``outputs``
    results, an S word Wp (low half) and Wn.

    Every cycle of a row's ``k`` words the trees take one A word and one W word (zero weights
    gate their leaves: no multiplier in a tree). A row occupies ``P = max(k, outputs)`` issue
    cycles, because the shared `SerialScaler` needs ``outputs`` cycles per result word. The
    cycle model is `tessera.sim.engines.tree.dense_cycle_model`.

    Parameters
    ----------
    inputs, outputs, act_bits, scale_bits, acc_bits : int
    args : ArgLayout
        Fields ``m``, ``n_tiles``, ``k``, ``a_base``, ``w_base``, ``s_base``, ``c_base``,
        ``flags``.
    depths : dict
        Depths of the stores ``a``, ``w``, ``s``, ``c``.
    accumulate : bool
        Whether ``FLAG_ACCUMULATE`` is allowed.
    epilogue : Epilogue or None
        The PE kind's epilogue when the core builds one (the output stage applies it; the
        engine checks ``FLAG_EPILOGUE`` and tags each result word with its n-tile: parameter
        word ``p_base + ni`` holds the tile's ``outputs`` channels).
    p_depth : int
        Depth of the parameter store; with an epilogue, ``args`` also has ``p_base``, and a
        RUN with ``FLAG_EPILOGUE`` whose ``p_base + n_tiles`` passes ``p_depth`` is an
        `Err.TILE`.

    Members
    -------
    ctl : In(EngineControlSignature)
    a_port, w_port, s_port : Out(StorePortSignature(..., write=False))
    result : Out(ResultSignature(depths["c"], outputs * acc_bits))
    """

    NEED = ("m", "n_tiles", "k", "a_base", "w_base", "s_base", "c_base", "flags")

    def __init__(self, *, inputs, outputs, act_bits, scale_bits, acc_bits, args, depths,
                 accumulate=True, epilogue=None, p_depth=0):
        names = {f.name for f in args.fields}
        need = set(self.NEED) | ({"p_base"} if epilogue is not None else set())
        if epilogue is not None and p_depth < 1:
            raise ValueError(f"an epilogue needs p_depth >= 1, not {p_depth!r}")
        self._epilogue = epilogue
        self._p_depth = p_depth if epilogue is not None else 0
        if not need <= names:
            raise ValueError(f"args must have the fields {list(self.NEED)}, not {sorted(names)}")
        self.inputs, self.outputs = inputs, outputs
        self.act_bits, self.scale_bits, self.acc_bits = act_bits, scale_bits, acc_bits
        self._args = args
        self._depths = dict(depths)
        self._accumulate = bool(accumulate)
        self._tree_latency = tree_latency(inputs)               # = TernaryTree(...).latency
        self.sum_bits = sum_bits(words=self._depths["a"], inputs=inputs, act_bits=act_bits)
        d = self._depths
        super().__init__({
            "ctl": In(EngineControlSignature(8 * args.nbytes)),
            "a_port": Out(StorePortSignature(depth=d["a"], width=inputs * act_bits,
                                             write=False)),
            "w_port": Out(StorePortSignature(depth=d["w"], width=outputs * 2 * inputs,
                                             write=False)),
            "s_port": Out(StorePortSignature(depth=d["s"], width=2 * scale_bits, write=False)),
            "result": Out(ResultSignature(depth=d["c"], width=outputs * acc_bits)),
        })

    @property
    def tree_latency(self):
        return self._tree_latency

    @property
    def epilogue(self):
        """The epilogue descriptor the output stage must apply (None: no epilogue)."""
        return self._epilogue

    @property
    def p_depth(self):
        return self._p_depth

    @property
    def p_channels(self):
        """Output channels per parameter word: a result word's ``outputs`` channels."""
        return self.outputs

    def _field(self, name):
        lo, hi = self._args.bit_slice(name)
        return self.ctl.args[lo:hi]

    def elaborate(self, platform):
        m = Module()
        I, O = self.inputs, self.outputs
        d = self._depths
        f = {n: Signal(16, name=f"arg_{n}") for n in ("m", "n_tiles", "k", "a_base", "w_base",
                                                      "s_base", "c_base")}
        flags = Signal(8)
        acc_mode = Signal()
        prods = SerialProducts(3)
        a_words, w_words, c_words = prods.products

        # -- issue side -------------------------------------------------------------------------
        period = Signal(17)
        t = Signal(17)               # cycle within the current row's period
        r, ni = Signal(16), Signal(16)
        a_row, w_row = Signal(17), Signal(17)
        issue = Signal()
        m.d.comb += [self.a_port.r_addr.eq(a_row + t), self.w_port.r_addr.eq(w_row + t),
                     self.a_port.r_en.eq(issue), self.w_port.r_en.eq(issue)]

        # -- trees (operands registered as they leave the stores: 2 cycles after issue) ---------
        v1, first1, last1 = Signal(), Signal(), Signal()
        v_in, first_in, last_in = Signal(), Signal(), Signal()
        m.d.sync += [v1.eq(issue), first1.eq(issue & (t == 0)),
                     last1.eq(issue & (t == f["k"] - 1)),
                     v_in.eq(v1), first_in.eq(first1), last_in.eq(last1)]
        a_q = Signal.like(self.a_port.r_data, name="a_q", reset_less=True)
        w_q = Signal.like(self.w_port.r_data, name="w_q", reset_less=True)
        m.d.sync += [a_q.eq(self.a_port.r_data), w_q.eq(self.w_port.r_data)]
        trees = []
        for o in range(O):
            tree = TernaryTree(inputs=I, act_bits=self.act_bits, tag_bits=2 if o == 0 else 0)
            m.submodules[f"tree{o}"] = tree
            # W lane i holds input i's codes for all outputs, output o at bits 2o+1:2o.
            lane = Cat(*(w_q[(i * O + o) * 2:(i * O + o) * 2 + 2] for i in range(I)))
            m.d.comb += [tree.valid.eq(v_in), tree.a.as_value().eq(a_q),
                         tree.w.as_value().eq(lane)]
            if o == 0:
                m.d.comb += tree.tag.eq(first_in | (last_in << 1))
            trees.append(tree)

        # -- accumulators and the scaler --------------------------------------------------------
        m.submodules.scaler = sc = SerialScaler(lanes=O, sum_bits=self.sum_bits,
                                                scale_bits=self.scale_bits,
                                                acc_bits=self.acc_bits,
                                                s_depth=d["s"], c_depth=d["c"])
        wiring.connect(m, sc.s_port, wiring.flipped(self.s_port))
        t_valid = trees[0].out_valid
        t_first, t_last = trees[0].out_tag[0], trees[0].out_tag[1]
        for o, tree in enumerate(trees):
            acc_p = Signal(self.sum_bits, name=f"acc_p{o}")
            acc_n = Signal(self.sum_bits, name=f"acc_n{o}")
            tot_p = Signal(self.sum_bits, name=f"tot_p{o}")
            tot_n = Signal(self.sum_bits, name=f"tot_n{o}")
            m.d.comb += [tot_p.eq(Mux(t_first, 0, acc_p) + tree.sp),
                         tot_n.eq(Mux(t_first, 0, acc_n) + tree.sn),
                         sc.sp[o].eq(tot_p), sc.sn[o].eq(tot_n)]
            with m.If(t_valid):
                m.d.sync += [acc_p.eq(tot_p), acc_n.eq(tot_n)]
        # Result words leave in row order: address c_base + r*n_tiles + ni, scales of tile ni.
        out_r, out_ni = Signal(16), Signal(16)
        epi_mode = Signal()
        tag_results(m, self, sc, out_ni[:max(1, (self._p_depth - 1).bit_length())], epi_mode)
        c_ptr = Signal(17)
        s_ptr = Signal(17)
        emitted = Signal(32)
        m.d.comb += [sc.load.eq(t_valid & t_last), sc.addr.eq(c_ptr), sc.s_base.eq(s_ptr),
                     sc.s_step.eq(1), sc.accumulate.eq(acc_mode)]
        with m.If(sc.load):
            m.d.sync += [out_r.eq(out_r + 1), c_ptr.eq(c_ptr + f["n_tiles"])]
            with m.If(out_r == f["m"] - 1):
                m.d.sync += [out_r.eq(0), out_ni.eq(out_ni + 1),
                             c_ptr.eq(f["c_base"] + out_ni + 1), s_ptr.eq(s_ptr + O)]
        with m.If(self.result.valid):
            m.d.sync += emitted.eq(emitted + 1)

        allowed = FLAG_ACCUMULATE | ((FLAG_EPILOGUE | self._epilogue.flag_mask())
                                     if self._epilogue is not None else 0)
        bad_arg = ((f["m"] == 0) | (f["n_tiles"] == 0) | (f["k"] == 0)
                   | (flags & ~allowed & 0xFF).any())
        if not self._accumulate:
            bad_arg = bad_arg | flags[0]
        bad_tile = ((f["a_base"] + a_words > d["a"]) | (f["w_base"] + w_words > d["w"])
                    | (f["s_base"] + f["n_tiles"] * O > d["s"])
                    | (f["c_base"] + c_words > d["c"]))
        p_latch = []
        if self._epilogue is not None:
            p_base = Signal(16)
            p_latch = [p_base.eq(self._field("p_base"))]
            bad_tile = bad_tile | (flags[1] & (p_base + f["n_tiles"] > self._p_depth))
        with m.FSM():
            argument_check(
                m, self.ctl, products=prods, bad_arg=bad_arg, bad_tile=bad_tile,
                latch=[*(s.eq(self._field(n)) for n, s in f.items()),
                       flags.eq(self._field("flags")), *p_latch],
                pairs=[(self._field("k"), self._field("m")),
                       (self._field("k"), self._field("n_tiles")),
                       (self._field("n_tiles"), self._field("m"))],
                start=[period.eq(Mux(f["k"] > O, f["k"], O)), acc_mode.eq(flags[0]),
                       epi_mode.eq(flags[1]),
                       t.eq(0), r.eq(0), ni.eq(0),
                       a_row.eq(f["a_base"]), w_row.eq(f["w_base"]),
                       out_r.eq(0), out_ni.eq(0), c_ptr.eq(f["c_base"]), s_ptr.eq(f["s_base"]),
                       emitted.eq(0)],
                run_state="ISSUE")
            with m.State("ISSUE"):
                m.d.comb += [issue.eq(t < f["k"]), self.ctl.active.eq(t < f["k"])]
                m.d.sync += t.eq(t + 1)
                with m.If(t == period - 1):
                    m.d.sync += [t.eq(0), r.eq(r + 1), a_row.eq(a_row + f["k"])]
                    with m.If(r == f["m"] - 1):
                        m.d.sync += [r.eq(0), a_row.eq(f["a_base"]), ni.eq(ni + 1),
                                     w_row.eq(w_row + f["k"])]
                        with m.If(ni == f["n_tiles"] - 1):
                            m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(emitted == c_words):
                    m.d.comb += self.ctl.done.eq(1)
                    m.next = "IDLE"
        return m
