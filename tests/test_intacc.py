# amaranth: UnusedElaboratable=no
"""`IntAccPE` (hdl/arith/intacc.py), the integer accumulator PE the int-like kinds share: each
of those kinds' PEs is built on it and states the latency its kind reports (the PEs' values
are checked against their twins in their own test files)."""

import pytest

from tessera.generators.kinds import PE_KINDS
from tessera.hdl.arith.intacc import IntAccPE


@pytest.mark.parametrize("kind", ["int", "fpec", "biscaled", "bitfusion"])
def test_int_like_pes_are_intacc(kind):
    cfg = PE_KINDS[kind]()
    pe = cfg.make_pe()
    assert isinstance(pe, IntAccPE)
    assert pe.latency == cfg.latency
    assert pe.acc_bits == cfg.acc_bits


def test_multiprec_pe_is_not_forced_into_it():
    """MultiPrec's sequencer makes up to four terms per pair: it shares only the accumulator
    (`wrap_accumulate`), not the shell."""
    assert not isinstance(PE_KINDS["multiprec"]().make_pe(), IntAccPE)
