"""PE kind ``bitfusion``: a fusion unit of 16 BitBricks, precision and signedness set per RUN."""

from dataclasses import dataclass

import numpy as np

from tessera.generators.kinds.base import OperandLayout, PEKind, PEResources, check_int
from tessera.generators.kinds.int import WrapAddCombiner
from tessera.hdl.arith.params import int_acc_latency
from tessera.sim.precision import PrecisionMode, precision_modes, reference_matmul


__all__ = ["BitFusionKind", "SlotLayout", "MODES", "DEFAULT_MODE", "int_family_operands",
           "int_family_encode", "int_family_decode", "int_family_acc_bound", "mode_formats"]

#: Every activation x weight precision in {8, 4, 2} x {8, 4, 2}, each operand signed or
#: unsigned: 36 run-time modes, ``a8s_w8s`` (code 0) ... ``a2u_w2u`` (code 35).
MODES = precision_modes((8, 4, 2), (8, 4, 2))

#: A RUN or GEMM without a mode: the mode whose lanes are widest (both 32 bits of digits).
DEFAULT_MODE = "a2s_w2s"

#: LUTs of the fusion unit alone, its least measurement (UP5K, benchmarks/results/
#: intfamily.json ``fusion_unit``): the floor of a Bit Fusion PE besides its accumulator.
FUSION_UNIT_LUTS = 586

#: The core regression's modes: each precision pair once, the four signedness pairs in turn.
REGRESS_MODES = ("a8s_w8s", "a8s_w4u", "a8u_w2s", "a4u_w8u", "a4s_w4s", "a4s_w2u", "a2u_w8s",
                 "a2u_w4u", "a2s_w2s")


@dataclass(frozen=True)
class SlotLayout(OperandLayout):
    """The operand layout of one Bit Fusion mode: 32-bit lanes of 16 brick slots.

    A lane pair carries ``a_elems`` = ``b_elems`` = (8 / a_bits) (8 / b_bits) element pairs
    (16 at 2 x 2 bits, 1 at 8 x 8), laid out so that slot q holds the digit brick q
    multiplies (`tessera.sim.bitfusion.pack_slots`); narrower elements need fewer slots per
    element, so the same 32 bits carry more of them.
    """
    mode: PrecisionMode = None

    @property
    def a_lane_bits(self):
        return 32

    @property
    def b_lane_bits(self):
        return 32

    def pack_a(self, codes):
        from tessera.sim.bitfusion import pack_slots
        return pack_slots(codes, self.mode, "a")

    def pack_b(self, codes):
        from tessera.sim.bitfusion import pack_slots
        return pack_slots(codes, self.mode, "b")

    def unpack_a(self, lanes):
        from tessera.sim.bitfusion import unpack_slots
        return unpack_slots(lanes, self.mode, "a")

    def unpack_b(self, lanes):
        from tessera.sim.bitfusion import unpack_slots
        return unpack_slots(lanes, self.mode, "b")


def int_family_operands(pm, m, n, k, *, kind, rng):
    """Operand codes of a workload kind for the precision mode ``pm`` (A: M x K, B: K x N).

    ``random``: uniform over each operand's range; ``extremes``: its two ends; ``min``: the
    value with the largest products (the most negative of a signed operand, the largest of
    an unsigned one); ``zeros_a``/``zeros_b``; ``relu``: half the activations zero, the rest
    non-negative.
    """
    def draw(shape, lo, hi):
        if kind == "extremes":
            return rng.choice(np.array([lo, hi]), size=shape)
        if kind == "min":
            return np.full(shape, lo if lo < 0 else hi)
        return rng.integers(lo, hi + 1, size=shape)
    a = draw((m, k), *pm.a_range)
    b = draw((k, n), *pm.b_range)
    if kind == "zeros_a":
        a[:] = 0
    if kind == "zeros_b":
        b[:] = 0
    if kind == "relu":
        a = np.where(rng.random(a.shape) < 0.5, 0, np.abs(a).clip(max=pm.a_range[1]))
    return pm.encode_a(a), pm.encode_b(b)


def int_family_encode(pm, values, operand, name):
    """Integer values -> element codes of operand ``operand`` in precision mode ``pm``: two's
    complement for a signed operand, binary for an unsigned one (`PrecisionMode.encode_a`'s
    codes); a value must be integral and within the mode's range of that operand."""
    from tessera.generators.kinds.int import check_operand, int_codes
    bits, signed = ((pm.a_bits, pm.a_signed) if check_operand(operand) == "a"
                    else (pm.b_bits, pm.b_signed))
    what = f"{'signed' if signed else 'unsigned'} {bits}-bit in mode {pm.name}"
    return int_codes(values, bits, signed, name=name or operand, what=what)


def int_family_decode(pm, codes, acc_bits, operand):
    """Result codes (``acc_bits`` two's complement) -> int64, or with ``operand`` element codes
    of that operand in mode ``pm`` -> int64 values."""
    from tessera.generators.kinds.int import check_operand, signed_values
    if operand is None:
        return signed_values(codes, acc_bits)
    c = np.asarray(codes, dtype=np.uint64)
    return pm.decode_a(c) if check_operand(operand) == "a" else pm.decode_b(c)


