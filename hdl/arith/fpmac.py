"""Streaming floating-point multiply-accumulate with a wide accumulator, optional chunk-based
accumulation (spec/float.md 2.2) and stochastic rounding; a processing element of the PE
arrays (`tessera.hdl.array.pe.PESignature`)."""

from amaranth import Module, Mux, Signal

from tessera.hdl.array.pe import PE, PESignature

from .fpcommon import (FormatInfo, Pipeline, add, check_choice, check_format, exp_width,
                       multiply_norm, normalize, normalize1, plan_cuts, register_inputs,
                       round_pack, underflow_floor, unpack)
from .fpunit import FPUnit


__all__ = ["FPMac", "PRODUCT_ROUNDINGS", "step_add", "code_add", "step_width"]

#: Allowed values of ``product_rounding``.
PRODUCT_ROUNDINGS = ("exact_fused", "round_to_acc")


def step_width(fmt_in, fmt_acc, prod_bits, sr_bits=0):
    """Alignment window of `step_add` for a product significand of ``prod_bits`` bits."""
    p = FormatInfo(fmt_acc).p
    return max(prod_bits, p, p + sr_bits) + 3


def step_add(m, fa, prod, acc_code, *, width, ew, ftz=False, sr_bits=0, rand=None, name="i"):
    """One accumulation step: ``round_fa(acc + prod)``, the `Unpacked` exact product ``prod``
    added to the ``fa`` code ``acc_code`` with one rounding (to nearest, or stochastic with
    ``sr_bits`` bits of ``rand``). Combinational; returns the ``fa`` code. The step of
    `FPMac`'s loop and of the weight-stationary column (`tessera.hdl.arith.fpparts`)."""
    floor = underflow_floor(fa, ftz)
    acc_in = unpack(fa, acc_code, ftz=ftz)
    s = add(m, prod, acc_in, width=width, ew=ew, name=f"{name}add", floor=floor)
    exp, sig = normalize(m, s.exp, s.sig, name=f"{name}sn", floor=floor,
                         keep=FormatInfo(fa).p + max(sr_bits, 1))
    return round_pack(m, fa, s.replace(exp=exp, sig=sig), ftz=ftz,
                      rounding="sr" if sr_bits else None, rand=rand, sr_bits=sr_bits,
                      name=f"{name}rnd", floored=floor is not None)


def code_add(m, fa, x_code, y_code, *, ew, ftz=False, name="o"):
    """``round_fa(x + y)`` of two ``fa`` codes, to nearest (the chunk accumulator's outer
    add). Combinational; returns the ``fa`` code."""
    floor = underflow_floor(fa, ftz)
    p = FormatInfo(fa).p
    s = add(m, unpack(fa, x_code, ftz=ftz), unpack(fa, y_code, ftz=ftz), width=p + 3, ew=ew,
            name=f"{name}add", floor=floor)
    exp, sig = normalize(m, s.exp, s.sig, name=f"{name}sn", floor=floor, keep=p + 1)
    return round_pack(m, fa, s.replace(exp=exp, sig=sig), ftz=ftz, name=f"{name}rnd",
                      floored=floor is not None)


def _check_chunk(chunk):
    if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool)
                              or chunk < 1):
        raise ValueError(f"chunk must be None (no chunking) or an int >= 1, not {chunk!r}")
    return chunk


