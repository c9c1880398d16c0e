"""Exact fixed-point (Kulisch-style) accumulation of floating-point products: the window a pair
of formats needs, and the MAC processing element that accumulates in it."""

from dataclasses import dataclass

from amaranth import Cat, Const, Module, Mux, Signal, signed

from tessera.hdl.array.pe import PE, PESignature

from .formats import FloatFormat
from .fpcommon import (FormatInfo, Pipeline, Unpacked, check_format, normalize, plan_cuts,
                       register_inputs, round_pack, special_codes, underflow_floor)


__all__ = ["ExactWindow", "FPExactMac", "MAX_WINDOW_BITS", "CUTS", "exact_product",
           "exact_finish"]

#: Widest window the ``fpmac`` kind builds (sign and guard bits included): FP16 operands with
#: K up to 32768 need 96 bits; BF16 (522), DLFloat16 (146) and FP32 (554 bits) do not fit.
MAX_WINDOW_BITS = 96

#: Register positions of `FPExactMac` beyond the accumulator, in the order extra ``stages``
#: place them: the output path (magnitude | normalise | round) and the product path
#: (unpack and multiply | shift) are the long ones; the loop itself is one add.
CUTS = ("abs", "align", "mul", "norm", "out")


@dataclass(frozen=True)
class ExactWindow:
    """The two's-complement fixed-point window that holds every sum of up to ``max_k`` exact
    products of two ``fmt_in`` numbers.

    Every finite ``fmt_in`` value is ``sig * 2**(e - man_bits)`` with ``e >= emin``, so every
    product is an integer multiple of ``2**lsb``, ``lsb = 2 * (emin - man_bits)``, and lies at
    most ``max_finite**2`` in magnitude. The window's bit 0 weighs ``2**lsb``; ``product_bits``
    magnitude bits hold the largest product, ``guard_bits`` more hold ``max_k`` of them, and
    one sign bit makes ``width``. A product sits ``shift`` bits up (0..``shift_max``):
    ``shift = (field_a - field_min) + (field_b - field_min)`` with each exponent field read as
    ``max(field, 1)`` in formats with subnormals.

    Parameters
    ----------
    fmt_in : FloatFormat
        Operand format.
    max_k : int
        Longest accumulation (products) the window holds without overflow, >= 1.
    """
    fmt_in: FloatFormat
    max_k: int

    def __post_init__(self):
        check_format("fmt_in", self.fmt_in)
        if isinstance(self.max_k, bool) or not isinstance(self.max_k, int) or self.max_k < 1:
            raise ValueError(f"max_k must be a positive integer, not {self.max_k!r}")

    @property
    def field_min(self):
        """Exponent field of the lowest binade (1 with subnormals, 0 without)."""
        return 1 if self.fmt_in.subnormals else 0

    @property
    def lsb(self):
        """Exponent of the window's bit 0: the weight of the smallest product's last bit."""
        return 2 * (self.fmt_in.emin - self.fmt_in.man_bits)

    @property
    def max_sig(self):
        """Significand (hidden bit included) of the largest finite operand."""
        f = self.fmt_in
        return (1 << f.man_bits) | (f.max_finite_code & f.man_mask)

    @property
    def shift_max(self):
        """Largest product shift: twice the span of exponent fields with finite values."""
        f = self.fmt_in
        return 2 * ((f.max_finite_code >> f.man_bits) - self.field_min)

    @property
    def max_product(self):
        """The largest product magnitude in window units (``max_finite**2 / 2**lsb``)."""
        return self.max_sig ** 2 << self.shift_max

    @property
    def product_bits(self):
        """Magnitude bits of one product placed in the window."""
        return self.max_product.bit_length()

    @property
    def magnitude_bits(self):
        """Magnitude bits of a sum of ``max_k`` products."""
        return (self.max_k * self.max_product).bit_length()

    @property
    def guard_bits(self):
        return self.magnitude_bits - self.product_bits

    @property
    def width(self):
        """Window width in bits, sign included."""
        return self.magnitude_bits + 1

    @property
    def top(self):
        """Exponent of the window's most significant bit (the sign bit)."""
        return self.lsb + self.width - 1

    def as_dict(self):
        return {"lsb": self.lsb, "width": self.width, "product_bits": self.product_bits,
                "guard_bits": self.guard_bits, "max_k": self.max_k}


