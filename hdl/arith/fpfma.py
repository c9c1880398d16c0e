"""Fused multiply-add ``round_acc(a * b + c)`` for any pair of `FloatFormat`."""

from amaranth import Module

from .fpcommon import (FormatInfo, Pipeline, add_align, add_sum, check_format, exp_width,
                       multiply, multiply_norm, normalize, normalize1, plan_cuts,
                       register_inputs, round_pack, underflow_floor, unpack)
from .fpunit import FPUnit


__all__ = ["FPFMA", "fma_datapath"]


def fma_datapath(m, *, fmt_in, fmt_acc, a, b, c_unpacked, ftz, sr_bits, rand, cut, name="fma"):
    """Shared FMA datapath from operand codes to the normalised sum (before rounding).

    ``cut(point, *values)`` is called at the points ``"mul"``, ``"pnorm"``, ``"align"``,
    ``"sum"``, ``"norm"`` and returns the (possibly registered) values. ``c_unpacked`` is a
    function ``() -> Unpacked`` evaluated after the ``"pnorm"`` cut (so it sees the same cycle).
    Returns ``(Unpacked, rand)``; with gradual underflow in ``fmt_acc`` the result is
    floored (pass ``floored=True`` to `round_pack`).
    """
    ia, iacc = FormatInfo(fmt_in), FormatInfo(fmt_acc)
    d = sr_bits
    floor = underflow_floor(fmt_acc, ftz)
    width = max(2 * ia.p, iacc.p, iacc.p + d) + 3
    # The product may stay unnormalised when the window is wide enough for the most leading
    # zeros a product can have while it is the operand with the larger exponent (module
    # docstring of fpcommon: the result then keeps p + guard bits above the jammed sticky).
    raw = floor is not None and width >= iacc.p + max(d, 1) + _big_product_lz(ia, floor) + 2
    if raw:
        prod = multiply(unpack(fmt_in, a, ftz=ftz), unpack(fmt_in, b, ftz=ftz))
        prod, rand = cut("mul", prod, rand)
    else:
        prod = multiply_norm(m, fmt_in, a, b, ftz=ftz, name=f"{name}_mul")
        prod, rand = cut("mul", prod, rand)
        exp, sig = normalize1(m, prod.exp, prod.sig, name=f"{name}_pn")
        prod = prod.replace(exp=exp, sig=sig)
    prod, rand = cut("pnorm", prod, rand)
    c = c_unpacked()
    ew = exp_width(fmt_in, fmt_acc)
    al = add_align(m, prod, c, width=width, ew=ew, name=f"{name}_add", floor=floor)
    *al, rand = cut("align", *al, rand)
    s = add_sum(m, al, name=f"{name}_add")
    s, rand = cut("sum", s, rand)
    exp, sig = normalize(m, s.exp, s.sig, name=f"{name}_sn", floor=floor,
                         keep=iacc.p + max(d, 1))
    s, rand = cut("norm", s.replace(exp=exp, sig=sig), rand)
    return s, rand


def _big_product_lz(ia, floor):
    """Most leading zeros of a non-zero exact product of two ``ia`` significands whose
    exponent is at least ``floor`` (subnormal operands give leading zeros)."""
    emax = ia.emax_field - ia.bias
    cases = [(2 * emax + 1, 1)]
    if ia.subnormals:
        cases += [(ia.emin + emax + 1, ia.man + 1), (2 * ia.emin + 1, 2 * ia.man + 1)]
    return max(lz for e, lz in cases if e >= floor or lz == 1)


class FPFMA(FPUnit):
    """Pipelined fused multiply-add ``result = round_acc(a * b + c)`` with a single rounding.

    ``a`` and ``b`` are ``fmt_in`` codes; ``c`` and ``result`` are ``fmt_acc`` codes. Bit-exact
    with ``tessera.sim.fp.fma(fmt_in, a, b, fmt_acc, c, ftz=ftz[, sr_bits, rand])``. One result per
    cycle; ``result`` belongs to the operands presented ``latency`` cycles earlier.

    Parameters
    ----------
    fmt_in : FloatFormat
        Multiplicand format.
    fmt_acc : FloatFormat or None
        Addend and result format (default ``fmt_in``).
    ftz : bool
        Flush-to-zero on inputs and result.
    sr_bits : int
        0 (nearest rounding with ``fmt_acc.rounding``) or 1..32 (stochastic, ``rand`` input).
    stages : int
        Pipeline registers, 1..4 (= ``latency``). Placement by stage count: output; + after
        the add; + after the alignment shifter; + after the multiplier.

    Members
    -------
    a : In(fmt_in.width)
    b : In(fmt_in.width)
    c : In(fmt_acc.width)
    rand : In(sr_bits)
        Only when ``sr_bits > 0``.
    result : Out(fmt_acc.width)
    """

    def __init__(self, *, fmt_in, fmt_acc=None, ftz=False, sr_bits=0, stages=1):
        self._fmt_in = check_format("fmt_in", fmt_in)
        self._fmt_acc = fmt_in if fmt_acc is None else check_format("fmt_acc", fmt_acc)
        self._fp_params(ftz=ftz, sr_bits=sr_bits, stages=stages)
        super().__init__(self._members(
            {"a": self._fmt_in.width, "b": self._fmt_in.width, "c": self._fmt_acc.width},
            {"result": self._fmt_acc.width}))

    fmt_in = property(lambda self: self._fmt_in)
    fmt_acc = property(lambda self: self._fmt_acc)

    def elaborate(self, platform):
        m = Module()
        d = self._sr_bits
        cuts, n_in = plan_cuts(self._stages, ["sum", "align", "mul", "norm"])
        pipe = Pipeline(m, "fma")
        ins = [self.a, self.b, self.c] + ([self.rand] if d else [])
        ins = register_inputs(m, ins, n_in)
        a, b, c = ins[:3]
        rand = ins[3] if d else None
        # c travels beside the product up to the alignment step
        c_holder = [c]

        def cut(point, *values):
            on = point in cuts
            if point in ("mul", "pnorm"):
                *values, c_holder[0] = pipe.cut(on, *values, c_holder[0])
                return tuple(values)
            return pipe.cut(on, *values)

        s, rand = fma_datapath(
            m, fmt_in=self._fmt_in, fmt_acc=self._fmt_acc, a=a, b=b,
            c_unpacked=lambda: unpack(self._fmt_acc, c_holder[0], ftz=self._ftz),
            ftz=self._ftz, sr_bits=d, rand=rand if d else 0, cut=cut)
        code = round_pack(m, self._fmt_acc, s, ftz=self._ftz, rounding="sr" if d else None,
                          rand=rand, sr_bits=d,
                          floored=underflow_floor(self._fmt_acc, self._ftz) is not None)
        m.d.sync += self.result.eq(code)
        return m
