"""Multiplier-free ternary-weight dot products: gated adder trees and a scaled output channel."""

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.engine.params import tree_latency


__all__ = ["TernaryTree", "TernaryDot", "W_ZERO", "W_POS", "W_NEG", "W_UNUSED"]


#: Ternary weight codes (2 bits). ``W_UNUSED`` is never produced by the encoder; the hardware
#: treats it as zero, like ``W_ZERO``.
W_ZERO, W_POS, W_UNUSED, W_NEG = 0b00, 0b01, 0b10, 0b11


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer {lo}..{hi}, not {value!r}")


def _levels(inputs):
    """Adder levels of a pairwise tree over ``inputs`` leaves: ``ceil(log2(inputs))``."""
    return (inputs - 1).bit_length()


def _sum_bits(inputs, act_bits):
    """Exact width of a sum of ``inputs`` unsigned ``act_bits``-bit values."""
    return (inputs * ((1 << act_bits) - 1)).bit_length()


class TernaryTree(wiring.Component):
    """Reduce ``inputs`` activations into the +1 and the -1 class sums, with no multiplier.

    Two adder trees, one per weight class, compute

    * ``sp = sum(a[i] for i where w[i] == 0b01)`` (class p, scaled later by ``Wp``) and
    * ``sn = sum(a[i] for i where w[i] == 0b11)`` (class n, scaled later by ``Wn``).

    Weight codes ``0b00`` and ``0b10`` (unused by the encoder) contribute nothing. Each leaf is
    the activation gated by its weight class (``Mux(w == code, a, 0)``, i.e. an AND with the
    decoded class bit), so a zero weight costs no adder input toggles and there is no
    multiplier anywhere.

    The leaves are reduced pairwise; an odd node at the end of a level is passed on unchanged
    (registered). Every level is registered, and the gating shares the first stage with the
    first level of adds, so ``latency = max(1, ceil(log2(inputs)))``: inputs (``valid``, ``a``,
    ``w``, ``tag``) presented in cycle t appear on the outputs (``out_valid``, ``sp``, ``sn``,
    ``out_tag``) in cycle t + latency. Fully pipelined, initiation interval 1: a new word may be
    presented every cycle. With ``inputs=1`` the single gated leaf is registered once.

    Every node register is exactly as wide as the largest value it can hold (a node covering
    k leaves has ``bit_length(k * (2**act_bits - 1))`` bits), so nothing overflows and no
    LUTs or flip-flops are spent on bits that are always zero. Datapath registers have no
    reset; only the ``valid`` pipeline is reset. ``sp``/``sn``/``out_tag`` are meaningful when
    ``out_valid`` is high (they are computed from whatever is on ``a``/``w`` otherwise).

    Parameters
    ----------
    inputs : int
        Number of activation/weight pairs per word, 1..256.
    act_bits : int
        Width of an unsigned activation code, 1..16.
    tag_bits : int
        Width of the user tag carried alongside the data, 0..64 (default 0). With 0 the ``tag``
        port is one bit wide, ignored, and ``out_tag`` is constant 0.

    Members
    -------
    valid : In(1)
        The word on ``a``/``w``/``tag`` is valid.
    a : In(data.ArrayLayout(unsigned(act_bits), inputs))
        Unsigned activation codes.
    w : In(data.ArrayLayout(unsigned(2), inputs))
        Ternary weight codes: 0b00 = 0, 0b01 = +1, 0b11 = -1, 0b10 = 0.
    tag : In(max(1, tag_bits))
        User data delayed with the word (e.g. first/last flags).
    out_valid : Out(1)
        ``valid`` delayed by ``latency`` cycles.
    sp, sn : Out(sum_bits)
        The class sums, ``sum_bits = bit_length(inputs * (2**act_bits - 1))`` (exact).
    out_tag : Out(max(1, tag_bits))
        ``tag`` delayed by ``latency`` cycles (0 when ``tag_bits == 0``).
    """

    def __init__(self, *, inputs, act_bits, tag_bits=0):
        _check_int("inputs", inputs, 1, 256)
        _check_int("act_bits", act_bits, 1, 16)
        _check_int("tag_bits", tag_bits, 0, 64)
        self._inputs, self._act_bits, self._tag_bits = inputs, act_bits, tag_bits
        sb = _sum_bits(inputs, act_bits)
        super().__init__({
            "valid": In(1),
            "a": In(data.ArrayLayout(unsigned(act_bits), inputs)),
            "w": In(data.ArrayLayout(unsigned(2), inputs)),
            "tag": In(max(1, tag_bits)),
            "out_valid": Out(1),
            "sp": Out(sb),
            "sn": Out(sb),
            "out_tag": Out(max(1, tag_bits)),
        })

    @property
    def inputs(self):
        """Activation/weight pairs per word."""
        return self._inputs

    @property
    def act_bits(self):
        """Activation code width."""
        return self._act_bits

    @property
    def tag_bits(self):
        """Tag width (0: no tag)."""
        return self._tag_bits

    @property
    def sum_bits(self):
        """Width of ``sp`` and ``sn``: ``bit_length(inputs * (2**act_bits - 1))``."""
        return _sum_bits(self._inputs, self._act_bits)

    @property
    def levels(self):
        """Adder levels, ``ceil(log2(inputs))`` (0 for a single input)."""
        return _levels(self._inputs)

    @property
    def latency(self):
        """Cycles from an input word to its outputs: ``max(1, levels)``."""
        return tree_latency(self._inputs)

    @property
    def ii(self):
        """Initiation interval in cycles (a new word every cycle)."""
        return 1

    def _tree(self, m, cls, code, out):
        amax = (1 << self._act_bits) - 1
        # (value, number of leaves it covers); the leaf count bounds the value exactly.
        nodes = [(Mux(self.w[i] == code, self.a[i], 0), 1) for i in range(self._inputs)]
        level = 0
        while level == 0 or len(nodes) > 1:
            nxt = []
            for j in range(0, len(nodes), 2):
                pair = nodes[j:j + 2]
                count = sum(c for _, c in pair)
                reg = Signal(unsigned((count * amax).bit_length()), name=f"{cls}_l{level}_{j // 2}",
                             reset_less=True)
                total = pair[0][0] if len(pair) == 1 else pair[0][0] + pair[1][0]
                # The sum is at most count * amax, so it fits `reg` exactly; the slice only
                # drops adder output bits that are always zero.
                m.d.sync += reg.eq(total[:len(reg)])
                nxt.append((reg, count))
            nodes = nxt
            level += 1
        m.d.comb += out.eq(nodes[0][0])

    def elaborate(self, platform):
        m = Module()
        self._tree(m, "p", W_POS, self.sp)
        self._tree(m, "n", W_NEG, self.sn)
        valid, tag = self.valid, self.tag
        for k in range(self.latency):
            valid_r = Signal(name=f"valid_r{k}")
            m.d.sync += valid_r.eq(valid)
            valid = valid_r
            if self._tag_bits:
                tag_r = Signal(self._tag_bits, name=f"tag_r{k}", reset_less=True)
                m.d.sync += tag_r.eq(tag)
                tag = tag_r
        m.d.comb += self.out_valid.eq(valid)
        if self._tag_bits:
            m.d.comb += self.out_tag.eq(tag)
        return m