def _check_max_k(max_k):
    if isinstance(max_k, bool) or not isinstance(max_k, int) or not 1 <= max_k <= 1 << 20:
        raise ValueError(f"max_k must be an int in 1..{1 << 20}, not {max_k!r}")
    return max_k


def _operand(fmt_in, code):
    """Sign, shift contribution, significand (0 unless finite non-zero), NaN, Inf."""
    info = FormatInfo(fmt_in)
    code = Cat(code)
    sign = code[info.width - 1]
    field = code[info.man:info.man + info.eb]
    frac = code[:info.man]
    mag = code[:info.width - 1]
    if info.specials == "ieee":
        nan = (field == info.field_max) & (frac != 0)
        inf = (field == info.field_max) & (frac == 0)
    elif info.specials == "fnuz":
        nan = sign & (mag == 0)
        inf = Const(0, 1)
    else:                          # fn, merged: the all-ones magnitude is NaN (NINF)
        nan = mag == (1 << (info.width - 1)) - 1
        inf = Const(0, 1)
    if info.subnormals:
        hidden = field != 0
        shift = Mux(field == 0, 0, field - 1)
    else:
        hidden = mag != 0          # the all-zero magnitude is zero, not 2**-bias
        shift = field
    sig = Mux(nan | inf, 0, Cat(frac, hidden))
    return sign, shift, sig, nan, inf


def exact_product(m, fmt_in, win, a, b, *, pipe, mul_cut, ctl=()):
    """The exact product of codes ``a`` and ``b`` as a window addend, in module ``m``:
    unpack and multiply (significands, exponent-field sums), then, after a register when
    ``mul_cut`` (``pipe``, with the control values ``ctl``), negate the short product for a
    negative sign and shift it into the window with sign extension (cheaper than negating the
    placed one). Returns ``(addend, nan, pinf, ninf, *ctl)``: a ``signed(product_bits + 1)``
    addend and the product's NaN, +Inf and -Inf flags (the sticky flags' inputs)."""
    sa, sha, ma, na, ia = _operand(fmt_in, a)
    sb, shb, mb, nb, ib = _operand(fmt_in, b)
    zero_a, zero_b = (ma == 0) & ~na & ~ia, (mb == 0) & ~nb & ~ib
    p_nan = Signal(name="p_nan")
    p_inf = Signal(name="p_inf")
    m.d.comb += [p_nan.eq(na | nb | (ia & zero_b) | (ib & zero_a)),
                 p_inf.eq((ia | ib) & ~p_nan)]
    p_sign = Signal(name="p_sign")
    p_sig = Signal(2 * fmt_in.precision, name="p_sig")
    p_shift = Signal(range(win.shift_max + 1), name="p_shift")
    m.d.comb += [p_sign.eq(sa ^ sb), p_sig.eq(ma * mb), p_shift.eq(sha + shb)]
    p_sign, p_sig, p_shift, p_nan, p_inf, *ctl = pipe.cut(
        mul_cut, p_sign, p_sig, p_shift, p_nan, p_inf, *ctl)
    neg = Signal(name="neg")
    m.d.comb += neg.eq(p_sign & (p_sig != 0))          # -0 adds nothing
    p_signed = Signal(signed(len(p_sig) + 1), name="p_signed")
    m.d.comb += p_signed.eq(Mux(neg, -p_sig, p_sig))
    addend = Signal(signed(win.product_bits + 1), name="addend")
    m.d.comb += addend.eq(p_signed << p_shift)
    return (addend, p_nan, p_inf & ~p_sign, p_inf & p_sign, *ctl)


