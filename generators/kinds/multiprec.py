"""PE kind ``multiprec``: DRQ's multi-precision PE, 4-bit MACs in one cycle, 8-bit in four."""

from dataclasses import dataclass

from tessera.generators.kinds.base import OperandLayout, PEKind, PEResources, check_int
from tessera.generators.kinds.bitfusion import (int_family_acc_bound, int_family_decode,
                                                int_family_encode, int_family_operands,
                                                mode_formats)
from tessera.generators.kinds.int import WrapAddCombiner
from tessera.hdl.arith.params import multiprec_ii, multiprec_latency
from tessera.sim.precision import precision_modes, reference_matmul


__all__ = ["MultiPrecKind", "MODES", "DEFAULT_MODE"]

#: Activation x weight precisions {8, 4} x {8, 4}, each operand signed or unsigned: 16 modes,
#: ``a8s_w8s`` (code 0) ... ``a4u_w4u`` (code 15).
MODES = precision_modes((8, 4), (8, 4))

#: A RUN or GEMM without a mode: 8 x 8 bits, signed (the widest lanes).
DEFAULT_MODE = "a8s_w8s"

#: LUTs of the multi-precision PE (acc_bits 32), its least measurement (ECP5 with its DSP,
#: benchmarks/results/intfamily.json ``multiprec_pe``).
MULTIPREC_PE_LUTS = 170

#: The core regression's modes: each precision pair, the signedness pairs in turn.
REGRESS_MODES = ("a8s_w8s", "a8s_w4u", "a4u_w8s", "a4u_w4u", "a4s_w4s", "a8u_w8u")


def _ii(md):
    return multiprec_ii(md.a_bits, md.b_bits)


