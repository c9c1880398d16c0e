"""Floating-point epilogue: bias add in the accumulator format, conversion to the operand
format, ReLU.

The rule (``docs/epilogue.md``; twin `tessera.sim.fpepilogue.fp_epilogue`, independent
reference `tessera.sim.fpepilogue_ref`), for an accumulator code ``acc`` and a per-channel
``bias`` code (both ``fmt_acc``) and the RUN's ``relu`` bit:

1. ``s = round_acc(acc + bias)``: one IEEE addition in the accumulator format (`FPAdd`: the
   format's rounding, overflow and NaN/Inf rules, ``+0`` for ``x + (-x)``).
2. ``y = round_in(s)``: one conversion to the operand format (`FPConvert` with the operand
   format's rounding, RNE for every format but dlfloat16 (RNU, its defined rule), and its
   overflow rule: Inf where the format has Inf, else its NaN code, or saturation where the
   format says so; NaN gives the canonical NaN code).
3. With ``relu``: every code whose sign bit is set and that is not NaN (negative numbers,
   ``-0``, ``-Inf``) becomes ``+0``; NaN passes through (``max(NaN, 0)`` is NaN, as in
   PyTorch's ``relu``).
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.arith.fpadd import FPAdd
from tessera.hdl.arith.fpcommon import check_format, unpack
from tessera.hdl.arith.fpconv import FPConvert


__all__ = ["FPEpilogue"]


class FPEpilogue(wiring.Component):
    """One lane of the FP epilogue (module docstring: the rule), pipelined, II = 1.

    Pipeline: `FPAdd` (``add_stages``), `FPConvert` (``convert_stages``), one register for
    ReLU: ``latency = add_stages + convert_stages + 1``. Inputs presented with ``valid`` in
    cycle t give ``out`` with ``out_valid`` in cycle t + `latency`.

    Parameters
    ----------
    fmt_acc, fmt_in : FloatFormat
        Accumulator and operand (output) formats.
    add_stages, convert_stages : int
        1..4 each.

    Members
    -------
    valid : In(1)
    acc, bias : In(fmt_acc.width)
    relu : In(1)
    out_valid : Out(1)
    out : Out(fmt_in.width)
    """

    def __init__(self, *, fmt_acc, fmt_in, add_stages=2, convert_stages=1):
        self._fa = check_format("fmt_acc", fmt_acc)
        self._fi = check_format("fmt_in", fmt_in)
        for name, v in (("add_stages", add_stages), ("convert_stages", convert_stages)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4:
                raise ValueError(f"{name} must be an integer 1..4, not {v!r}")
        self._sa, self._sc = add_stages, convert_stages
        super().__init__({
            "valid": In(1), "acc": In(fmt_acc.width), "bias": In(fmt_acc.width),
            "relu": In(1), "out_valid": Out(1), "out": Out(fmt_in.width),
        })

    fmt_acc = property(lambda self: self._fa)
    fmt_in = property(lambda self: self._fi)

    @property
    def latency(self):
        return self._sa + self._sc + 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.add = add = FPAdd(fmt=self._fa, stages=self._sa)
        m.submodules.cvt = cvt = FPConvert(fmt_from=self._fa, fmt_to=self._fi,
                                           stages=self._sc)
        m.d.comb += [add.a.eq(self.acc), add.b.eq(self.bias), cvt.a.eq(add.result)]
        v, relu = self.valid, self.relu
        for i in range(self._sa + self._sc):
            nv, nr = Signal(name=f"valid_{i + 1}"), Signal(name=f"relu_{i + 1}")
            m.d.sync += [nv.eq(v), nr.eq(relu)]
            v, relu = nv, nr
        y = cvt.result
        w = self._fi.width
        neg = y[w - 1] & ~unpack(self._fi, y).nan
        m.d.sync += [self.out.eq(Mux(relu & neg, 0, y)), self.out_valid.eq(v)]
        return m