class TernaryDot(wiring.Component):
    """One output channel of a ternary-weight layer: ``result = wp * S_p - wn * S_n``.

    A dot product is a sequence of words (``inputs`` activations and weight codes each) from
    the one with ``first`` to the one with ``last`` (both high for a one-word dot product),
    each with ``valid`` high; words with ``valid`` low are ignored, so idle cycles may appear
    anywhere. A :class:`TernaryTree` reduces each word to its class sums ``sp``/``sn``; two
    accumulators of ``accum_bits = acc_bits`` bits sum them over the dot product, wrapping
    modulo ``2**acc_bits``. That is exact for dot products of any length: ``(x * y) mod 2**n``
    depends only on ``x mod 2**n``, so the wrapped sums give the same wrapped result as the
    exact ones (and no bit above ``acc_bits`` of a sum is ever needed). When the ``last`` word's
    sums are in the accumulators, two registered multiplies form ``wp * S_p`` and ``wn * S_n``
    (low ``acc_bits`` bits) and a registered subtraction gives ``result``, wrapped to
    ``acc_bits``-bit two's complement. These are the only two multipliers in the channel.

    ``wp``/``wn`` are unsigned scale codes sampled in the cycle of the ``last`` word (so the
    user holds them stable during the dot product, and may change them for the next one). They
    travel down a delay line next to the sums, which is what lets the next dot product use
    other scales while the previous one is still in the pipeline.

    Timing: ``result_valid`` is high for one cycle, ``latency = tree latency + 3`` cycles after
    the ``last`` word (tree, accumulate, multiply, subtract), with ``result`` valid in that
    cycle. Initiation interval 1: the ``first`` word of the next dot product may follow the
    ``last`` word in the next cycle.

    Parameters
    ----------
    inputs : int
        Activation/weight pairs per word, 1..256.
    act_bits : int
        Unsigned activation code width, 1..16.
    acc_bits : int
        Result width, 8..64 (default 32).
    scale_bits : int
        Unsigned scale code width, 2..32 (default 8).

    Members
    -------
    valid, first, last : In(1)
        Word valid; first and last word of a dot product (qualified by ``valid``).
    a : In(data.ArrayLayout(unsigned(act_bits), inputs))
        Activation codes.
    w : In(data.ArrayLayout(unsigned(2), inputs))
        Ternary weight codes (0b00 = 0, 0b01 = +1, 0b11 = -1, 0b10 = 0).
    wp, wn : In(scale_bits)
        Unsigned scales of the +1 and -1 classes, sampled with the ``last`` word.
    result_valid : Out(1)
        ``result`` holds a finished dot product (one cycle per dot product).
    result : Out(signed(acc_bits))
        ``(wp * S_p - wn * S_n) mod 2**acc_bits`` as a signed number, for any number of words.
    """

    def __init__(self, *, inputs, act_bits, acc_bits=32, scale_bits=8):
        _check_int("inputs", inputs, 1, 256)
        _check_int("act_bits", act_bits, 1, 16)
        _check_int("acc_bits", acc_bits, 8, 64)
        _check_int("scale_bits", scale_bits, 2, 32)
        self._inputs, self._act_bits = inputs, act_bits
        self._acc_bits, self._scale_bits = acc_bits, scale_bits
        super().__init__({
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "a": In(data.ArrayLayout(unsigned(act_bits), inputs)),
            "w": In(data.ArrayLayout(unsigned(2), inputs)),
            "wp": In(scale_bits),
            "wn": In(scale_bits),
            "result_valid": Out(1),
            "result": Out(signed(acc_bits)),
        })

    @property
    def inputs(self):
        """Activation/weight pairs per word."""
        return self._inputs

    @property
    def act_bits(self):
        """Activation code width."""
        return self._act_bits

    @property
    def acc_bits(self):
        """Result width."""
        return self._acc_bits

    @property
    def scale_bits(self):
        """Scale code width."""
        return self._scale_bits

    @property
    def sum_bits(self):
        """Width of one word's class sum."""
        return _sum_bits(self._inputs, self._act_bits)

    @property
    def accum_bits(self):
        """Accumulator width: ``acc_bits`` (the sums wrap modulo ``2**acc_bits``, which keeps
        the result exact for any number of words)."""
        return self._acc_bits

    @property
    def latency(self):
        """Cycles from the ``last`` word to ``result_valid``: tree latency + 3."""
        return tree_latency(self._inputs) + 3

    @property
    def ii(self):
        """Initiation interval: back-to-back words and dot products."""
        return 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.tree = tree = TernaryTree(inputs=self._inputs, act_bits=self._act_bits,
                                               tag_bits=2)
        m.d.comb += [
            tree.valid.eq(self.valid),
            tree.a.eq(self.a),
            tree.w.eq(self.w),
            tree.tag.eq(Cat(self.first, self.last)),
        ]
        first_t, last_t = tree.out_tag[0], tree.out_tag[1]

        # Stage "accumulate": the cycle after the tree output. The accumulators wrap modulo
        # 2**acc_bits: the result only needs S_p and S_n modulo 2**acc_bits (see the class
        # docstring), so this is exact for any number of words.
        ab = self._acc_bits
        acc_p = Signal(ab, reset_less=True)
        acc_n = Signal(ab, reset_less=True)
        done_a = Signal()
        m.d.sync += done_a.eq(tree.out_valid & last_t)
        with m.If(tree.out_valid):
            with m.If(first_t):
                m.d.sync += [acc_p.eq(tree.sp[:ab]), acc_n.eq(tree.sn[:ab])]
            with m.Else():
                m.d.sync += [acc_p.eq((acc_p + tree.sp)[:ab]),
                             acc_n.eq((acc_n + tree.sn)[:ab])]

        # The scales sampled with each word, delayed to line up with the accumulators: the
        # multiply stage reads them tree latency + 1 cycles after the word was presented.
        wp, wn = self.wp, self.wn
        for k in range(max(1, _levels(self._inputs)) + 1):
            wp_r = Signal(self._scale_bits, name=f"wp_r{k}", reset_less=True)
            wn_r = Signal(self._scale_bits, name=f"wn_r{k}", reset_less=True)
            m.d.sync += [wp_r.eq(wp), wn_r.eq(wn)]
            wp, wn = wp_r, wn_r

        # Stage "multiply": only the low acc_bits of each product matter for the wrapped result
        # ((x * y) mod 2**n depends only on x and y mod 2**n), so the product registers stop
        # there and synthesis trims the multipliers' unused high bits.
        prod_p = Signal(ab, reset_less=True)
        prod_n = Signal(ab, reset_less=True)
        done_m = Signal()
        m.d.sync += [
            prod_p.eq((wp * acc_p)[:ab]),
            prod_n.eq((wn * acc_n)[:ab]),
            done_m.eq(done_a),
        ]

        # Stage "subtract": registered output, wrapped to acc_bits two's complement. `diff` is
        # signed and exactly acc_bits wide, so the assignment wraps (never zero-extends): a
        # slice would be unsigned, and a difference narrower than the result would then be
        # zero-extended.
        diff = Signal(signed(ab))
        m.d.comb += diff.eq(prod_p - prod_n)
        m.d.sync += [
            self.result.eq(diff),
            self.result_valid.eq(done_m),
        ]
        return m
