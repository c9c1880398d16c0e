"""Bit Fusion: the fusion unit of 16 BitBricks and the PE built on it."""

from amaranth import Module, Mux, Shape, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.arith.bitbrick import BRICK_MAX, BRICK_MIN, BitBrick
from tessera.hdl.arith.intacc import IntAccPE
from tessera.hdl.array.pe import PESignature


__all__ = ["FusionMode", "PRECISIONS", "FusionUnit", "BitFusionPE"]

#: Operand precisions in bits, by their ``a_prec``/``b_prec`` code.
PRECISIONS = (2, 4, 8)

#: The run-time mode of a fusion unit: precision codes (0: 2 bits, 1: 4 bits, 2: 8 bits) and
#: signedness of the activations (``a``) and weights (``b``).
FusionMode = data.StructLayout({"a_prec": 2, "b_prec": 2, "a_signed": 1, "b_signed": 1})


def _range_shape(lo, hi):
    return lo, hi, Shape.cast(range(lo, hi + 1))


def _level(lo, hi, shift):
    """Value range of ``x + (y << shift)`` for x, y in lo..hi (shift 0 included)."""
    return min(lo, lo + (lo << shift)), max(hi, hi + (hi << shift))


class FusionUnit(wiring.Component):
    """16 BitBricks fused at run time into 16, 8, 4, 2 or 1 products per cycle, summed.

    Brick (u, v) of a 4 x 4 grid (slot q = u + 4 v) multiplies the digit in bits 2q, 2q + 1 of
    ``a`` by the digit in the same bits of ``b``; the operand layout puts there digit
    i = u mod na of an activation and digit j = v mod nb of a weight, with na, nb the digits
    per element (`tessera.sim.bitfusion.slot_map`). So the brick's product weighs
    2 ** (2 (i + j)) = 4 ** (u mod na) * 4 ** (v mod nb), and the shift-add tree is separable:
    each row sums its bricks with shifts chosen by the weight precision (pairs: 2 bits if
    weights have 4 or 8 bits; pairs of pairs: 4 bits if 8), then the rows are summed with the
    shifts of the activation precision. ``result`` is the sum of all products: the dot product
    of the (8 / a bits) (8 / weight bits) element pairs in ``a`` and ``b``.

    The only mode-dependent logic is the signedness of each row's and each column's digits
    (the top digit of a signed element) and one 2-input shift select per adder of the tree:
    the operands arrive laid out for the bricks, so nothing is routed by mode. A mode change
    costs no cycles; ``mode`` must be steady while operands are in flight.

    Latency ``stages`` cycles: with 1, the row sums (and the activation half of the mode) are
    registered; with 2, the result is registered too. Initiation interval 1.

    Parameters
    ----------
    stages : int
        Pipeline registers, 0..2.
    fixed : (a_bits, a_signed, b_bits, b_signed) or None
        A mode fixed at build time (no ``mode`` port; yosys removes what the mode does not
        use), or None for the run-time ``mode`` input.

    Members
    -------
    a, b : In(32)
        Activation and weight digits, one 2-bit digit per brick.
    mode : In(FusionMode), only without ``fixed``
    result : Out(signed(17))
        Sum of the products (at 8 x 8 bits: 0..65025 unsigned, -32640..16384 signed).
    """

    def __init__(self, *, stages=1, fixed=None):
        if isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages <= 2:
            raise ValueError(f"stages must be an integer 0..2, not {stages!r}")
        if fixed is not None:
            fixed = tuple(fixed)
            if len(fixed) != 4 or fixed[0] not in PRECISIONS or fixed[2] not in PRECISIONS:
                raise ValueError(f"fixed must be (a_bits, a_signed, b_bits, b_signed) with bits "
                                 f"in 2, 4, 8, or None, not {fixed!r}")
        self._stages, self._fixed = stages, fixed
        lo, hi = BRICK_MIN, BRICK_MAX
        self._l1 = _level(lo, hi, 2)
        self._row = _level(*self._l1, 4)
        self._l3 = _level(*self._row, 2)
        self._out = _level(*self._l3, 4)
        members = {"a": In(32), "b": In(32)}
        if fixed is None:
            members["mode"] = In(FusionMode)
        members["result"] = Out(Shape.cast(range(self._out[0], self._out[1] + 1)))
        super().__init__(members)

    @property
    def stages(self):
        return self._stages

    @property
    def latency(self):
        return self._stages

    @property
    def fixed(self):
        return self._fixed

    def elaborate(self, platform):
        m = Module()
        if self._fixed is None:
            mode = self.mode
        else:
            ab, asg, bb, bsg = self._fixed
            mode = Signal(FusionMode, name="mode")
            m.d.comb += mode.eq(FusionMode.const({
                "a_prec": PRECISIONS.index(ab), "b_prec": PRECISIONS.index(bb),
                "a_signed": int(asg), "b_signed": int(bsg)}))

        def top_digit(prec, signed_, pos):
            """The digit at grid position pos is an element's top digit: pos = 3 always,
            pos = 1 for 2- and 4-bit elements, pos = 0, 2 for 2-bit elements."""
            if pos == 3:
                return signed_
            if pos == 1:
                return signed_ & (prec <= 1)
            return signed_ & (prec == 0)

        bricks = {}
        for q in range(16):
            u, v = q % 4, q // 4
            m.submodules[f"brick{q}"] = bb = BitBrick()
            m.d.comb += [
                bb.x.eq(self.a[2 * q:2 * q + 2]), bb.y.eq(self.b[2 * q:2 * q + 2]),
                bb.x_signed.eq(top_digit(mode.a_prec, mode.a_signed, u)),
                bb.y_signed.eq(top_digit(mode.b_prec, mode.b_signed, v)),
            ]
            bricks[u, v] = bb.p

        def add(x, y, sel, shift, shape, name):
            s = Signal(shape, name=name)
            m.d.comb += s.eq(x + Mux(sel, y << shift, y))
            return s

        # Rows: bricks of one activation digit row, weighted by the weight digit positions.
        l1_shape = Shape.cast(range(self._l1[0], self._l1[1] + 1))
        row_shape = Shape.cast(range(self._row[0], self._row[1] + 1))
        rows = []
        for u in range(4):
            p01 = add(bricks[u, 0], bricks[u, 1], mode.b_prec >= 1, 2, l1_shape, f"r{u}_01")
            p23 = add(bricks[u, 2], bricks[u, 3], mode.b_prec >= 1, 2, l1_shape, f"r{u}_23")
            rows.append(add(p01, p23, mode.b_prec == 2, 4, row_shape, f"row{u}"))
        a_prec = mode.a_prec
        if self._stages >= 1:
            regs = [Signal(row_shape, name=f"row{u}_q") for u in range(4)]
            a_prec = Signal(2, name="a_prec_q")
            m.d.sync += [r.eq(x) for r, x in zip(regs, rows)]
            m.d.sync += a_prec.eq(mode.a_prec)
            rows = regs
        l3_shape = Shape.cast(range(self._l3[0], self._l3[1] + 1))
        t01 = add(rows[0], rows[1], a_prec >= 1, 2, l3_shape, "t01")
        t23 = add(rows[2], rows[3], a_prec >= 1, 2, l3_shape, "t23")
        total = add(t01, t23, a_prec == 2, 4, self.result.shape(), "total")
        if self._stages >= 2:
            m.d.sync += self.result.eq(total)
        else:
            m.d.comb += self.result.eq(total)
        return m


