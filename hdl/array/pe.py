"""The processing-element interface every PE kind implements."""

from amaranth import Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["PESignature", "PE"]


class PESignature(wiring.Signature):
    """Interface between an array and one processing element (PE contract v2).

    A PE accumulates a stream of operand pairs into one result. The array drives every PE with
    the same control timing, so a PE only has to honour this contract:

    * ``valid``: ``a``/``b`` (and the side-band members) carry an operand pair this cycle.
    * ``first``: with ``valid``, this pair starts a new accumulation (the old sum is dropped;
      the new sum is the contribution of this pair alone).
    * ``last``: with ``valid``, this pair ends the accumulation.
    * ``result``/``result_valid``: exactly ``latency`` cycles after the cycle in which the
      ``last`` pair was presented, ``result_valid`` is high for one cycle and ``result`` holds
      the finished accumulation. ``result`` may hold anything at other times.
    * ``mode`` (only with ``mode_shape``): set before a RUN and held for all of it.

    Pairs may be presented every ``ii`` cycles (the PE class's initiation interval, 1 for
    fully pipelined PEs); the ``first`` pair of the next accumulation may follow the ``last``
    pair of the previous one after ``ii`` cycles, so a PE must keep the drained result
    separate from the running sum. An operand may pack ``lanes`` elements (``a_shape`` is
    then ``lanes`` elements wide; the PE kind's operand layout says how they are packed).

    Parameters
    ----------
    a_shape, b_shape : Shape
        Shapes of one activation / weight operand (raw codes for floating-point kinds).
    acc_shape : Shape
        Shape of the result.
    lanes : int
        Operand elements per ``a``/``b`` (products per valid pair, at most).
    side : dict of str to Shape
        Side-band members that travel with ``a`` through the array (e.g. a per-element scale
        selector, or stochastic-rounding bits), in order.
    mode_shape : Shape or None
        Shape of the run-time ``mode`` input, or None for a PE without modes.

    Members
    -------
    a : In(a_shape)
    b : In(b_shape)
    <side name> : In(shape), for each side-band member
    mode : In(mode_shape), only with ``mode_shape``
    valid : In(1)
    first : In(1)
    last : In(1)
    result : Out(acc_shape)
    result_valid : Out(1)
    """

    def __init__(self, *, a_shape, b_shape, acc_shape, lanes=1, side=None, mode_shape=None):
        self._a_shape = Shape.cast(a_shape)
        self._b_shape = Shape.cast(b_shape)
        self._acc_shape = Shape.cast(acc_shape)
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self._lanes = lanes
        side = dict(side or {})
        reserved = {"a", "b", "mode", "valid", "first", "last", "result", "result_valid"}
        for name in side:
            if name in reserved or not name.isidentifier():
                raise ValueError(f"side-band member name {name!r} is reserved or invalid")
        self._side = tuple((name, Shape.cast(shape)) for name, shape in side.items())
        self._mode_shape = None if mode_shape is None else Shape.cast(mode_shape)
        members = {"a": In(self._a_shape), "b": In(self._b_shape)}
        for name, shape in self._side:
            members[name] = In(shape)
        if self._mode_shape is not None:
            members["mode"] = In(self._mode_shape)
        members.update({
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "result": Out(self._acc_shape),
            "result_valid": Out(1),
        })
        super().__init__(members)

    @property
    def a_shape(self):
        return self._a_shape

    @property
    def b_shape(self):
        return self._b_shape

    @property
    def acc_shape(self):
        return self._acc_shape

    @property
    def lanes(self):
        return self._lanes

    @property
    def side(self):
        """Side-band members as a tuple of ``(name, Shape)``."""
        return self._side

    @property
    def mode_shape(self):
        return self._mode_shape

    def __eq__(self, other):
        return (isinstance(other, PESignature) and self.a_shape == other.a_shape
                and self.b_shape == other.b_shape and self.acc_shape == other.acc_shape
                and self.lanes == other.lanes and self.side == other.side
                and self.mode_shape == other.mode_shape)

    def __repr__(self):
        return (f"PESignature(a_shape={self.a_shape!r}, b_shape={self.b_shape!r}, "
                f"acc_shape={self.acc_shape!r}, lanes={self.lanes}, side={dict(self.side)!r}, "
                f"mode_shape={self.mode_shape!r})")


class PE(wiring.Component):
    """Base class of processing elements: a component whose signature is a `PESignature`.

    Subclasses call ``super().__init__(PESignature(...))`` and define ``latency`` (cycles from
    the ``last`` pair to ``result_valid``) and ``elaborate``; they may override ``ii`` (cycles
    between operand pairs, 1 by default). A subclass without ``latency`` is rejected when the
    class is created, not when an array first asks for it.
    """

    @property
    def ii(self):
        return 1

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not any("latency" in vars(k) for k in cls.__mro__ if k is not PE):
            raise TypeError(f"PE subclass {cls.__name__} must define `latency`")
