"""Engine constants as plain Python: the one home of the numbers an engine's HDL and its golden
twin (`tessera.sim.engines`) must agree on. No Amaranth import, so a twin reads them without
importing an HDL module."""

__all__ = ["FLAG_ACCUMULATE", "FLAG_EPILOGUE", "PRODUCT_STEPS", "CHECK_CYCLES",
           "tree_latency", "STORED_READ_REGISTER", "accumulate_latency", "ws_periods"]

#: RUN flag bit (every engine): add the results to what the result store holds, with the PE
#: kind's combiner.
FLAG_ACCUMULATE = 0x01

#: RUN flag bit: the output stage applies the epilogue (parameter words ``p_base + tile``)
#: and writes the epilogue result store instead of the accumulator store.
FLAG_EPILOGUE = 0x02

#: Cycles of the shift-add multiplications of 16-bit RUN fields in the argument check.
PRODUCT_STEPS = 16

#: Cycles the argument check takes (the products, then one compare).
CHECK_CYCLES = PRODUCT_STEPS + 1


def tree_latency(inputs):
    """Pipeline stages of a `TernaryTree` of ``inputs`` leaves: one per adder level (min 1)."""
    return max(1, (inputs - 1).bit_length())


#: Registers between the result store's read port and the output stage's combiners (the
#: stored word is registered as it leaves the block RAM).
STORED_READ_REGISTER = 1


def accumulate_latency(combiner):
    """Extra cycles an accumulating RUN spends in the output stage over a replacing one: the
    stored word's read register and the combiner's latency (0 without a combiner: such a kind
    cannot accumulate). Every cycle model and INFO's ``combiner_latency`` take it from here."""
    return 0 if combiner is None else STORED_READ_REGISTER + combiner.latency


def ws_periods(m, rows, acc_latency, ii=1):
    """``(P, P_gap)``: cycles of a weight-stationary pass of ``m`` vectors, one every ``ii``
    cycles (at least a weight burst of ``rows``, and ``2 + acc_latency`` so that a combining
    word reads its row after the previous pass's write), and of a combining pass that a
    replacing one follows (its words' writes, ``acc_latency`` later than a replacing word's,
    must be done first)."""
    al = acc_latency or 0
    p = max(m * ii, rows, 2 + al)
    return p, max(p, m * ii + al)
