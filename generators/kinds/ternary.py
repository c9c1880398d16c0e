"""PE kind ``ternary``: TTQ ternary weights, reduce-and-scale dot products (DeepChip).

Used by the ``tree`` engine (`tessera.generators.kinds.tree`), never by the systolic array: a
dot product is additions of unsigned ``act_bits`` activation codes gated by 2-bit weight codes
(0b00 0, 0b01 +Wp, 0b11 -Wn; 0b10 unused) into S_p and S_n, then ``Wp * S_p - Wn * S_n`` with
per-output-channel scale codes loaded at run time into scratchpad S.
"""

from dataclasses import dataclass

import numpy as np

from tessera.generators.kinds.base import ConfigError, OperandLayout, PEKind, check_int
from tessera.generators.kinds.int import WrapAddCombiner


__all__ = ["TernaryKind"]


@dataclass(frozen=True)
class TernaryKind(PEKind):
    """``[pe] kind = "ternary"``.

    Keys: ``act_bits`` (unsigned activation codes, e.g. k-bit bounded-ReLU codes),
    ``scale_bits`` and ``scale_frac`` (the scales Wp and Wn: unsigned fixed point with
    ``scale_frac`` fraction bits, positive magnitudes), ``acc_bits`` (a result: the exact
    integer ``Wp*S_p - Wn*S_n`` in units of ``2**-scale_frac``, two's complement, wrapping),
    ``per_channel`` (one (Wp, Wn) pair per output channel, else one per layer: the host
    writes the same pair for every channel; the hardware is the same).
    """
    name = "ternary"
    code = 8
    engines = ("tree",)
    act_bits: int = 8
    scale_bits: int = 16
    scale_frac: int = 8
    acc_bits: int = 32
    per_channel: bool = True

    def __post_init__(self):
        check_int("pe.act_bits", self.act_bits, 1, 16)
        check_int("pe.scale_bits", self.scale_bits, 2, 32)
        check_int("pe.scale_frac", self.scale_frac, 0, self.scale_bits)
        check_int("pe.acc_bits", self.acc_bits, 8, 64)
        if not isinstance(self.per_channel, bool):
            raise ConfigError(f"pe.per_channel: {self.per_channel!r} is not a boolean; allowed: "
                              f"true, false")

    def layout(self, mode=None):
        self.mode_code(mode)
        return OperandLayout(a_elems=1, a_bits=self.act_bits, b_elems=1, b_bits=2)

    @property
    def result_bits(self):
        return self.acc_bits

    @property
    def latency(self):
        """The scaling pipeline after the sums (scale read, products, difference): the serial
        scaler's `LATENCY_EXTRA`, stated once in `tessera.hdl.arith.params`."""
        from tessera.hdl.arith.params import TERNARY_SCALE_LATENCY
        return TERNARY_SCALE_LATENCY

    def combiner(self):
        return WrapAddCombiner(self.acc_bits)

    def epilogue(self):
        """Bias, then the k-bit bounded-ReLU activation quantizer (``k = act_bits``) with a
        per-channel step: the outputs are the next layer's activation codes
        (`tessera.generators.kinds.epilogue.TernaryEpilogueSpec`, ``docs/epilogue.md``)."""
        from tessera.generators.kinds.epilogue import TernaryEpilogueSpec
        return TernaryEpilogueSpec(self.acc_bits, self.act_bits, scale_frac=self.scale_frac,
                                   scale_bits=self.scale_bits)

    def ptq_recipe(self):
        """Ternary post-training quantization (`tessera.sim.ptq_ternary.TernaryRecipe`)."""
        from tessera.sim.ptq_ternary import TernaryRecipe
        return TernaryRecipe

    def format(self):
        """The host toolkit's descriptor (`tessera.sim.ternary.TernaryFormat`)."""
        from tessera.sim.ternary import TernaryFormat
        return TernaryFormat(act_bits=self.act_bits, scale_bits=self.scale_bits,
                             scale_frac=self.scale_frac, per_channel=self.per_channel)

    def formats(self):
        return {"a": {"kind": "uint", "bits": self.act_bits, "signed": False},
                "b": self.format().as_dict(),
                "acc": {"kind": "fixed", "bits": self.acc_bits, "signed": True,
                        "frac_bits": self.scale_frac, "overflow": "wrap",
                        "value": "Wp*S_p - Wn*S_n, exact"}}

    def operands(self, m, n, k, *, kind, rng, mode=None):
        from tessera.sim.engines.tree import TernaryB
        top = (1 << self.act_bits) - 1
        smax = (1 << self.scale_bits) - 1
        if kind == "extremes":
            a = rng.choice(np.array([0, top]), size=(m, k))
            codes = rng.choice(np.array([0b01, 0b11]), size=(k, n))
            wp = np.full(n, smax)
            wn = np.full(n, smax)
        elif kind == "min":            # the most negative results: all -Wn, all activations max
            a = np.full((m, k), top)
            codes = np.full((k, n), 0b11)
            wp = rng.integers(1, smax + 1, n)
            wn = np.full(n, smax)
        else:
            a = rng.integers(0, top + 1, size=(m, k))
            codes = rng.choice(np.array([0b00, 0b01, 0b11]), size=(k, n))
            wp = rng.integers(1, smax + 1, n)
            wn = rng.integers(1, smax + 1, n)
        if kind == "zeros_a":
            a[:] = 0
        if kind == "zeros_b":
            codes[:] = 0
        if kind == "relu":
            a = np.where(rng.random(a.shape) < 0.5, 0, a)
        if not self.per_channel:
            wp[:], wn[:] = wp[0], wn[0]
        return a.astype(np.uint64), TernaryB(codes, wp, wn)

    def reference(self, a, b, *, k_split=None, mode=None):
        """An integer matmul with the decoded weights (+Wp, 0, -Wn as plain integers), then
        the wrap (independent of the twins' S_p/S_n split and of the K split)."""
        codes = np.asarray(b.codes)
        w = np.where(codes == 0b01, b.wp[None, :].astype(object),
                     np.where(codes == 0b11, -b.wn[None, :].astype(object), 0))
        c = np.asarray(a, dtype=object) @ w
        return np.array(c % (1 << self.acc_bits), dtype=np.uint64).reshape(c.shape)

    def operand_arrays(self, b):
        return {"codes": b.codes, "wp": b.wp, "wn": b.wn}

    def operand_from_arrays(self, arrays):
        from tessera.sim.engines.tree import TernaryB
        return TernaryB(arrays["codes"], arrays["wp"], arrays["wn"])

    def result_values(self, codes):
        """Result codes -> exact values (Fractions): signed, in units of 2**-scale_frac."""
        from fractions import Fraction
        c = np.asarray(codes, dtype=object)
        signed = np.where(c >= 1 << (self.acc_bits - 1), c - (1 << self.acc_bits), c)
        return np.vectorize(lambda v: Fraction(int(v), 1 << self.scale_frac),
                            otypes=[object])(signed)

    # -- values <-> codes (the driver's value path) ---------------------------------------------
    def encode(self, values, *, operand, name=None, mode=None):
        """Operand values -> what `operands` hands over, exactly.

        ``operand="a"``: activation values are the unsigned integers ``0..2**act_bits - 1``
        (e.g. k-bit bounded-ReLU codes, `tessera.sim.ternary.quantize_act`); returns uint64
        codes of the same shape. ``operand="b"``: a K x N matrix of weight values (inputs x
        output channels) whose every entry is 0, ``+Wp`` or ``-Wn`` of its column, ``Wp`` and
        ``Wn`` positive multiples of ``2**-scale_frac`` up to ``(2**scale_bits - 1) *
        2**-scale_frac`` (one pair for the whole layer when ``per_channel`` is false);
        returns a `tessera.sim.engines.tree.TernaryB` (2-bit codes and scale codes). A
        column without positive (negative) entries gets its other scale, else 1 (or the
        largest scale below 1). Anything else raises the codec's one-line `ValueError`;
        float weights are ternarized first (`tessera.sim.ternary.ternarize`), with their
        scales rounded by `TernaryFormat.encode_scale`.
        """
        from tessera.generators.kinds.int import check_operand, int_codes
        self.mode_code(mode)
        name = name or check_operand(operand)
        if operand == "a":
            return int_codes(values, self.act_bits, False, name=name)
        return self._encode_weights(values, name)

    def _encode_weights(self, values, name):
        from tessera.generators.kinds.int import (as_reals, first_bad, fmt_number, grid_levels,
                                                  value_error)
        from tessera.sim.engines.tree import TernaryB
        fmt = self.format()
        lsb, top = fmt.scale_min, fmt.scale_max
        one = "layer (pe.per_channel is false)" if not self.per_channel else \
            "output channel (column)"
        allowed = (f"0, +Wp or -Wn, one Wp and one Wn per {one}, multiples of "
                   f"{fmt_number(lsb)} in {fmt_number(lsb)}..{fmt_number(top)}")
        arr, x, inexact = as_reals(values, name, allowed)
        if x.ndim != 2:
            raise ValueError(f"{name}: shape {x.shape} is not K x N; allowed: a 2-D array of "
                             f"weights (inputs x output channels)")
        q, on, inr = grid_levels(np.abs(x), self.scale_frac, 1, fmt.scale_code_max)
        nz = x != 0
        first_bad(arr, ((~np.isfinite(x), "not a finite number"),
                        (nz & (~on | inexact), f"not a multiple of 2**-{self.scale_frac} = "
                                   f"{fmt_number(lsb)}"),
                        (nz & ~inr, "out of range")), name, allowed)
        n = x.shape[1]
        scales = []
        for sign, label in ((1, "positive"), (-1, "negative")):
            hit = (np.sign(x) == sign)
            if self.per_channel:
                first = np.argmax(hit, axis=0)                        # first hit per column
                has = hit.any(axis=0)
                ref = np.where(has, q[first, np.arange(n)], 0)
                ref_at = first * n + np.arange(n)
            else:
                i0 = int(np.argmax(hit.reshape(-1)))
                has = np.full(n, hit.any())
                ref = np.full(n, q.reshape(-1)[i0] if hit.any() else 0)
                ref_at = np.full(n, i0)
            bad = np.flatnonzero((hit & (q != ref[None, :])).reshape(-1))
            if bad.size:
                i = int(bad[0])
                j, r = i % n, int(ref_at[i % n])
                where = f"column {j}" if self.per_channel else "the layer"
                raise value_error(name, i, arr.reshape(-1)[i],
                                  f"a second {label} value in {where} (the first is "
                                  f"{fmt_number(arr.reshape(-1)[r])} at {name}[{r}])", allowed)
            scales.append((ref, has))
        (wp, has_p), (wn, has_n) = scales
        default = min(1 << self.scale_frac, fmt.scale_code_max)
        wp_out = np.where(has_p, wp, np.where(has_n, wn, default))
        wn_out = np.where(has_n, wn, np.where(has_p, wp, default))
        codes = np.where(x > 0, 0b01, np.where(x < 0, 0b11, 0b00))
        return TernaryB(codes.astype(np.uint8), wp_out.astype(np.int64),
                        wn_out.astype(np.int64))

    def decode(self, codes, *, mode=None, operand=None):
        """Result codes -> exact values (`result_values`: Fractions in units of
        ``2**-scale_frac``). With ``operand="a"``: activation codes -> int64; with
        ``operand="b"``: a `TernaryB` -> the K x N weight values ``+Wp``, 0, ``-Wn``
        (float64, exact)."""
        from tessera.generators.kinds.int import check_operand
        self.mode_code(mode)
        if operand is None:
            return self.result_values(codes)
        if check_operand(operand) == "a":
            return np.asarray(codes, dtype=np.uint64).astype(np.int64)
        c = np.asarray(codes.codes)
        unit = 2.0 ** -self.scale_frac
        wp = np.asarray(codes.wp, dtype=np.float64)[None, :] * unit
        wn = np.asarray(codes.wn, dtype=np.float64)[None, :] * unit
        return np.where(c == 0b01, wp, np.where(c == 0b11, -wn, 0.0))

    def acc_bound(self, k, *, mode=None):
        """``K * (2**act_bits - 1) * (2**scale_bits - 1)`` (every weight the largest scale of
        one sign, every activation the largest) in result units against
        ``2**(acc_bits-1) - 1``."""
        from tessera.generators.kinds.int import check_k
        self.mode_code(mode)
        return (check_k(k) * ((1 << self.act_bits) - 1) * ((1 << self.scale_bits) - 1),
                (1 << (self.acc_bits - 1)) - 1)

    @classmethod
    def units(cls):
        from tessera.generators.kinds.ternary_units import ternary_units
        return ternary_units()
