"""``fpmac``'s arithmetic as parts (`tessera.hdl.array.parts`): rounding every step (with or
without chunks) and exact window accumulation, for engines that compose their own PEs.

A weight-stationary column sums the ``rows`` pairs of one K tile in the order of the output-
stationary PE, from ``+0``: ``FPStepParts`` rounds into ``fmt_acc`` at each row (the same
`step_add` as `FPMac`'s loop), with ``chunk`` the inner sum restarts every ``chunk`` rows and
the outer sum takes each finished chunk one row later (`code_add`, as `FPMac` does one cycle
later); ``FPExactParts`` adds window addends (`exact_product`, the same as `FPExactMac`'s)
exactly and rounds once below the last row (`exact_finish`). The column's result is therefore
the output-stationary PE's result for a RUN of ``rows`` pairs, bit for bit; the output stage
combines the K tiles with the kind's FP adder.
"""

from amaranth import Cat, Const
from amaranth.lib import wiring

from tessera.hdl.array.parts import Parts
from tessera.hdl.array.pe import PESignature

from .fpcommon import (Pipeline, Unpacked, check_format, exp_width, multiply_norm, normalize1,
                       plan_cuts)
from .fpexact import CUTS, ExactWindow, exact_finish, exact_product
from .fpmac import code_add, step_add, step_width


__all__ = ["FPStepParts", "FPExactParts"]

#: `FPExactParts`'s registers after the window (``stages`` places them as `FPExactMac` does).
FINISH_CUTS = ("abs", "norm", "out")


def _stages(stages, lo, hi):
    if isinstance(stages, bool) or not isinstance(stages, int) or not lo <= stages <= hi:
        raise ValueError(f"stages must be an int in {lo}..{hi}, not {stages!r}")
    return stages


class FPStepParts(Parts, wiring.Component):
    """``fpmac`` with ``accumulate = "step"``: the exact product of a pair (`multiply_norm`,
    normalised), added into the ``fmt_acc`` partial sum with one rounding per row.

    ``stages`` is the kind's PE latency; its register placement decides ``front``: the
    multiplier register (`FPMac`'s ``"mul"`` cut) when `FPMac` would place one. Without
    ``chunk`` the partial sum is the ``fmt_acc`` code and `finish` is the identity; with
    ``chunk`` it is (inner, outer) codes, the inner one restarting at rows ``0, chunk, ...``,
    the outer one taking each finished chunk at the next chunk's first row, and `finish`
    (one register) the final ``round(outer + inner)``.

    Members: those of ``PESignature(a_shape=fmt_in.width, b_shape=fmt_in.width,
    acc_shape=fmt_acc.width)``.
    """

    def __init__(self, *, fmt_in, fmt_acc, chunk=None, stages=2):
        self._fi = check_format("fmt_in", fmt_in)
        self._fa = check_format("fmt_acc", fmt_acc)
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int)
                                  or chunk < 1):
            raise ValueError(f"chunk must be None (no chunking) or an int >= 1, not {chunk!r}")
        self._chunk = chunk
        if chunk is None:
            cuts, _ = plan_cuts(_stages(stages, 1, 4), ["pnorm", "mul", "out"], fixed=1)
        else:
            cuts, _ = plan_cuts(_stages(stages, 2, 4), ["pnorm", "mul"], fixed=2)
        self._front = 1 if "mul" in cuts else 0
        super().__init__(PESignature(a_shape=fmt_in.width, b_shape=fmt_in.width,
                                     acc_shape=fmt_acc.width))

    fmt_in = property(lambda self: self._fi)
    fmt_acc = property(lambda self: self._fa)
    chunk = property(lambda self: self._chunk)

    @property
    def front(self):
        return self._front

    @property
    def finish_latency(self):
        return 0 if self._chunk is None else 1

    def products(self, m):
        prod = multiply_norm(m, self._fi, self.a, self.b, name="mul")
        prod = Pipeline(m, "fp").cut(bool(self._front), prod)
        exp, sig = normalize1(m, prod.exp, prod.sig, name="pn")
        return dict(zip(Unpacked.FIELDS, prod.replace(exp=exp, sig=sig).values()))

    def term(self, m, regs):
        return Unpacked(**regs)

    def _step(self, m, term, acc_code):
        return step_add(m, self._fa, term, acc_code,
                        width=step_width(self._fi, self._fa, len(term.sig)),
                        ew=exp_width(self._fi, self._fa), name="s")

    def _outer(self, row):
        """Whether the partial sum after ``row`` carries an outer sum."""
        return self._chunk is not None and row >= self._chunk

    def accumulate(self, m, psum, term, row):
        fa = self._fa
        zero = Const(0, fa.width)
        if self._chunk is None:
            return self._step(m, term, zero if psum is None else psum)
        start = row % self._chunk == 0
        inner = self._step(m, term, zero if start else psum[:fa.width])
        if not self._outer(row):
            return inner
        outer_in = psum[fa.width:] if self._outer(row - 1) else zero
        outer = (code_add(m, fa, outer_in, psum[:fa.width], ew=exp_width(self._fi, fa))
                 if start else outer_in)
        return Cat(inner, outer)

    def finish(self, m, psum, rows):
        if self._chunk is None:
            return psum
        fa = self._fa
        outer = psum[fa.width:] if self._outer(rows - 1) else Const(0, fa.width)
        code = code_add(m, fa, outer, psum[:fa.width], ew=exp_width(self._fi, fa))
        return Pipeline(m, "fin").cut(True, code)


