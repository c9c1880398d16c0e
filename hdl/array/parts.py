"""The PE-arithmetic parts contract: a PE kind's arithmetic as parts an engine composes.

In the manner of Gemmini's ``Arithmetic`` type class, a PE kind that offers *parts* hands an
engine its arithmetic in pieces, and the engine builds its own processing element around them
(its own registers, its own dataflow). A parts provider (`Parts`) is a component with the
members of a `PESignature` (``a``, ``b``, the side-band members and ``mode``, which the
composing engine drives) and:

* **product** (`Parts.products`, `Parts.front`): from one operand pair, the values the product
  register holds, after ``front`` pipeline registers of the product function's own;
* **term** (`Parts.term`): combinational, from the registered products, what the pair
  contributes (an integer for the integer kinds; an exact floating-point product, or a
  window addend with special-value flags, for ``fpmac``);
* **accumulate** (`Parts.accumulate`): the partial sum after one more term, combinational,
  given the partial sum so far (None before the first term) and the term's position ``row``
  in the sum: a weight-stationary column applies it once per row, with a register between
  rows, so each step's logic is one cycle;
* **finish** (`Parts.finish`, `Parts.finish_latency`): the kind's result word from a finished
  partial sum (identity for the integer kinds; one rounding for ``fpmac``'s exact sums);
* **combine** and **epilogue**: the kind's `Combiner` and epilogue, applied by the output
  stage as for every engine.

The integer kinds (``int``, ``fpec``, ``biscaled``, ``bitfusion``) accumulate by a wrapping
add modulo ``2**acc_bits``, which is associative and commutative: any order and grouping of
the terms gives the output-stationary code. ``fpmac``'s accumulate rounds, so its result
depends on the grouping: its parts sum the ``rows`` terms of a column in the order of the
output-stationary PE (a sum of ``rows`` pairs from ``+0``), and the output stage's combiner
adds the columns' results, as the output-stationary core does for a K split into RUNs of
``rows`` pairs (docs/dataflows.md).

`compose_term` is the one composer of product, register and term; `tessera.hdl.arith.intacc.
IntAccPE` composes it with an accumulator into an output-stationary PE and `tessera.hdl.array.
ws_gemm.WSGemmArray` with a column of `Parts.accumulate` steps into a weight-stationary one.
"""

from abc import ABCMeta, abstractmethod

from amaranth import Shape, Signal, Value


__all__ = ["Parts", "is_parts", "compose_term", "term_shape_bound", "wrap_step",
           "mark_composed"]


class Parts(metaclass=ABCMeta):
    """Mixin of a parts provider: a `wiring.Component` whose signature is a `PESignature`
    (module docstring). Subclasses define `products` and `accumulate` (abstract: a class
    without them cannot be instantiated), and `front`, `term`, `finish`, `finish_latency`
    where the defaults do not fit."""

    @property
    def front(self):
        """Pipeline registers of the product function before the product register."""
        return 0

    @abstractmethod
    def products(self, m):
        """The values the product register holds, from the operands ``front`` cycles earlier:
        a dict ``{name: value}`` or ``{name: (value, shape)}`` (a shape truncates or extends
        the value). Add any submodule or combinational logic to ``m``."""

    def term(self, m, regs):
        """What the pair contributes, from ``regs`` (the registered products by name; the
        default: the one product itself)."""
        (value,) = regs.values()
        return value

    @abstractmethod
    def accumulate(self, m, psum, term, row):
        """The partial sum after adding ``term`` (combinational logic in ``m``): ``psum`` is
        the partial sum of the terms before it, or None when ``term`` is the first; ``row`` is
        the term's position (0 for the first). Returns a Value, or ``(value, shape)``."""

    def finish(self, m, psum, rows):
        """The result word (``acc_shape``) of a partial sum of ``rows`` terms, after
        `finish_latency` registers of its own in ``m`` (default: the partial sum itself)."""
        return psum

    @property
    def finish_latency(self):
        return 0

    #: Whether `products` reads the ``valid`` member (the composing engine then drives it
    #: with the pair's valid, which travels with the operands): a product function that
    #: sequences a pair over several cycles (``multiprec``, whose pairs come every ``ii``
    #: cycles) needs it; the default is False.
    uses_valid = False


def mark_composed(parts):
    """Mark a parts provider (and the components it holds) as used: an engine elaborates its
    parts, not the provider itself, and asking for its timing elaborates nothing (no
    ``UnusedElaboratable`` warning for either)."""
    from amaranth.hdl import Elaboratable
    for obj in (parts, *vars(parts).values()):
        if isinstance(obj, Elaboratable):
            obj._MustUse__used = True
    return parts


def is_parts(obj):
    """Whether ``obj`` honours the parts contract: a `Parts` component with a `PESignature`."""
    from tessera.hdl.array.pe import PESignature
    return isinstance(obj, Parts) and isinstance(getattr(obj, "signature", None), PESignature)


def compose_term(m, parts):
    """Product, product register and term of ``parts`` in module ``m``.

    Calls ``parts.products(m)`` (which reads the parts' operand members, adds its own logic
    and ``front`` registers to ``m``), registers each value (reset-less, one register named
    as the value) and returns ``parts.term(m, regs)``: the term of the pair
    presented ``front + 1`` cycles earlier.
    """
    regs = {}
    for name, value in parts.products(m).items():
        value, shape = value if isinstance(value, tuple) else (value, None)
        value = Value.cast(value)
        regs[name] = Signal(value.shape() if shape is None else shape, name=name,
                            reset_less=True)
        m.d.sync += regs[name].eq(value)
    return parts.term(m, regs)


def term_shape_bound(term_shape, count, acc_bits):
    """The signed shape that holds the exact sum of ``count`` terms of ``term_shape``, or
    ``signed(acc_bits)`` when that is narrower (the sum then wraps as the accumulator does,
    which gives the same code modulo ``2**acc_bits``)."""
    s = Shape.cast(term_shape)
    exact = s.width + (0 if s.signed else 1) + (count - 1).bit_length()
    return Shape(min(exact, acc_bits), signed=True)


def wrap_step(psum, term, row, acc_bits):
    """The wrapping accumulate of the integer kinds (`Parts.accumulate`): ``psum + term``
    (``term`` alone for the first) as ``(value, shape)``, the shape exact while the sum of
    ``row + 1`` terms fits, else ``signed(acc_bits)`` (modulo ``2**acc_bits``)."""
    term = Value.cast(term)
    shape = term_shape_bound(term.shape(), row + 1, acc_bits)
    return (term if psum is None else psum + term), shape