class FPMac(FPUnit, PE):
    """Streaming MAC: ``acc = round_acc(acc + a * b)`` per valid pair, one pair per cycle.

    A processing element (`tessera.hdl.array.pe.PE`, II = 1): its signature is a
    `PESignature` with ``a_shape = b_shape = fmt_in.width``, ``acc_shape = fmt_acc.width`` and,
    with stochastic rounding, the side-band member ``rand`` (so in a PE array the random bits
    travel with the operands). ``first`` starts a new sum (the previous one is dropped; the
    accumulator restarts from ``+0``), ``last`` ends it, and ``result_valid`` pulses with the
    finished ``fmt_acc`` code exactly ``latency`` cycles after the ``last`` pair. A new
    accumulation may start in the cycle after ``last``; pairs with ``valid`` low are ignored.

    Bit-exact with ``tessera.sim.fp.mac(fmt_in, a, b, fmt_acc, product_rounding=..., sr_bits=...,
    rand=..., ftz=...)`` or, with ``chunk``, ``tessera.sim.fp.chunk_mac(..., chunk=chunk)`` (outer adds
    round to nearest, i.e. ``rand_outer=None``).

    Microarchitecture: the product path (unpack, exact multiply, normalise, and for
    ``"round_to_acc"`` rounding into ``fmt_acc``) is pipelined; the accumulation step (align,
    add, normalise, round) is a one-cycle loop around the accumulator register, so II = 1.
    With ``chunk`` a second adder (the outer accumulator) runs one cycle behind the inner one
    and takes each finished chunk without stalling; the final result is
    ``round(outer + inner)`` including the last partial chunk.

    Parameters
    ----------
    fmt_in : FloatFormat
        Operand format.
    fmt_acc : FloatFormat
        Accumulator and result format.
    chunk : int or None
        Chunk length CL (inner accumulator cleared every CL products), or None.
    product_rounding : "exact_fused" | "round_to_acc"
        Exact product added with one rounding, or product first rounded into ``fmt_acc``.
    sr_bits : int
        0 (nearest rounding, ``fmt_acc.rounding``) or 1..32: the inner accumulation steps round
        stochastically with the ``rand`` presented with each pair.
    ftz : bool
        Flush-to-zero on operands, products and sums.
    stages : int
        Latency, 1..4 (2..4 with ``chunk``). Registers go, in this order: accumulator
        (always), outer accumulator (with ``chunk``), before the loop, after the multiplier,
        on the result (without ``chunk``), on the inputs.

    Members
    -------
    a : In(fmt_in.width)
    b : In(fmt_in.width)
    rand : In(sr_bits)
        Only when ``sr_bits > 0`` (a `PESignature` side-band member).
    valid : In(1)
    first : In(1)
    last : In(1)
    result : Out(fmt_acc.width)
    result_valid : Out(1)
    """

    def __init__(self, *, fmt_in, fmt_acc, chunk=None, product_rounding="exact_fused",
                 sr_bits=0, ftz=False, stages=2):
        self._fmt_in = check_format("fmt_in", fmt_in)
        self._fmt_acc = check_format("fmt_acc", fmt_acc)
        self._chunk = _check_chunk(chunk)
        self._product_rounding = check_choice("product_rounding", product_rounding,
                                              PRODUCT_ROUNDINGS)
        self._fp_params(ftz=ftz, sr_bits=sr_bits, stages=stages,
                        min_stages=1 if chunk is None else 2)
        super().__init__(PESignature(a_shape=fmt_in.width, b_shape=fmt_in.width,
                                     acc_shape=fmt_acc.width, side=self._rand_side()))

    fmt_in = property(lambda self: self._fmt_in)
    fmt_acc = property(lambda self: self._fmt_acc)
    chunk = property(lambda self: self._chunk)
    product_rounding = property(lambda self: self._product_rounding)

    def elaborate(self, platform):
        m = Module()
        fi, fa, d, ftz = self._fmt_in, self._fmt_acc, self._sr_bits, self._ftz
        chunked = self._chunk is not None
        if chunked:
            cuts, n_in = plan_cuts(self._stages, ["pnorm", "mul"], fixed=2)
        else:
            cuts, n_in = plan_cuts(self._stages, ["pnorm", "mul", "out"], fixed=1)
        pipe = Pipeline(m, "mac")

        ctl = [self.valid, self.first, self.last] + ([self.rand] if d else [])
        a, b, *ctl = register_inputs(m, [self.a, self.b] + ctl, n_in)
        prod = multiply_norm(m, fi, a, b, ftz=ftz, name="mul")
        prod, *ctl = pipe.cut("mul" in cuts, prod, *ctl)
        exp, sig = normalize1(m, prod.exp, prod.sig, name="pn")
        prod = prod.replace(exp=exp, sig=sig)
        if self._product_rounding == "round_to_acc":
            pcode = round_pack(m, fa, prod, ftz=ftz, name="prnd")
            prod = unpack(fa, pcode, ftz=ftz)
        prod, *ctl = pipe.cut("pnorm" in cuts, prod, *ctl)
        valid, first, last = ctl[:3]
        rand = ctl[3] if d else None

        ew = exp_width(fi, fa)
        width = step_width(fi, fa, len(prod.sig), d)

        # ---- inner accumulation loop (one cycle)
        acc = Signal(fa.width, name="acc")
        if chunked:
            ended = Signal(name="chunk_ended")      # previous pair closed a chunk
            in_first = Signal(name="in_first_chunk")
            cnt = Signal(range(self._chunk + 1), name="chunk_count")
            start = first | ended
            new_cnt = Mux(start, 1, cnt + 1)
            chunk_end = (new_cnt == self._chunk) | last
            fc_now = first | in_first
            with m.If(valid):
                m.d.sync += [cnt.eq(new_cnt), ended.eq(chunk_end),
                             in_first.eq(fc_now & ~chunk_end)]
        else:
            start = first
        code = step_add(m, fa, prod, Mux(start, 0, acc), width=width, ew=ew, ftz=ftz,
                        sr_bits=d, rand=rand, name="i")
        with m.If(valid):
            m.d.sync += acc.eq(code)

        if not chunked:
            done = Signal(name="done")
            m.d.sync += done.eq(valid & last)
            res, res_valid = pipe.cut("out" in cuts, acc, done)
            m.d.comb += [self.result.eq(res), self.result_valid.eq(res_valid)]
            return m

        # ---- outer accumulator, one cycle behind
        end_r = Signal(name="chunk_end_r")
        last_r = Signal(name="last_r")
        fc_r = Signal(name="first_chunk_r")
        m.d.sync += [end_r.eq(valid & chunk_end), last_r.eq(valid & last), fc_r.eq(fc_now)]
        outer = Signal(fa.width, name="outer")
        code2 = code_add(m, fa, Mux(fc_r, 0, outer), acc, ew=ew, ftz=ftz, name="o")
        res = Signal(fa.width, name="res")
        res_valid = Signal(name="res_valid")
        with m.If(end_r):
            m.d.sync += [outer.eq(code2), res.eq(code2)]
        m.d.sync += res_valid.eq(end_r & last_r)
        m.d.comb += [self.result.eq(res), self.result_valid.eq(res_valid)]
        return m