def exact_finish(m, fa, win, acc, nan_s, pinf_s, ninf_s, *, pipe, cuts, ctl=()):
    """Leave the window: the ``fa`` code of the exact sum ``acc`` (``signed(win.width)``)
    with the sticky flags, in module ``m``, with a register after each of ``"abs"``,
    ``"norm"``, ``"out"`` in ``cuts`` (``pipe``; the values ``ctl`` follow). Returns
    ``(code, *ctl)``.

    Only magnitudes below 2**(emax_acc + 1) can round to a finite result, so the normaliser
    sees the window bits below that (``nb`` of them; above, ``big`` means overflow), and bits
    below fa's lowest guard bit are only a sticky bit (``lo`` of them jammed into one)."""
    W = win.width
    info = FormatInfo(fa)
    nb = min(W - 1, fa.emax + 1 - win.lsb)
    lo = 0
    if fa.subnormals:
        lo = min(max(0, fa.emin - fa.man_bits - 1 - win.lsb), max(nb - 1, 0))
    s_neg = acc[W - 1]
    low = acc.as_unsigned()[:nb + 1]
    mag_low = Signal(nb + 1, name="mag_low")
    m.d.comb += mag_low.eq(Mux(s_neg, -low, low))
    big = Signal(name="big")
    if nb < W - 1:
        hi = acc.as_unsigned()[nb:]
        m.d.comb += big.eq(~((hi == 0) | (hi == (1 << len(hi)) - 1)) | mag_low[nb])
    mag = Signal(nb - lo + (1 if lo else 0), name="mag")
    m.d.comb += mag.eq(Cat(mag_low[:lo].any(), mag_low[lo:nb]) if lo else mag_low[:nb])
    nan = Signal(name="nan")
    inf = Signal(name="inf")
    m.d.comb += [nan.eq(nan_s | (pinf_s & ninf_s)), inf.eq((pinf_s | ninf_s) & ~nan)]
    sign = Signal(name="sign")
    m.d.comb += sign.eq(Mux(inf, ninf_s, s_neg))
    mag, sign, nan, inf, big, *ctl = pipe.cut("abs" in cuts, mag, sign, nan, inf, big, *ctl)

    top = win.lsb + nb - 1                    # exponent of mag's most significant bit
    floor = underflow_floor(fa)
    if floor is not None and top < floor:     # the whole window is below fa's
        floor = None                          # normal range: round_pack denormalises
    ew = max(abs(top), abs(win.lsb), abs(fa.emin) + fa.man_bits + 2).bit_length() + 3
    exp, sig = normalize(m, Const(top, signed(ew)), mag, name="xn", floor=floor,
                         keep=info.p + 1)
    v = Unpacked(sign=sign, exp=exp, sig=sig, zero=(mag == 0) & ~nan & ~inf, inf=inf,
                 nan=nan)
    v, big, *ctl = pipe.cut("norm" in cuts, v, big, *ctl)
    code = Signal(fa.width, name="code")
    rounded = round_pack(m, fa, v, name="xr", floored=floor is not None)
    _, inf_c, sat_c = special_codes(info, v.sign)
    m.d.comb += code.eq(Mux(big & ~v.nan & ~v.inf, inf_c if fa.overflow == "inf" else sat_c,
                            rounded))
    out = pipe.cut("out" in cuts, code, *ctl)
    return tuple(out) if ctl else (out,)


