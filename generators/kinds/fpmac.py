"""PE kind ``fpmac``: floating-point MAC (any `FloatFormat`), rounding every step (optionally
chunk-based) or accumulating exactly in a fixed-point window, with an FP adder in the
accumulator format as its combiner across RUNs."""

from dataclasses import dataclass

import numpy as np

from tessera.generators.kinds.base import (Combiner, ConfigError, OperandLayout, PEKind,
                                           check_choice, check_int, fmt_allowed)


__all__ = ["FPMacKind", "FPAddCombiner", "ACCUMULATE", "EXACT_MAX_K"]

#: ``pe.accumulate`` values: round into ``acc_format`` at every step (chunk-based with
#: ``chunk``), or sum the exact products in a fixed-point window and round once.
ACCUMULATE = ("step", "exact")

#: Products the exact window holds. A RUN of the systolic engine accumulates ``k`` words of
#: one element each, and ``k`` never exceeds the scratchpad depth, which the config limits to
#: 32768 words (``memory.a_depth``/``b_depth``), so no RUN can overflow the window: a deeper
#: scratchpad is rejected by the config, a longer tile by the twin. Guard bits cost little
#: (the output normaliser only sees the bits below the accumulator format's overflow).
EXACT_MAX_K = 32768


def _formats():
    from tessera.hdl.arith.formats import FORMATS
    return FORMATS


def _fd(fmt):
    return {"kind": "float", **fmt.as_dict()}


class FPAddCombiner(Combiner):
    """``round_acc(old + new)`` in the accumulator format (`FPAdd`, ``stages`` cycles).

    Accumulation across RUNs therefore rounds once per RUN and once per combine: for K split
    into pieces with results P1, P2, P3 the core stores ``round(round(P1 + P2) + P3)``, which
    differs from one long sequential accumulation (the order of the roundings changes).
    """

    def __init__(self, fmt, stages):
        self.fmt, self.latency = fmt, stages

    def hdl(self):
        from tessera.hdl.arith.fpadd import FPAdd
        return FPAdd(fmt=self.fmt, stages=self.latency)

    def twin(self, old, new):
        from tessera.sim import fp
        return fp.add(self.fmt, np.asarray(old, dtype=np.uint32),
                      np.asarray(new, dtype=np.uint32)).astype(np.uint64)

    def as_dict(self):
        return {"kind": "fp_add", "format": self.fmt.name, "latency": self.latency}


def exact_window(input_format):
    """The `tessera.hdl.arith.fpexact.ExactWindow` of ``input_format`` for `EXACT_MAX_K`."""
    from tessera.hdl.arith.fpexact import ExactWindow
    return ExactWindow(_formats()[input_format], EXACT_MAX_K)


def exact_formats():
    """Named input formats whose exact window fits `MAX_WINDOW_BITS` (FP8 formats, FP16)."""
    from tessera.hdl.arith.fpexact import MAX_WINDOW_BITS
    return tuple(n for n in _formats() if exact_window(n).width <= MAX_WINDOW_BITS)


