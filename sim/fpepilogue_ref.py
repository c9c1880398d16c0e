"""The independent reference of the FP epilogue (``docs/epilogue.md``): values, not codes, with
`tessera.sim.fpref` (which shares no code with `tessera.sim.fp` or the HDL): decode both
accumulator-format codes exactly, add them with TwoSum and round once into the accumulator
format, round that value once into the operand format, ReLU as ``max(y, 0)`` on the value
(NaN stays NaN, ``-0`` becomes ``+0``), encode. `ml_dtypes` cross-checks it where it has the
formats (tests/test_fp_epilogue.py)."""

import numpy as np

from tessera.sim import fpref


__all__ = ["ref_fp_epilogue", "reference_layer_codes_fp"]


def ref_fp_epilogue(acc, bias, relu, *, fmt_acc, fmt_in):
    """Element-wise: ``fmt_acc`` codes ``acc``, ``bias``, 0/1 ``relu`` -> ``fmt_in`` codes."""
    acc, bias, relu = np.broadcast_arrays(np.asarray(acc, dtype=np.uint64),
                                          np.asarray(bias, dtype=np.uint64),
                                          np.asarray(relu, dtype=np.int64))
    x = fpref.decode_codes(fmt_acc, acc)
    b = fpref.decode_codes(fmt_acc, bias)
    with np.errstate(invalid="ignore", over="ignore"):
        s = x + b
        bb = s - x
        err = (x - (s - bb)) + (b - bb)
    err = np.where(np.isfinite(s), err, 0.0)
    s = fpref.round_to_format(fmt_acc, s, err)
    y = fpref.round_to_format(fmt_in, s)
    with np.errstate(invalid="ignore"):
        y = np.where((relu != 0) & ~np.isnan(y) & ~(y > 0), 0.0, y)
    return fpref.encode_values(fmt_in, y)


def reference_layer_codes_fp(acc_codes, params, *, fmt_acc, fmt_in):
    """Epilogue output codes of a layer's accumulator codes (channel axis 1) under ``params``
    (per-channel ``bias`` codes, the RUN's ``relu``)."""
    acc = np.asarray(acc_codes, dtype=np.uint64)
    shape = [1] * acc.ndim
    shape[1] = acc.shape[1]
    bias = np.asarray(params["bias"], dtype=np.uint64).reshape(shape)
    return ref_fp_epilogue(acc, bias, int(params["relu"]), fmt_acc=fmt_acc, fmt_in=fmt_in)