def int_family_acc_bound(pm, k, acc_bits):
    """``(K * max|a| * max|b|, 2**(acc_bits-1) - 1)`` in mode ``pm``: max|x| is
    ``2**(bits-1)`` for a signed operand, ``2**bits - 1`` for an unsigned one."""
    from tessera.generators.kinds.int import check_k
    amax = max(abs(v) for v in pm.a_range)
    bmax = max(abs(v) for v in pm.b_range)
    return check_k(k) * amax * bmax, (1 << (acc_bits - 1)) - 1


def int_family_epilogue(kind):
    """The integer epilogue of a run-time-mode integer kind (bitfusion, multiprec): bias,
    TFLite/gemmlowp requantization and clamp, into signed lanes wide enough for every mode's
    activations (9 bits when an 8-bit unsigned mode exists), the clamp kept inside the RUN
    mode's activation range (docs/epilogue.md)."""
    from tessera.generators.kinds.epilogue import IntEpilogueSpec
    pms = [kind.precision(md) for md in kind.modes]
    out_bits = max(pm.a_bits + (0 if pm.a_signed else 1) for pm in pms)
    ranges = {pm.name: tuple(pm.a_range) for pm in pms}
    ranges[None] = tuple(kind.precision(None).a_range)
    return IntEpilogueSpec(kind.acc_bits, out_bits, mode_ranges=ranges)


def mode_formats(modes, default, elems, ii):
    return {md.name: {"code": code, "a_bits": md.a_bits, "a_signed": md.a_signed,
                      "b_bits": md.b_bits, "b_signed": md.b_signed,
                      "elements_per_word": elems(md), "ii": ii(md),
                      "default": md.name == default}
            for code, md in enumerate(modes)}