@dataclass(frozen=True)
class FPMacKind(PEKind):
    """``[pe] kind = "fpmac"``: ``input_format`` x ``input_format`` products accumulated into
    ``acc_format``. ``accumulate = "step"`` rounds into ``acc_format`` at every product
    (the seeds' semantics), chunk-based with ``chunk`` products per inner sum;
    ``accumulate = "exact"`` sums the exact products in a two's-complement window
    (`tessera.hdl.arith.fpexact`) and rounds once per RUN. ``stages`` is the PE latency;
    ``combine_stages`` the latency of the FP adder that accumulates across RUNs."""
    name = "fpmac"
    code = 2
    input_format: str = "fp8_e4m3"
    acc_format: str = "fp16"
    accumulate: str = "step"
    chunk: int = 0
    stages: int = 2
    combine_stages: int = 2

    def __post_init__(self):
        formats = _formats()
        names = tuple(formats)
        for key in ("input_format", "acc_format"):
            v = getattr(self, key)
            if not isinstance(v, str) or v not in formats:
                raise ConfigError(f"pe.{key}: {v!r} is unknown; allowed: {fmt_allowed(names)}")
        if formats[self.acc_format].width < formats[self.input_format].width:
            raise ConfigError(f"pe.acc_format: {self.acc_format!r} is narrower than "
                              f"pe.input_format {self.input_format!r}; allowed: a format at "
                              f"least as wide as the input format")
        check_choice("pe.accumulate", self.accumulate, ACCUMULATE)
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) \
                or not (self.chunk == 0 or 2 <= self.chunk <= 65535):
            raise ConfigError(f"pe.chunk: {self.chunk!r} is out of range; allowed: "
                              f"0 (no chunking) or 2..65535")
        if self.accumulate == "exact":
            if self.chunk:
                raise ConfigError(f"pe.chunk: {self.chunk} is not allowed with pe.accumulate "
                                  f"= 'exact' (one exact sum has nothing to chunk); allowed: 0")
            allowed = exact_formats()
            if self.input_format not in allowed:
                from tessera.hdl.arith.fpexact import MAX_WINDOW_BITS
                w = exact_window(self.input_format).width
                raise ConfigError(f"pe.input_format: {self.input_format!r} needs a {w}-bit "
                                  f"exact window, over the {MAX_WINDOW_BITS}-bit limit of "
                                  f"pe.accumulate = 'exact'; allowed: {fmt_allowed(allowed)}")
            check_int("pe.stages", self.stages, 1, 6)
        else:
            check_int("pe.stages", self.stages, 2 if self.chunk else 1, 4)
        check_int("pe.combine_stages", self.combine_stages, 1, 4)

    @property
    def fmt_in(self):
        return _formats()[self.input_format]

    @property
    def fmt_acc(self):
        return _formats()[self.acc_format]

    def layout(self, mode=None):
        self.mode_code(mode)
        w = self.fmt_in.width
        return OperandLayout(a_elems=1, a_bits=w, b_elems=1, b_bits=w)

    @property
    def result_bits(self):
        return self.fmt_acc.width

    @property
    def latency(self):
        return self.stages

    @property
    def exact(self):
        return self.accumulate == "exact"

    @property
    def window(self):
        """The exact mode's `ExactWindow` (None in step mode)."""
        return exact_window(self.input_format) if self.exact else None

    def make_pe(self):
        if self.exact:
            from tessera.hdl.arith.fpexact import FPExactMac
            return FPExactMac(fmt_in=self.fmt_in, fmt_acc=self.fmt_acc, max_k=EXACT_MAX_K,
                              stages=self.stages)
        from tessera.hdl.arith.fpmac import FPMac
        return FPMac(fmt_in=self.fmt_in, fmt_acc=self.fmt_acc, chunk=self.chunk or None,
                     stages=self.stages)

    def parts(self):
        """`tessera.hdl.arith.fpparts`: the weight-stationary column sums each K tile of
        ``rows`` pairs as this PE sums a RUN of ``rows`` pairs (bit for bit), and the output
        stage combines the tiles with `combiner` (docs/dataflows.md)."""
        from functools import partial
        from tessera.hdl.arith.fpparts import FPExactParts, FPStepParts
        if self.exact:
            return partial(FPExactParts, fmt_in=self.fmt_in, fmt_acc=self.fmt_acc,
                           stages=self.stages)
        return partial(FPStepParts, fmt_in=self.fmt_in, fmt_acc=self.fmt_acc,
                       chunk=self.chunk or None, stages=self.stages)

    def k_pad(self, mode=None):
        """``(+0, -1.0)``: their product is ``-0``, which every accumulate adds exactly
        (``x + -0 = x`` for every ``x``, ``+0`` and ``-0`` included; the exact window adds
        nothing). A ``+0`` product would turn a ``-0`` sum into ``+0``."""
        from tessera.sim import fp
        self.mode_code(mode)
        return 0, int(fp.encode(self.fmt_in, np.array([-1.0]))[0])

    def twin(self):
        if self.exact:
            from tessera.sim.fpexact import FPExactArrayModel
            return FPExactArrayModel(input_format=self.fmt_in, acc_format=self.fmt_acc,
                                     max_k=EXACT_MAX_K)
        from tessera.sim.fparray import FPArrayModel
        return FPArrayModel(input_format=self.fmt_in, acc_format=self.fmt_acc, chunk=self.chunk)

    def combiner(self):
        return FPAddCombiner(self.fmt_acc, self.combine_stages)

    def epilogue(self):
        """Bias add in ``acc_format``, conversion to ``input_format`` (its rounding and
        overflow rules), ReLU (`tessera.generators.kinds.epilogue.FPEpilogueSpec`;
        docs/epilogue.md). In ``accumulate = "exact"`` mode the PE has already rounded the
        exact sum once into ``acc_format``, so the same epilogue applies to that value."""
        from tessera.generators.kinds.epilogue import FPEpilogueSpec
        return FPEpilogueSpec(self.fmt_acc, self.fmt_in, add_stages=self.combine_stages)

    def ptq_recipe(self):
        """Floating-point post-training quantization (`tessera.sim.ptq_fp.FPRecipe`): scales
        folded into the weights and the bias, ReLU through the epilogue's flag."""
        from tessera.sim.ptq_fp import FPRecipe
        return FPRecipe

    def formats(self):
        out = {"a": _fd(self.fmt_in), "b": _fd(self.fmt_in), "acc": _fd(self.fmt_acc),
               "accumulate": self.accumulate, "chunk": self.chunk or None}
        if self.exact:
            out["window"] = self.window.as_dict()
        return out

    def operands(self, m, n, k, *, kind, rng, mode=None):
        """FP operand codes: normal data (``random``), every code including NaN/Inf and
        subnormals (``extremes``), the largest negative value (``min``), zeros, ReLU data."""
        from tessera.sim import fp
        fi = self.fmt_in

        def normal(shape):
            return fp.encode(fi, rng.normal(0.0, 1.0, shape))
        if kind == "extremes":
            a = rng.integers(0, 1 << fi.width, (m, k)).astype(np.uint32)
            b = rng.integers(0, 1 << fi.width, (k, n)).astype(np.uint32)
        elif kind == "min":
            code = fi.max_code(1)
            a = np.full((m, k), code, dtype=np.uint32)
            b = np.full((k, n), code, dtype=np.uint32)
        else:
            a, b = normal((m, k)), normal((k, n))
            if kind == "zeros_a":
                a[:] = fp.encode(fi, np.zeros(1))[0]
            if kind == "zeros_b":
                b[:] = fp.encode(fi, np.zeros(1))[0]
            if kind == "relu":
                a = fp.encode(fi, np.maximum(rng.normal(0.0, 1.0, (m, k)), 0.0))
        return a.astype(np.uint64), b.astype(np.uint64)

    def reference(self, a, b, *, k_split=None, mode=None):
        """Step mode: `tessera.sim.fpref.reference_fp_gemm` (float64 steps with exact error
        terms and its own rounder). Exact mode: `tessera.sim.fpexactref.reference_exact_gemm`
        (`fractions.Fraction` sums, one rounding per RUN piece). Neither shares code with the
        twin (`tessera.sim.fp`) or the HDL."""
        if self.exact:
            from tessera.sim.fpexactref import reference_exact_gemm
            return reference_exact_gemm(self.fmt_in, self.fmt_acc, a, b, k_split=k_split)
        from tessera.sim.fpref import reference_fp_gemm
        return reference_fp_gemm(self.fmt_in, self.fmt_acc, a, b, chunk=self.chunk,
                                 k_split=k_split)

    # -- values <-> codes --------------------------------------------------------------------
    def encode(self, values, *, operand, name=None, mode=None):
        """Real values -> ``input_format`` codes (uint64, same shape), for A and B alike.

        The rule: a finite value is rounded once, exactly from its float64 value, to the
        nearest value of the format by the format's own rounding (`tessera.sim.fp.encode`):
        ties to even, except ``dlfloat16`` whose definition rounds ties away from zero
        (``"rnu"``); values below the smallest magnitude underflow as the format defines
        (gradual underflow, or to zero without subnormals). Refused (one-line `ValueError`):
        a finite value whose magnitude exceeds the largest finite value ``max_finite`` (even
        one that would round down to it), unless the format saturates by definition
        (``overflow = "saturate"``: it becomes ``+-max_finite``); a rational that float64 does
        not hold (``Fraction(1, 3)``: it would round twice); ``+-inf`` where the format
        has no Inf (``fp8_e4m3``, ``hfp8``, ``hfp8_ibm``, ``dlfloat16``). NaN is accepted
        (every `FloatFormat` has a NaN code) and becomes the canonical NaN; ``-0.0`` becomes
        ``+0`` where the format has no negative zero.
        """
        from tessera.generators.kinds.int import as_reals, check_operand, first_bad
        from tessera.sim import fp
        self.mode_code(mode)
        check_operand(operand)
        fmt = self.fmt_in
        name = name or operand
        allowed = self.value_range()
        arr, x, inexact = as_reals(values, name, allowed)
        checks = [(inexact, "not exactly representable as a float64 (rounded twice)")]
        if not fmt.has_inf:
            checks.append((np.isinf(x), f"infinite and {fmt.name} has no Inf"))
        if fmt.overflow != "saturate":
            with np.errstate(invalid="ignore"):
                beyond = np.isfinite(x) & (np.abs(x) > fmt.max_finite)
            checks.append((beyond, f"beyond the largest finite {fmt.name} magnitude"))
        first_bad(arr, checks, name, allowed)
        return fp.encode(fmt, x).astype(np.uint64)

    def value_range(self):
        """What `encode` accepts, in words (the ``allowed:`` part of its messages)."""
        from tessera.generators.kinds.int import fmt_number
        fmt = self.fmt_in
        rnd = "ties to even" if fmt.rounding == "rne" else "ties away from zero"
        top = (f"finite values with |x| <= {fmt_number(fmt.max_finite)}"
               if fmt.overflow != "saturate" else "finite values (saturating at "
               f"+-{fmt_number(fmt.max_finite)})")
        inf = ", +-inf" if fmt.has_inf else ""
        return f"{top}{inf}, nan ({fmt.name}, rounded to nearest, {rnd})"

    def decode(self, codes, *, mode=None, operand=None):
        """Result codes (``acc_format``) -> float64 values (exact: NaN, ``+-inf``, ``-0.0``
        as the format has them); with ``operand``, ``input_format`` codes -> float64."""
        from tessera.generators.kinds.int import check_operand
        from tessera.sim import fp
        self.mode_code(mode)
        if operand is not None:
            check_operand(operand)
        fmt = self.fmt_acc if operand is None else self.fmt_in
        return fp.decode(fmt, np.asarray(codes, dtype=np.uint64).astype(np.int64))

    @classmethod
    def units(cls):
        from tessera.generators.kinds import fpunits
        return (*fpunits.UNITS, _exact_unit())


def _exact_mac(*, format, acc, max_k, stages):
    from tessera.hdl.arith.fpexact import FPExactMac
    return FPExactMac(fmt_in=_formats()[format], fmt_acc=_formats()[acc], max_k=max_k,
                      stages=stages)


def _exact_unit_formats(*, format, acc, max_k, **kw):
    from tessera.hdl.arith.fpexact import ExactWindow
    fi, fa = _formats()[format], _formats()[acc]
    return {"a": _fd(fi), "b": _fd(fi), "acc": _fd(fa), "accumulate": "exact",
            "window": ExactWindow(fi, max_k).as_dict()}


def _exact_unit():
    from tessera.generators.kinds.unitspec import Option, Unit
    names = tuple(_formats())
    return Unit(
        name="fpmac_exact",
        summary="floating-point MAC with exact fixed-point accumulation, one rounding at the "
                "output",
        options=(Option("format", str, "fp8_e4m3", "operand format (window <= 96 bits)",
                        exact_formats()),
                 Option("acc", str, "fp16", "result format", names),
                 Option("max_k", int, EXACT_MAX_K, "longest accumulation the window holds"),
                 Option("stages", int, 3, "pipeline stages = latency (1..6)")),
        build=_exact_mac, formats=_exact_unit_formats)
