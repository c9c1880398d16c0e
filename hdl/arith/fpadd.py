"""Floating-point adder for any `FloatFormat`."""

from amaranth import Module

from .fpcommon import (FormatInfo, Pipeline, add_align, add_sum, check_format, exp_width,
                       normalize, plan_cuts, register_inputs, round_pack, underflow_floor, unpack)
from .fpunit import FPUnit


__all__ = ["FPAdd"]


class FPAdd(FPUnit):
    """Pipelined floating-point adder ``result = round(a + b)``.

    Bit-exact with ``tessera.sim.fp.add(fmt, a, b, ftz=ftz)`` (and with ``sr_bits=d, rand=rand`` for
    stochastic rounding). One result per cycle; ``result`` belongs to the operands (and
    ``rand``) presented ``latency`` cycles earlier.

    Parameters
    ----------
    fmt : FloatFormat
        Operand and result format.
    ftz : bool
        Flush-to-zero on inputs and results.
    sr_bits : int
        0 (round to nearest with ``fmt.rounding``) or 1..32: stochastic rounding with a
        ``sr_bits``-wide ``rand`` input.
    stages : int
        Pipeline registers, 1..4 (= ``latency``). Placement by stage count: output; + after
        the add; + after alignment; + after the normaliser.

    Members
    -------
    a : In(fmt.width)
    b : In(fmt.width)
    rand : In(sr_bits)
        Only when ``sr_bits > 0``.
    result : Out(fmt.width)
    """

    def __init__(self, *, fmt, ftz=False, sr_bits=0, stages=1):
        self._fmt = check_format("fmt", fmt)
        self._fp_params(ftz=ftz, sr_bits=sr_bits, stages=stages)
        super().__init__(self._members({"a": fmt.width, "b": fmt.width}, {"result": fmt.width}))

    fmt = property(lambda self: self._fmt)

    def elaborate(self, platform):
        m = Module()
        fmt, d = self._fmt, self._sr_bits
        info = FormatInfo(fmt)
        cuts, n_in = plan_cuts(self._stages, ["sum", "align", "norm"])
        pipe = Pipeline(m, "add")
        rand = self.rand if d else None
        ins = [self.a, self.b] + ([rand] if d else [])
        ins = register_inputs(m, ins, n_in)
        a, b = ins[0], ins[1]
        rand = ins[2] if d else None
        x = unpack(fmt, a, ftz=self._ftz)
        y = unpack(fmt, b, ftz=self._ftz)
        ew = exp_width(fmt)
        width = max(info.p, info.p + d) + 3
        floor = underflow_floor(fmt, self._ftz)
        al = add_align(m, x, y, width=width, ew=ew, floor=floor)
        al = pipe.cut("align" in cuts, *al)
        if d:
            rand = pipe.cut("align" in cuts, rand)
        s = add_sum(m, al)
        s = pipe.cut("sum" in cuts, s)
        if d:
            rand = pipe.cut("sum" in cuts, rand)
        exp, sig = normalize(m, s.exp, s.sig, floor=floor, keep=info.p + max(d, 1))
        s = pipe.cut("norm" in cuts, s.replace(exp=exp, sig=sig))
        if d:
            rand = pipe.cut("norm" in cuts, rand)
        code = round_pack(m, fmt, s, ftz=self._ftz, rounding="sr" if d else None, rand=rand,
                          sr_bits=d, floored=floor is not None)
        m.d.sync += self.result.eq(code)
        return m