class BitFusionPE(IntAccPE):
    """A `FusionUnit` with a wrapping accumulator: the Bit Fusion processing element.

    Each operand pair is 16 brick digits per lane (`tessera.sim.bitfusion.pack_slots`); the
    run-time ``mode`` (an index into ``modes``, held for the whole RUN) sets the precision and
    signedness, so a pair contributes 16, 8, 4, 2 or 1 products. Pipeline (the `IntAccPE`
    shell, with the fusion unit as its product function): the fusion unit's ``stages``, a
    product register, the accumulator: latency ``stages + 2``, initiation interval 1 in every
    mode.

    Parameters
    ----------
    modes : sequence of (a_bits, a_signed, b_bits, b_signed)
        The run-time modes in code order; bits in 2, 4, 8.
    acc_bits : int
        Accumulator width, 17..64.
    stages : int
        Fusion unit pipeline registers, 0..2.

    Members
    -------
    a, b : In(32)
    mode : In(range(len(modes)))
    valid, first, last : In(1)
    result : Out(signed(acc_bits))
    result_valid : Out(1)
    """

    def __init__(self, *, modes, acc_bits=32, stages=1):
        modes = tuple(tuple(md) for md in modes)
        if not modes:
            raise ValueError("modes must name at least one mode, not ()")
        for md in modes:
            if len(md) != 4 or md[0] not in PRECISIONS or md[2] not in PRECISIONS:
                raise ValueError(f"a mode must be (a_bits, a_signed, b_bits, b_signed) with "
                                 f"bits in 2, 4, 8, not {md!r}")
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) \
                or not 17 <= acc_bits <= 64:
            raise ValueError(f"acc_bits must be an integer 17..64, not {acc_bits!r}")
        self._modes, self._acc_bits = modes, acc_bits
        self._fu = FusionUnit(stages=stages)
        super().__init__(PESignature(a_shape=32, b_shape=32, acc_shape=signed(acc_bits),
                                     lanes=16, mode_shape=range(len(modes))))

    @property
    def front(self):
        return self._fu.stages

    @property
    def acc_bits(self):
        return self._acc_bits

    def products(self, m):
        m.submodules.fu = fu = self._fu
        # The mode code decoded into the fusion unit's fields (a constant table).
        with m.Switch(self.mode):
            for code, (ab, asg, bb, bsg) in enumerate(self._modes):
                with m.Case(code):
                    m.d.comb += [fu.mode.a_prec.eq(PRECISIONS.index(ab)),
                                 fu.mode.b_prec.eq(PRECISIONS.index(bb)),
                                 fu.mode.a_signed.eq(asg), fu.mode.b_signed.eq(bsg)]
        m.d.comb += [fu.a.eq(self.a), fu.b.eq(self.b)]
        return {"prod": fu.result}
