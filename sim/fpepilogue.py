"""Golden twin of `tessera.hdl.arith.fpepilogue.FPEpilogue`: bias add in the accumulator
format, conversion to the operand format, ReLU (rule: the HDL module's docstring and
``docs/epilogue.md``), on codes, with `tessera.sim.fp`."""

import numpy as np

from tessera.sim import fp


__all__ = ["fp_epilogue"]


def fp_epilogue(acc, bias, relu, *, fmt_acc, fmt_in):
    """Element-wise (arguments broadcast): ``fmt_acc`` codes ``acc`` and ``bias``, a 0/1
    ``relu`` -> ``fmt_in`` codes (uint64)."""
    acc, bias, relu = np.broadcast_arrays(np.asarray(acc, dtype=np.uint64),
                                          np.asarray(bias, dtype=np.uint64),
                                          np.asarray(relu, dtype=np.int64))
    s = fp.add(fmt_acc, acc.astype(np.uint32), bias.astype(np.uint32))
    y = fp.convert(fmt_acc, fmt_in, s).astype(np.uint64)
    neg = ((y >> np.uint64(fmt_in.width - 1)) & np.uint64(1)).astype(bool) \
        & ~np.isnan(fp.decode(fmt_in, y))
    return np.where((relu != 0) & neg, np.uint64(0), y).astype(np.uint64)
