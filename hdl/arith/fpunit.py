"""Common base of the floating-point units (`FPMul`, `FPAdd`, `FPConvert`, `FPFMA`, `FPMac`)."""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .fpcommon import check_bool, check_sr_bits, check_stages


__all__ = ["FPUnit"]


class FPUnit(wiring.Component):
    """Base class of the floating-point units: owns the parameters they all share.

    A unit validates its own parameters first, then calls `_fp_params` for ``ftz``,
    ``sr_bits`` and ``stages`` (in that order), and finally ``super().__init__`` with a
    signature, usually built by `_members` (which adds the ``rand`` input when
    ``sr_bits > 0``). Every unit is fully pipelined, so ``latency`` is ``stages``.

    Properties
    ----------
    ftz : bool
        Flush-to-zero on inputs and results.
    sr_bits : int
        Stochastic-rounding bits (0: round to nearest; always 0 for units without ``rand``).
    stages : int
        Pipeline registers.
    latency : int
        Equal to ``stages``: cycles from the operands to their ``result`` (for `FPMac`, from
        the ``last`` pair to ``result_valid``).
    """

    def _fp_params(self, *, ftz, sr_bits=0, stages, min_stages=1):
        """Validate and store ``ftz``, ``sr_bits`` and ``stages`` (``min_stages``..4)."""
        self._ftz = check_bool("ftz", ftz)
        self._sr_bits = check_sr_bits(sr_bits)
        self._stages = check_stages(stages, minimum=min_stages)

    def _rand_side(self):
        """``{"rand": sr_bits}`` with stochastic rounding, else ``{}``."""
        return {"rand": self._sr_bits} if self._sr_bits else {}

    def _members(self, inputs, outputs):
        """Signature members: ``inputs`` (name to shape), then ``rand`` when ``sr_bits > 0``,
        then ``outputs``."""
        members = {name: In(shape) for name, shape in inputs.items()}
        members.update({name: In(shape) for name, shape in self._rand_side().items()})
        members.update({name: Out(shape) for name, shape in outputs.items()})
        return members

    ftz = property(lambda self: self._ftz)
    sr_bits = property(lambda self: self._sr_bits)
    stages = property(lambda self: self._stages)

    @property
    def latency(self):
        return self._stages