class FPExactParts(Parts, wiring.Component):
    """``fpmac`` with ``accumulate = "exact"``: each pair's exact product as a window addend
    with NaN/+Inf/-Inf flags (`exact_product`); partial sums add exactly in a window sized for
    their rows (`ExactWindow` of ``row + 1`` products) and OR the flags; `finish` rounds once
    into ``fmt_acc`` (`exact_finish`).

    ``stages`` (1..6) places registers as `FPExactMac` does: ``"mul"`` becomes ``front``,
    ``"abs"``, ``"norm"``, ``"out"`` are `finish`'s registers (``finish_latency``); the
    product register sits where `FPExactMac`'s ``"align"`` register does.

    Members: those of ``PESignature(a_shape=fmt_in.width, b_shape=fmt_in.width,
    acc_shape=fmt_acc.width)``.
    """

    def __init__(self, *, fmt_in, fmt_acc, stages=3):
        self._fi = check_format("fmt_in", fmt_in)
        self._fa = check_format("fmt_acc", fmt_acc)
        self._cuts, _ = plan_cuts(_stages(stages, 1, 6), list(CUTS), fixed=1)
        super().__init__(PESignature(a_shape=fmt_in.width, b_shape=fmt_in.width,
                                     acc_shape=fmt_acc.width))

    fmt_in = property(lambda self: self._fi)
    fmt_acc = property(lambda self: self._fa)

    @property
    def front(self):
        return 1 if "mul" in self._cuts else 0

    @property
    def finish_latency(self):
        return len(self._cuts & set(FINISH_CUTS))

    def window(self, count):
        """The window that holds a sum of ``count`` products."""
        return ExactWindow(self._fi, count)

    def products(self, m):
        addend, nan, pinf, ninf = exact_product(m, self._fi, self.window(1), self.a, self.b,
                                                pipe=Pipeline(m, "xp"), mul_cut=bool(self.front))
        return {"addend": addend, "p_nan": nan, "p_pinf": pinf, "p_ninf": ninf}

    def term(self, m, regs):
        return regs["addend"], regs["p_nan"], regs["p_pinf"], regs["p_ninf"]

    def accumulate(self, m, psum, term, row):
        addend, nan, pinf, ninf = term
        w = self.window(row + 1).width
        if psum is None:
            return Cat(addend.as_unsigned()[:w], nan, pinf, ninf)
        wp = self.window(row).width
        s = psum[:wp].as_signed() + addend
        return Cat(s.as_unsigned()[:w], psum[wp] | nan, psum[wp + 1] | pinf,
                   psum[wp + 2] | ninf)

    def finish(self, m, psum, rows):
        win = self.window(rows)
        w = win.width
        (code,) = exact_finish(m, self._fa, win, psum[:w].as_signed(), psum[w], psum[w + 1],
                               psum[w + 2], pipe=Pipeline(m, "fin"), cuts=self._cuts)
        return code