class FPExactMac(PE):
    """Streaming MAC with exact accumulation: ``result = round_acc(sum of a[n] * b[n])``.

    A processing element (`tessera.hdl.array.pe.PE`, II = 1). Each product of two ``fmt_in``
    codes is formed exactly and added, as a shifted integer, into the two's-complement window of
    `ExactWindow` ``(fmt_in, max_k)``; the sum is therefore exact for every accumulation of at
    most ``max_k`` pairs, and it is rounded once, into ``fmt_acc``, when it leaves the PE.
    ``first`` starts a new sum (from exact zero), ``last`` ends it; ``result_valid`` pulses with
    the ``fmt_acc`` code exactly ``latency`` cycles after the ``last`` pair. A new accumulation
    may start the cycle after ``last``; pairs with ``valid`` low are ignored. An accumulation
    longer than ``max_k`` pairs may wrap: the PE kind makes sure no RUN asks for one.

    Special values travel beside the window as sticky flags: any NaN operand, ``0 * Inf``, or
    both ``+Inf`` and ``-Inf`` products give the canonical NaN of ``fmt_acc``; otherwise an
    ``Inf`` product gives ``Inf`` of its sign (the canonical NaN in a format without Inf). A
    finite sum is never Inf before the final rounding (no intermediate overflow), so it
    overflows only if the exact sum does. An exact zero sum is ``+0``; a non-zero sum that
    rounds to zero keeps its sign. Bit-exact with ``tessera.sim.fp.exact_mac``.

    Microarchitecture: unpack and multiply (significands, exponent-field sums); negate the
    short product for a negative sign and shift it into the window with sign extension; the
    one-cycle loop is ``acc = first ? addend : acc + addend``, one window-wide add. At the
    output: the magnitude of the window bits below ``2**(fmt_acc.emax + 1)`` (a sum reaching
    it overflows whatever its low bits), the bits under ``fmt_acc``'s lowest guard bit as one
    sticky bit, leading-zero count and normalisation with ``fmt_acc``'s gradual-underflow
    floor, one `round_pack`. Only the add is in the loop, so the clock no longer waits for an
    FP adder.

    Parameters
    ----------
    fmt_in : FloatFormat
        Operand format.
    fmt_acc : FloatFormat
        Result format (the one rounding).
    max_k : int
        Longest accumulation the window is sized for (guard bits), 1..2**20.
    stages : int
        Latency, 1..6. Registers go, in this order: accumulator (always), after the
        magnitude (``"abs"``), on the aligned addend (``"align"``), after the multiplier
        (``"mul"``), after the normaliser (``"norm"``), on the result (``"out"``).

    Members
    -------
    a : In(fmt_in.width)
    b : In(fmt_in.width)
    valid : In(1)
    first : In(1)
    last : In(1)
    result : Out(fmt_acc.width)
    result_valid : Out(1)
    """

    def __init__(self, *, fmt_in, fmt_acc, max_k=32768, stages=3):
        self._fmt_in = check_format("fmt_in", fmt_in)
        self._fmt_acc = check_format("fmt_acc", fmt_acc)
        self._window = ExactWindow(fmt_in, _check_max_k(max_k))
        if isinstance(stages, bool) or not isinstance(stages, int) or not 1 <= stages <= 6:
            raise ValueError(f"stages must be an int in 1..6, not {stages!r}")
        self._stages = stages
        super().__init__(PESignature(a_shape=fmt_in.width, b_shape=fmt_in.width,
                                     acc_shape=fmt_acc.width))

    fmt_in = property(lambda self: self._fmt_in)
    fmt_acc = property(lambda self: self._fmt_acc)
    window = property(lambda self: self._window)
    max_k = property(lambda self: self._window.max_k)
    stages = property(lambda self: self._stages)

    @property
    def latency(self):
        return self._stages

    def elaborate(self, platform):
        m = Module()
        win = self._window
        cuts, n_in = plan_cuts(self._stages, list(CUTS), fixed=1)
        pipe = Pipeline(m, "xmac")

        a, b, valid, first, last = register_inputs(
            m, [self.a, self.b, self.valid, self.first, self.last], n_in)
        addend, p_nan, p_pinf, p_ninf, valid, first, last = exact_product(
            m, self._fmt_in, win, a, b, pipe=pipe, mul_cut="mul" in cuts,
            ctl=(valid, first, last))
        addend, p_nan, p_pinf, p_ninf, valid, first, last = pipe.cut(
            "align" in cuts, addend, p_nan, p_pinf, p_ninf, valid, first, last)

        # ---- the loop: one window-wide add (``first`` selects the addend after the adder,
        # so the selection shares the adder's LUTs instead of masking its input)
        acc = Signal(signed(win.width), name="acc")
        nan_s = Signal(name="nan_s")
        pinf_s = Signal(name="pinf_s")
        ninf_s = Signal(name="ninf_s")
        with m.If(valid):
            m.d.sync += [
                acc.eq(Mux(first, addend, acc + addend)),
                nan_s.eq((nan_s & ~first) | p_nan),
                pinf_s.eq((pinf_s & ~first) | p_pinf),
                ninf_s.eq((ninf_s & ~first) | p_ninf),
            ]
        done = Signal(name="done")
        m.d.sync += done.eq(valid & last)
        code, done = exact_finish(m, self._fmt_acc, win, acc, nan_s, pinf_s, ninf_s, pipe=pipe,
                                  cuts=cuts, ctl=(done,))
        m.d.comb += [self.result.eq(code), self.result_valid.eq(done)]
        return m
