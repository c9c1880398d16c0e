"""The multi-precision PE of DRQ: one 4-bit multiplier, 4-bit MACs in one cycle, 8-bit in four."""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.arith.intacc import wrap_accumulate
from tessera.hdl.arith.params import multiprec_ii, multiprec_latency
from tessera.hdl.array.parts import Parts, wrap_step
from tessera.hdl.array.pe import PE, PESignature


__all__ = ["NibbleMultiplier", "MultiPrecPE", "MultiPrecParts"]


def _check(modes, acc_bits):
    modes = tuple(tuple(md) for md in modes)
    if not modes:
        raise ValueError("modes must name at least one mode, not ()")
    for md in modes:
        if len(md) != 4 or md[0] not in (4, 8) or md[2] not in (4, 8):
            raise ValueError(f"a mode must be (a_bits, a_signed, b_bits, b_signed) with "
                             f"bits 4 or 8, not {md!r}")
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) \
            or not 18 <= acc_bits <= 64:
        raise ValueError(f"acc_bits must be an integer 18..64, not {acc_bits!r}")
    return modes


class NibbleMultiplier(wiring.Component):
    """A 4-bit x 4-bit multiplier with a signed/unsigned mode per operand.

    Each nibble is extended to 5 bits (bit 4 = bit 3 when the nibble is signed, else 0) and
    the two 5-bit two's complement values are multiplied: -120 (-8 x 15) .. 225 (15 x 15), a
    10-bit signed product. Combinational (latency 0). The multiply is a ``*``, which yosys maps
    to one DSP block when DSP inference is on (a LUT array otherwise).

    Members
    -------
    x, y : In(4)
    x_signed, y_signed : In(1)
    p : Out(signed(10))
    """

    def __init__(self):
        super().__init__({"x": In(4), "y": In(4), "x_signed": In(1), "y_signed": In(1),
                          "p": Out(signed(10))})

    @property
    def latency(self):
        return 0

    def elaborate(self, platform):
        m = Module()
        xe = Cat(self.x, self.x[3] & self.x_signed).as_signed()
        ye = Cat(self.y, self.y[3] & self.y_signed).as_signed()
        m.d.comb += self.p.eq(xe * ye)
        return m


class MultiPrecPE(PE):
    """Multi-precision MAC: one 4-bit multiplier reused over the nibbles of 8-bit operands.

    An operand of 8 bits is split into nibbles (high nibble signed for a signed operand, low
    nibble unsigned), and x * w = (xh wh << 8) + (xh wl << 4) + (xl wh << 4) + xl wl: one
    partial product per cycle into the accumulator. A 4-bit operand is one (top) nibble in
    bits 3..0 of its lane. So a pair takes ``ii = (a_bits / 4) (b_bits / 4)`` cycles: 1 at
    4 x 4 bits, 2 at 8 x 4 and 4 x 8, 4 at 8 x 8. The run-time ``mode`` (an index into
    ``modes``, held for the whole RUN) chooses precision and signedness; pairs may come every
    ``ii(mode)`` cycles.

    Pipeline: nibble select (the first partial product of a pair is taken straight from the
    inputs, the others from a copy latched with the pair), a multiplier input register, the
    multiplier's output register, then in faster modes a delay of ``max ii - ii(mode)``
    cycles, so that every mode has the same latency, then the accumulator (the shared
    `tessera.hdl.arith.intacc.wrap_accumulate`; the rest of the pipeline is its own: a pair
    makes up to four terms, so it is not an `IntAccPE`). Latency ``max ii + 2`` in every
    mode; the PE's own `ii` is the largest. As the PE contract says, ``mode`` must stay steady
    while pairs are in flight (from a RUN's first pair to its last result): the delay is
    chosen by the current mode.

    Parameters
    ----------
    modes : sequence of (a_bits, a_signed, b_bits, b_signed)
        The run-time modes in code order; bits 4 or 8.
    acc_bits : int
        Accumulator width, 18..64.

    Members
    -------
    a, b : In(8)
    mode : In(range(len(modes)))
    valid, first, last : In(1)
    result : Out(signed(acc_bits))
    result_valid : Out(1)
    """

    def __init__(self, *, modes, acc_bits=32):
        modes = _check(modes, acc_bits)
        self._modes, self._acc_bits = modes, acc_bits
        self._iis = tuple(multiprec_ii(md[0], md[2]) for md in modes)
        self._ii_max = max(self._iis)
        super().__init__(PESignature(a_shape=8, b_shape=8, acc_shape=signed(acc_bits),
                                     mode_shape=range(len(modes))))

    @staticmethod
    def mode_ii(a_bits, b_bits):
        """Initiation interval of a mode: the number of nibble products of a pair."""
        return multiprec_ii(a_bits, b_bits)

    @property
    def latency(self):
        return multiprec_latency(self._iis)

    @property
    def ii(self):
        return self._ii_max

    @property
    def iis(self):
        """The initiation interval of each mode, in code order."""
        return self._iis

    def elaborate(self, platform):
        m = Module()
        term, go, start, end = nibble_terms(m, self, self._modes, first=self.first,
                                            last=self.last)
        wrap_accumulate(m, self, term, valid=go, first=start, last=go & end)
        return m


