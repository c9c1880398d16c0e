"""BiScaled selector decoder: block index lists -> a per-element scale selector in step with
the element codes."""

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["BiScaledSelectorDecoder"]


class BiScaledSelectorDecoder(wiring.Component):
    """Merges the dense code stream with the block index lists into (code, sw) elements.

    The storage format (`tessera.sim.biscaled.BiScaledTensor`) holds, per block of ``block``
    elements, a count and the sorted in-block indices of the scale-wide elements. ``idx``
    carries those words in storage order (`tessera.sim.biscaled.index_words`: per block the
    count, then the indices); ``i`` carries the codes in element order. ``o`` emits each code
    with ``sw`` = 1 exactly at the listed positions: one comparison of the element's in-block
    position against the head of the list, so the selector leaves in the same transfer as its
    code. Throughput: one element per cycle, plus one cycle per block to take the count word.
    Latency 0 (``o`` is combinational from ``i`` and ``idx``). Stream rules: ``o.valid`` never
    waits on ``o.ready``.

    Parameters
    ----------
    code_bits : int
        Width of an element code, 1..32.
    block : int
        Elements per block, a power of two 2..4096.

    Members
    -------
    i : In(stream.Signature(code_bits))
    idx : In(stream.Signature(index_bits + 1))
        Count and index words (``index_bits = log2(block)``).
    o : Out(stream.Signature(StructLayout({"code": code_bits, "sw": 1})))
    """

    def __init__(self, *, code_bits=6, block=64):
        if isinstance(code_bits, bool) or not isinstance(code_bits, int) or \
                not 1 <= code_bits <= 32:
            raise ValueError(f"code_bits must be an integer 1..32, not {code_bits!r}")
        if isinstance(block, bool) or not isinstance(block, int) or block < 2 or \
                block & (block - 1) or block > 4096:
            raise ValueError(f"block must be a power of two 2..4096, not {block!r}")
        self._code_bits, self._block = code_bits, block
        self._index_bits = (block - 1).bit_length()
        super().__init__({
            "i": In(stream.Signature(code_bits)),
            "idx": In(stream.Signature(self._index_bits + 1)),
            "o": Out(stream.Signature(data.StructLayout({"code": code_bits, "sw": 1}))),
        })

    @property
    def block(self):
        return self._block

    @property
    def index_bits(self):
        return self._index_bits

    @property
    def latency(self):
        return 0

    def elaborate(self, platform):
        m = Module()
        ib = self._index_bits
        pos = Signal(ib)                         # position of the next element in its block
        remaining = Signal(ib + 1)               # listed indices of this block not yet met
        need_count = Signal(init=1)              # the next idx word is a block's count

        hit = Signal()
        decided = Signal()
        m.d.comb += [
            hit.eq((remaining != 0) & (self.idx.payload[:ib] == pos)),
            # With indices left, the head of the list must be present to decide.
            decided.eq(~need_count & ((remaining == 0) | self.idx.valid)),
            self.o.valid.eq(self.i.valid & decided),
            self.o.payload.code.eq(self.i.payload),
            self.o.payload.sw.eq(hit),
            self.i.ready.eq(self.o.ready & decided),
        ]
        do_out = Signal()
        m.d.comb += do_out.eq(self.o.valid & self.o.ready)
        with m.If(need_count):
            m.d.comb += self.idx.ready.eq(1)
            with m.If(self.idx.valid):
                m.d.sync += [remaining.eq(self.idx.payload), need_count.eq(0)]
        with m.Else():
            m.d.comb += self.idx.ready.eq(do_out & hit)
            with m.If(do_out):
                m.d.sync += pos.eq(pos + 1)
                with m.If(hit):
                    m.d.sync += remaining.eq(remaining - 1)
                with m.If(pos == self._block - 1):
                    m.d.sync += need_count.eq(1)
        return m