@dataclass(frozen=True)
class BitFusionKind(PEKind):
    """``[pe] kind = "bitfusion"``: Bit Fusion's fusion unit (Sharma et al., ISCA 2018) as a PE.

    16 BitBricks (2-bit x 2-bit multipliers) fused by the RUN's mode into 16, 8, 4, 2 or 1
    products per cycle at activation x weight precisions {2, 4, 8} x {2, 4, 8}, each operand
    signed or unsigned (36 modes, named like ``a4s_w2u``); the products of a lane pair are
    summed by a shift-add tree into a wrapping ``acc_bits`` accumulator. II 1 in every mode;
    latency ``stages + 2``. Lanes are 32 bits in every mode (`SlotLayout`), so K advances by
    (8 / a_bits) (8 / b_bits) elements per scratchpad word.
    """
    name = "bitfusion"
    code = 3
    acc_bits: int = 32
    stages: int = 1

    def __post_init__(self):
        check_int("pe.acc_bits", self.acc_bits, 17, 64)
        check_int("pe.stages", self.stages, 0, 2)

    @property
    def modes(self):
        return tuple(md.name for md in MODES)

    def mode_code(self, mode):
        return super().mode_code(DEFAULT_MODE if mode is None else mode)

    def precision(self, mode=None):
        """The `PrecisionMode` of ``mode`` (None: `DEFAULT_MODE`)."""
        return MODES[self.mode_code(mode)]

    def layout(self, mode=None):
        from tessera.sim.bitfusion import products_per_word
        pm = self.precision(mode)
        n = products_per_word(pm)
        return SlotLayout(a_elems=n, a_bits=pm.a_bits, b_elems=n, b_bits=pm.b_bits, mode=pm)

    @property
    def result_bits(self):
        return self.acc_bits

    @property
    def latency(self):
        return int_acc_latency(self.stages)   # fusion unit, product register, accumulator

    def ii(self, mode=None):
        self.mode_code(mode)
        return 1

    def parts(self):
        """The PE is an `IntAccPE`: its product, term and wrapping accumulate are parts."""
        return self.make_pe

    def make_pe(self):
        from tessera.hdl.arith.fusion import BitFusionPE
        return BitFusionPE(modes=[(md.a_bits, md.a_signed, md.b_bits, md.b_signed)
                                  for md in MODES],
                           acc_bits=self.acc_bits, stages=self.stages)

    def twin(self):
        from tessera.sim.bitfusion import BitFusionArrayModel
        return BitFusionArrayModel(acc_bits=self.acc_bits, default=DEFAULT_MODE)

    def combiner(self):
        return WrapAddCombiner(self.acc_bits)

    def epilogue(self):
        """Bias, requantization, clamp to the RUN mode's activation range
        (`int_family_epilogue`; docs/epilogue.md)."""
        return int_family_epilogue(self)

    def ptq_recipe(self):
        """Integer post-training quantization (`tessera.sim.ptq_int.IntRecipe`)."""
        from tessera.sim.ptq_int import IntRecipe
        return IntRecipe

    def resources(self):
        """No multiplier: the 16 BitBricks are 64-entry LUT tables, so yosys maps no DSP (the
        measured ``bitfusion_pe`` takes 0 DSPs in all four flows). LUTs: the fusion unit's
        least measurement, 586 (``fusion_unit``, UP5K; 643 on ECP5), plus the accumulator's
        bits; the whole measured PE takes 698 (UP5K) / 735 (ECP5), and the ``bitfusion`` preset
        48377 LUT4s for 64 PEs (benchmarks/results/intfamily.json)."""
        return PEResources(multiplier=None, luts=FUSION_UNIT_LUTS + self.acc_bits)

    def formats(self):
        from tessera.sim.bitfusion import products_per_word
        return bitfusion_formats(self.acc_bits) | {
            "modes": mode_formats(MODES, DEFAULT_MODE, products_per_word, lambda md: 1)}

    def operands(self, m, n, k, *, kind, rng, mode=None):
        return int_family_operands(self.precision(mode), m, n, k, kind=kind, rng=rng)

    def reference(self, a, b, *, k_split=None, mode=None):
        """Exact integer matrix product of the decoded elements, wrapped to ``acc_bits``
        (independent of bricks, slots and shifts; the K split does not matter)."""
        return reference_matmul(self.precision(mode), a, b, self.acc_bits)

    # -- values <-> codes --------------------------------------------------------------------
    def encode(self, values, *, operand, name=None, mode=None):
        """Integer values -> element codes in ``mode`` (None: `DEFAULT_MODE`): each operand
        at that mode's precision and signedness (``a4u_w8s``: activations 0..15, weights
        -128..127), two's complement or binary codes; a non-integer or out-of-range value
        raises the one-line `ValueError` (nothing wraps)."""
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
        names = tuple(md.name for md in MODES)
        return (
            Unit(name="bitbrick",
                 summary="Bit Fusion BitBrick: 2-bit x 2-bit multiplier, each operand signed or "
                         "unsigned (combinational)",
                 options=(), build=_bitbrick,
                 formats=lambda: {"x": {"kind": "int", "bits": 2, "signed": "x_signed"},
                                  "y": {"kind": "int", "bits": 2, "signed": "y_signed"},
                                  "p": {"kind": "int", "bits": 5, "signed": True}}),
            Unit(name="fusion_unit",
                 summary="Bit Fusion fusion unit: 16 BitBricks fused at run time, 16/8/4/2/1 "
                         "products per cycle summed by a shift-add tree",
                 options=(Option("mode", str, "runtime",
                                 "'runtime' (a mode input) or one fixed mode, e.g. a8s_w8s",
                                 ("runtime", *names)),
                          Option("stages", int, 1, "pipeline registers = latency (0..2)")),
                 build=_fusion_unit, formats=_fusion_unit_formats),
            Unit(name="bitfusion_pe",
                 summary="Bit Fusion PE: fusion unit with a wrapping accumulator (PE interface, "
                         "36 run-time modes)",
                 options=(Option("acc_bits", int, 32, "accumulator width (17..64)"),
                          Option("stages", int, 1, "fusion unit pipeline registers (0..2)")),
                 build=lambda *, acc_bits, stages: BitFusionKind(
                     acc_bits=acc_bits, stages=stages).make_pe(),
                 formats=lambda *, acc_bits, stages: BitFusionKind(
                     acc_bits=acc_bits, stages=stages).formats()),
        )


def bitfusion_formats(acc_bits):
    return {"a": {"kind": "int", "bits": [8, 4, 2], "signed": "by mode"},
            "b": {"kind": "int", "bits": [8, 4, 2], "signed": "by mode"},
            "acc": {"kind": "int", "bits": acc_bits, "signed": True, "overflow": "wrap"},
            "lanes": {"layout": "bitfusion_slots", "bits": 32, "slots": 16}}


def _bitbrick():
    from tessera.hdl.arith.bitbrick import BitBrick
    return BitBrick()


def _fusion_unit(*, mode, stages):
    from tessera.hdl.arith.fusion import FusionUnit
    if mode == "runtime":
        return FusionUnit(stages=stages)
    md = PrecisionMode.parse(mode)
    return FusionUnit(stages=stages, fixed=(md.a_bits, md.a_signed, md.b_bits, md.b_signed))


def _fusion_unit_formats(*, mode, stages):
    from tessera.sim.bitfusion import products_per_word
    modes = MODES if mode == "runtime" else (PrecisionMode.parse(mode),)
    return {"a": {"kind": "int", "bits": [8, 4, 2], "signed": "by mode"},
            "b": {"kind": "int", "bits": [8, 4, 2], "signed": "by mode"},
            "result": {"kind": "int", "bits": 17, "signed": True},
            "lanes": {"layout": "bitfusion_slots", "bits": 32, "slots": 16},
            "modes": {md.name: {"a_prec": (2, 4, 8).index(md.a_bits),
                                "b_prec": (2, 4, 8).index(md.b_bits),
                                "a_signed": md.a_signed, "b_signed": md.b_signed,
                                "products": products_per_word(md)} for md in modes}}
