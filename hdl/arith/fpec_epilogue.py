"""FPEC requantizing epilogue: bias, the integer requantizer's exact quotient, ReLU/clip, and
the FPEC compensation bits (EZB, EDB, EMB) from the exact remainder, by the host quantizer's
rule (`tessera.sim.fpec.FpecFormat.quantize`).

The rule (``docs/epilogue.md``, section "fpec"; twin `tessera.sim.fpec_epilogue`, reference
`tessera.sim.fpec_epilogue_ref`), per element, with ``s = wrap(acc + bias)`` (``acc_bits``):

1. ``x = s * M / 2**(31 + shift) + zero_point``, the exact rational in output LSBs (no
   intermediate rounding: gemmlowp's two roundings are replaced by one, below);
2. ``v = min(max(x, lo), hi)`` on the exact value (a clipped value is its bound exactly,
   EZB); a bound at the format's end is not applied (the quantizer's saturation);
3. ``q = floor(v + 1/2)`` (the host quantizer's round half up) saturated to the format, and
   ``r = v - q``; ``|r| < T`` sets EZB; else EDB = ``r < 0`` and EMB is the index of the
   sub-range of ``[T, 1/2]`` (``2**m`` equal parts) holding ``|r|`` (the top one for
   saturated values): `tessera.sim.fpec.FpecFormat.quantize` of ``v``, exactly.

In integers (module `tessera.sim.fpec_epilogue`'s docstring): only ``Z = floor(x *
2**(B+1))`` and a sticky bit are needed, where ``B`` makes every bucket edge a multiple of
``2**-B``.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["FpecEpilogue"]


class FpecEpilogue(wiring.Component):
    """One lane of the FPEC requantizing epilogue (module docstring: the rule), pipelined,
    II = 1, latency 5.

    Pipeline (every stage registered): 1 bias add (and ``31 + shift - B`` formed, capped);
    2 the ``acc_bits`` x 32 product; 3 the floor right shift of the product to ``B + 1``
    fraction bits and the sticky bit (a barrel shifter and a thermometer mask); 4 zero point,
    clip compares, the round-half-up split into level and remainder; 5 remainder magnitude,
    threshold compares, the element code.

    Parameters
    ----------
    acc_bits : int
        8..64.
    w : int
        The output format's computation bits (2..16).
    emb_bits : int
        0..2.
    threshold : float
        The EZB threshold T in LSBs, (0, 1/2].

    Members
    -------
    valid : In(1)
    acc, bias : In(signed(acc_bits))
    mult : In(signed(32))
    shift : In(unsigned(shift_bits))
    zero_point, lo, hi : In(signed(w))
    out_valid : Out(1)
    out : Out(unsigned(w + 2 + emb_bits))
        The element code (`tessera.sim.fpec` layout).
    """

    MULT_BITS = 32

    def __init__(self, *, acc_bits, w, emb_bits, threshold):
        from tessera.hdl.arith.params import (bucket_edges, fpec_shift_bits as shift_bits_for,
                                              threshold_bits)
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 8 <= acc_bits <= 64:
            raise ValueError(f"acc_bits must be an integer 8..64, not {acc_bits!r}")
        if not 2 <= w <= 16 or emb_bits not in (0, 1, 2) or not 0 < threshold <= 0.5:
            raise ValueError("w must be 2..16, emb_bits 0..2, threshold in (0, 0.5]")
        self._a, self._w, self._m = acc_bits, w, emb_bits
        self._B = threshold_bits(threshold, emb_bits)
        self._t0, self._edges = bucket_edges(threshold, emb_bits)
        self._shift_bits = shift_bits_for(acc_bits)
        super().__init__({
            "valid": In(1),
            "acc": In(signed(acc_bits)), "bias": In(signed(acc_bits)),
            "mult": In(signed(self.MULT_BITS)), "shift": In(unsigned(self._shift_bits)),
            "zero_point": In(signed(w)), "lo": In(signed(w)), "hi": In(signed(w)),
            "out_valid": Out(1), "out": Out(unsigned(w + 2 + emb_bits)),
        })

    acc_bits = property(lambda self: self._a)
    shift_bits = property(lambda self: self._shift_bits)
    out_bits = property(lambda self: self._w + 2 + self._m)

    @property
    def latency(self):
        return 5

    def elaborate(self, platform):
        m = Module()
        a, w, B = self._a, self._w, self._B
        L = max(0, B - 30)                  # pre-shift so that the right shift is >= 0
        W = a + 32 + L                      # the (pre-shifted) product
        cap = W - 1                         # right shifts >= W - 1 all give the same result

        def stage(name, shape, value):
            reg = Signal(shape, name=name, reset_less=True)
            m.d.sync += reg.eq(value)
            return reg

        def carry(sig, n, name):
            for i in range(n):
                sig = stage(f"{name}_{i + 1}", sig.shape(), sig)
            return sig

        valids = [self.valid]
        for i in range(self.latency):
            v = Signal(name=f"valid_{i + 1}")
            m.d.sync += v.eq(valids[-1])
            valids.append(v)
        m.d.comb += self.out_valid.eq(valids[-1])

        # 1: bias add (wrapping), the right shift 31 + shift - (B + 1) + L, capped.
        s = stage("s", signed(a), (self.acc + self.bias)[:a].as_signed())
        mult = stage("mult_1", signed(32), self.mult)
        ds_raw = self.shift + (30 + L - B)
        if (1 << self._shift_bits) - 1 + 30 + L - B > cap:
            ds_raw = Mux(ds_raw > cap, cap, ds_raw)
        ds1 = stage("ds_1", range(cap + 1), ds_raw)
        # 2: the product.
        p = stage("p", signed(a + 32), s * mult)
        ds2 = stage("ds_2", range(cap + 1), ds1)
        # 3: floor shift to B + 1 fraction bits, sticky = any bit shifted out.
        pe = Signal(signed(W))
        m.d.comb += pe.eq(p << L)
        zf = stage("zf", signed(W), pe >> ds2)
        mask = Cat(*(ds2 > i for i in range(cap)))        # bits below the shift (ds <= cap)
        sticky3 = stage("sticky_3", 1, (pe.as_unsigned()[:cap] & mask) != 0)
        zp, lo, hi = (carry(getattr(self, n), 3, n) for n in ("zero_point", "lo", "hi"))
        # 4: zero point, clip compares, round half up: q = (z + 2**B) >> (B+1), the remainder
        #    g = floor(r * 2**(B+1)) in [-2**B, 2**B).
        zw = max(W, w + B + 1) + 2
        z = Signal(signed(zw))
        m.d.comb += z.eq(zf + (zp << (B + 1)))
        lo_s, hi_s = lo << (B + 1), hi << (B + 1)
        qmin, qmax = -(1 << (w - 1)), (1 << (w - 1)) - 1
        # A bound at the format's end is the quantizer's saturation, not a clip.
        clip_lo = (lo != qmin) & (z < lo_s)
        clip_hi = (hi != qmax) & ((z > hi_s) | ((z == hi_s) & sticky3))
        y = Signal(signed(zw + 1))
        m.d.comb += y.eq(z + (1 << B))
        q_full = y >> (B + 1)
        sat_hi, sat_lo = q_full > qmax, q_full < qmin
        q = stage("q", unsigned(w), Mux(clip_lo, Mux(lo > hi, hi, lo),
                                        Mux(clip_hi | sat_hi, hi, Mux(sat_lo, qmin, q_full[:w]))))
        clipped = stage("clipped", 1, clip_lo | clip_hi)
        sat = stage("sat", 1, sat_hi | sat_lo)
        sat_dn = stage("sat_dn", 1, sat_lo)
        g = stage("g", signed(B + 2), y[:B + 1] - (1 << B))
        sticky4 = stage("sticky_4", 1, sticky3)
        # 5: |r| * 2**B floored, threshold and bucket compares, the element code; saturated
        #    values (|r| >= 1/2) take the top bucket, toward x.
        mag = Signal(unsigned(B + 1))
        m.d.comb += mag.eq(Mux(g >= 0, g >> 1, (-g - sticky4) >> 1))
        ezb = Signal()
        m.d.comb += ezb.eq(clipped | (~sat & (mag < self._t0)))
        edb = ~ezb & Mux(sat, sat_dn, g < 0)
        parts = [q, ~ezb, edb]
        if self._m:
            emb = Signal(unsigned(self._m))
            count = sum((mag >= e for e in self._edges), Const(0, self._m))
            m.d.comb += emb.eq(Mux(ezb, 0, Mux(sat, len(self._edges), count)))
            parts.append(emb)
        m.d.sync += self.out.eq(Cat(*parts))
        return m
