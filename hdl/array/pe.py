"""The processing-element interface every PE kind implements."""

from amaranth import Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["PESignature", "PE"]


class PESignature(wiring.Signature):
    """Interface between an array and one processing element.

    A PE accumulates a stream of operand pairs into one result. The array drives every PE with
    the same control timing, so a PE only has to honour this contract:

    * ``valid``: ``a``/``b`` carry an operand pair this cycle.
    * ``first``: with ``valid``, this pair starts a new accumulation (the old sum is dropped;
      the new sum is the contribution of this pair alone).
    * ``last``: with ``valid``, this pair ends the accumulation.
    * ``result``/``result_valid``: exactly ``latency`` cycles after the cycle in which the
      ``last`` pair was presented, ``result_valid`` is high for one cycle and ``result`` holds
      the finished accumulation. ``result`` may hold anything at other times.

    Pairs may be presented back to back (initiation interval 1); the ``first`` pair of the next
    accumulation may follow the ``last`` pair of the previous one in the very next cycle, so a
    PE must keep the drained result separate from the running sum.

    Parameters
    ----------
    a_shape : Shape
        Shape of the activation operand (raw code for floating-point kinds).
    b_shape : Shape
        Shape of the weight operand.
    acc_shape : Shape
        Shape of the result.

    Members
    -------
    a : In(a_shape)
    b : In(b_shape)
    valid : In(1)
    first : In(1)
    last : In(1)
    result : Out(acc_shape)
    result_valid : Out(1)
    """

    def __init__(self, *, a_shape, b_shape, acc_shape):
        self._a_shape = Shape.cast(a_shape)
        self._b_shape = Shape.cast(b_shape)
        self._acc_shape = Shape.cast(acc_shape)
        super().__init__({
            "a": In(self._a_shape),
            "b": In(self._b_shape),
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "result": Out(self._acc_shape),
            "result_valid": Out(1),
        })

    @property
    def a_shape(self):
        return self._a_shape

    @property
    def b_shape(self):
        return self._b_shape

    @property
    def acc_shape(self):
        return self._acc_shape

    def __eq__(self, other):
        return (isinstance(other, PESignature) and self.a_shape == other.a_shape
                and self.b_shape == other.b_shape and self.acc_shape == other.acc_shape)

    def __repr__(self):
        return (f"PESignature(a_shape={self.a_shape!r}, b_shape={self.b_shape!r}, "
                f"acc_shape={self.acc_shape!r})")


class PE(wiring.Component):
    """Base class of processing elements: a component whose signature is a `PESignature`.

    Subclasses call ``super().__init__(PESignature(...))`` and define ``latency`` (cycles from
    the ``last`` pair to ``result_valid``) and ``elaborate``. A subclass without ``latency`` is
    rejected when the class is created, not when an array first asks for it.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not any("latency" in vars(k) for k in cls.__mro__ if k is not PE):
            raise TypeError(f"PE subclass {cls.__name__} must define `latency`")