@dataclass(frozen=True)
class MultiPrecKind(PEKind):
    """``[pe] kind = "multiprec"``: the multi-precision PE of DRQ (Song et al., ISCA 2020).

    One 4-bit x 4-bit multiplier (each nibble signed or unsigned) into a wrapping ``acc_bits``
    accumulator; 8-bit operands are split into nibbles and their partial products are
    accumulated over several cycles, so the initiation interval depends on the RUN's mode:
    1 at 4 x 4 bits, 2 at 8 x 4 and 4 x 8, 4 at 8 x 8. 16 modes (named like ``a8s_w4u``); one
    element per 8-bit lane (a 4-bit element in bits 3..0); latency 6 in every mode.
    """
    name = "multiprec"
    code = 4
    acc_bits: int = 32

    def __post_init__(self):
        check_int("pe.acc_bits", self.acc_bits, 18, 64)

    @property
    def modes(self):
        return tuple(md.name for md in MODES)

    def mode_code(self, mode):
        return super().mode_code(DEFAULT_MODE if mode is None else mode)

    def precision(self, mode=None):
        """The `PrecisionMode` of ``mode`` (None: `DEFAULT_MODE`)."""
        return MODES[self.mode_code(mode)]

    def layout(self, mode=None):
        pm = self.precision(mode)
        return OperandLayout(a_elems=1, a_bits=pm.a_bits, b_elems=1, b_bits=pm.b_bits)

    @property
    def result_bits(self):
        return self.acc_bits

    @property
    def latency(self):
        return multiprec_latency([_ii(md) for md in MODES])   # as MultiPrecPE's

    def ii(self, mode=None):
        return _ii(self.precision(mode))

    def make_pe(self):
        from tessera.hdl.arith.multiprec import MultiPrecPE
        return MultiPrecPE(modes=[(md.a_bits, md.a_signed, md.b_bits, md.b_signed)
                                  for md in MODES], acc_bits=self.acc_bits)

    def parts(self):
        """`tessera.hdl.arith.multiprec.MultiPrecParts`: the PE's nibble pipeline summing
        each pair in the PE; the weight-stationary engine issues a vector every ``ii(mode)``
        cycles."""
        from functools import partial
        from tessera.hdl.arith.multiprec import MultiPrecParts
        return partial(MultiPrecParts, modes=[(md.a_bits, md.a_signed, md.b_bits, md.b_signed)
                                              for md in MODES], acc_bits=self.acc_bits)

    def twin(self):
        from tessera.sim.multiprec import MultiPrecArrayModel
        return MultiPrecArrayModel(acc_bits=self.acc_bits, default=DEFAULT_MODE)

    def combiner(self):
        return WrapAddCombiner(self.acc_bits)

    def epilogue(self):
        """Bias, requantization, clamp to the RUN mode's activation range
        (`tessera.generators.kinds.bitfusion.int_family_epilogue`; docs/epilogue.md)."""
        from tessera.generators.kinds.bitfusion import int_family_epilogue
        return int_family_epilogue(self)

    def ptq_recipe(self):
        """Integer post-training quantization (`tessera.sim.ptq_int.IntRecipe`)."""
        from tessera.sim.ptq_int import IntRecipe
        return IntRecipe

    def resources(self):
        """One 4-bit x 4-bit multiplier, each nibble extended to 5 bits (a 10-bit product: a
        DSP block on ECP5, LUTs on iCE40, whose DSP mapping starts at 11 bits). LUTs: the
        least measurement of the PE, 170 (``multiprec_pe`` with its DSP on ECP5; 240 LUT-only,
        349 on UP5K; benchmarks/results/intfamily.json, acc_bits 32), less its 32-bit
        accumulator, plus this config's accumulator."""
        return PEResources(multiplier=(5, 5), luts=MULTIPREC_PE_LUTS - 32 + self.acc_bits)

    def formats(self):
        return {"a": {"kind": "int", "bits": [8, 4], "signed": "by mode"},
                "b": {"kind": "int", "bits": [8, 4], "signed": "by mode"},
                "acc": {"kind": "int", "bits": self.acc_bits, "signed": True,
                        "overflow": "wrap"},
                "modes": mode_formats(MODES, DEFAULT_MODE, lambda md: 1, _ii)}

    def operands(self, m, n, k, *, kind, rng, mode=None):
        return int_family_operands(self.precision(mode), m, n, k, kind=kind, rng=rng)

    def reference(self, a, b, *, k_split=None, mode=None):
        """Exact integer matrix product of the decoded elements, wrapped to ``acc_bits``
        (independent of nibbles and steps; the K split does not matter)."""
        return reference_matmul(self.precision(mode), a, b, self.acc_bits)

    # -- values <-> codes --------------------------------------------------------------------
    def encode(self, values, *, operand, name=None, mode=None):
        """Integer values -> element codes in ``mode`` (None: `DEFAULT_MODE`, ``a8s_w8s``):
        each operand at that mode's precision and signedness, two's complement or binary
        codes; a non-integer or out-of-range value raises the one-line `ValueError`."""
        return int_family_encode(self.precision(mode), values, operand, name)

    def decode(self, codes, *, mode=None, operand=None):
        """Result codes -> int64 values (``acc_bits`` two's complement); with ``operand``,
        element codes of that operand in ``mode`` -> int64 values."""
        return int_family_decode(self.precision(mode), codes, self.acc_bits, operand)

    def acc_bound(self, k, *, mode=None):
        """``(K * max|a| * max|b|, 2**(acc_bits-1) - 1)`` for ``mode``'s operand ranges."""
        return int_family_acc_bound(self.precision(mode), k, self.acc_bits)

    def regress_modes(self):
        return REGRESS_MODES

    @classmethod
    def units(cls):
        from tessera.generators.kinds.unitspec import Option, Unit
        return (
            Unit(name="multiprec_pe",
                 summary="DRQ multi-precision PE: one 4-bit multiplier, II 1 at 4x4 bits, 2 at "
                         "8x4, 4 at 8x8 (PE interface, 16 run-time modes)",
                 options=(Option("acc_bits", int, 32, "accumulator width (18..64)"),),
                 build=lambda *, acc_bits: MultiPrecKind(acc_bits=acc_bits).make_pe(),
                 formats=lambda *, acc_bits: MultiPrecKind(acc_bits=acc_bits).formats()),
        )