def nibble_terms(m, pe, modes, *, first, last):
    """The nibble pipeline of `MultiPrecPE`, in module ``m``, reading ``pe``'s ``a``, ``b``,
    ``valid`` and ``mode`` (``first``/``last``: the pair's flags, Values): step sequencing,
    the multiplier's input and output registers, the faster modes' delay. Returns ``(term,
    go, start, end)``: the shifted nibble product of one step, whether a step is there,
    whether it is the first of a ``first`` pair, the last of a ``last`` pair; a pair
    presented in cycle t has its last step's term in cycle ``t + max ii + 1``."""
    iis = tuple(multiprec_ii(md[0], md[2]) for md in modes)
    ii_max = max(iis)
    D = ii_max - min(iis)       # the longest delay a faster mode needs

    # The mode decoded (a constant table): 8-bit operands, signedness, delay taps.
    a8, b8, a_s, b_s = Signal(name="a8"), Signal(name="b8"), Signal(), Signal()
    last_step = Signal(2)
    delay = Signal(range(D + 1))
    with m.Switch(pe.mode):
        for code, (ab, asg, bb, bsg) in enumerate(modes):
            with m.Case(code):
                m.d.comb += [a8.eq(ab == 8), b8.eq(bb == 8), a_s.eq(asg), b_s.eq(bsg),
                             last_step.eq(iis[code] - 1),
                             delay.eq(ii_max - iis[code])]

    # Step sequencing: step 0 in the cycle the pair is valid, steps 1.. from the copy.
    step = Signal(2)
    la, lb = Signal(8), Signal(8)
    l_first, l_last = Signal(), Signal()
    busy = step != 0
    cur_a = Mux(busy, la, pe.a)
    cur_b = Mux(busy, lb, pe.b)
    cur_first = Mux(busy, l_first, first)
    cur_last = Mux(busy, l_last, last)
    go = pe.valid | busy
    with m.If(pe.valid):
        m.d.sync += [la.eq(pe.a), lb.eq(pe.b), l_first.eq(first),
                     l_last.eq(last)]
    with m.If(go):
        m.d.sync += step.eq(Mux(step == last_step, 0, step + 1))

    # Nibble indices of this step: the activation nibble runs fastest.
    ix = Mux(a8, step[0], 0)
    iw = Mux(a8, step[1], step[0]) & b8
    x_n = Mux(ix, cur_a[4:8], cur_a[0:4])
    w_n = Mux(iw, cur_b[4:8], cur_b[0:4])
    # The top nibble of a signed operand is signed: the high one of 8 bits, the only of 4.
    x_top = Mux(a8, ix, 1)
    w_top = Mux(b8, iw, 1)

    m.submodules.mul = mul = NibbleMultiplier()
    mx, my, mxs, mys = Signal(4), Signal(4), Signal(), Signal()
    shift1 = Signal(2)             # product shift in nibbles: ix + iw
    go1, start1, end1 = Signal(), Signal(), Signal()
    m.d.sync += [mx.eq(x_n), my.eq(w_n), mxs.eq(a_s & x_top), mys.eq(b_s & w_top),
                 shift1.eq(ix + iw), go1.eq(go), start1.eq(go & (step == 0) & cur_first),
                 end1.eq(go & (step == last_step) & cur_last)]
    m.d.comb += [mul.x.eq(mx), mul.y.eq(my), mul.x_signed.eq(mxs), mul.y_signed.eq(mys)]

    prod = Signal(signed(10), reset_less=True)
    shift2, go2, start2, end2 = Signal(2), Signal(), Signal(), Signal()
    m.d.sync += [prod.eq(mul.p), shift2.eq(shift1), go2.eq(go1), start2.eq(start1),
                 end2.eq(end1)]

    # Faster modes wait here, so every mode reaches the accumulator at the same latency.
    bundle = Cat(prod, shift2, go2, start2, end2)
    taps = [bundle]
    for i in range(D):
        nxt = Signal(len(bundle), name=f"delay{i + 1}")
        m.d.sync += nxt.eq(taps[-1])
        taps.append(nxt)
    cur = Signal(len(bundle))
    with m.Switch(delay):
        for d, tap in enumerate(taps):
            with m.Case(d):
                m.d.comb += cur.eq(tap)
    p_d = cur[0:10].as_signed()
    shift_d, go_d, start_d, end_d = cur[10:12], cur[12], cur[13], cur[14]
    term = Mux(shift_d == 2, p_d << 8, Mux(shift_d == 1, p_d << 4, p_d))
    return term, go_d, start_d, end_d


class MultiPrecParts(Parts, wiring.Component):
    """``multiprec``'s arithmetic as parts (`tessera.hdl.array.parts`): the nibble pipeline of
    `MultiPrecPE` (`nibble_terms`, one 4-bit multiplier, ``ii(mode)`` steps per pair) sums
    each pair's nibble products in a pair register, so the product register holds the whole
    product ``x * w`` (18 bits, signed) ``front = max ii + 2`` cycles after the pair; the
    accumulate is the integer kinds' wrapping add (`wrap_step`). The pair's ``valid`` starts
    its steps (`uses_valid`): pairs may come every ``ii(mode)`` cycles, the composing engine
    spaces them so.

    Parameters and members: those of `MultiPrecPE`.
    """

    uses_valid = True

    def __init__(self, *, modes, acc_bits=32):
        self._modes = _check(modes, acc_bits)
        self._acc_bits = acc_bits
        self._ii_max = max(multiprec_ii(md[0], md[2]) for md in self._modes)
        super().__init__(PESignature(a_shape=8, b_shape=8, acc_shape=signed(acc_bits),
                                     mode_shape=range(len(self._modes))))

    @property
    def front(self):
        return self._ii_max + 2

    def products(self, m):
        term, go, start, _ = nibble_terms(m, self, self._modes, first=Const(1), last=Const(1))
        pair = Signal(signed(18), name="pair", reset_less=True)
        with m.If(go):
            m.d.sync += pair.eq(Mux(start, 0, pair) + term)
        return {"pair_sum": pair}

    def accumulate(self, m, psum, term, row):
        return wrap_step(psum, term, row, self._acc_bits)

