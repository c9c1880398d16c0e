"""The PE-arithmetic parts contract: a PE kind's arithmetic as parts an engine composes.

In the manner of Gemmini's ``Arithmetic`` type class, a PE kind that offers *parts* hands an
engine four pieces, and the engine builds its own processing element around them (its own
registers, its own dataflow):

* **product** (`ProductParts.products`, `ProductParts.front`): from one operand pair (the
  members ``a``, ``b``, the side-band members and ``mode`` of the parts' `PESignature`, which
  the composing engine drives), the values the product register holds, after ``front``
  pipeline registers of the product function's own;
* **term** (`ProductParts.term`): combinational, from the registered products, one signed
  integer the pair contributes;
* **accumulate**: the term is added into the kind's ``acc_bits`` accumulator modulo
  ``2**acc_bits`` (two's complement wrap). Addition modulo a power of two is associative and
  commutative, so *any* order and grouping of the terms of one output gives the same code:
  an output-stationary PE may sum them in time, a weight-stationary column in space (partial
  sums flowing down), an accumulator store across tiles;
* **combine** and **epilogue**: the kind's `Combiner` (a wrapping add) and epilogue, applied by
  the output stage as for every engine.

`compose_term` is the one composer of product, register and term; `tessera.hdl.arith.intacc.
IntAccPE` composes it with an accumulator into an output-stationary PE and `tessera.hdl.array.
ws_gemm.WSGemmArray` with a partial-sum adder into a weight-stationary one. A parts provider
is a new, un-elaborated `IntAccPE` instance (`is_parts`): the integer kinds ``int``,
``fpec``, ``biscaled`` and ``bitfusion`` offer parts; a kind whose accumulate is not an
integer wrap (``fpmac``: a rounding floating-point add, whose result depends on the order of
the terms) or whose pair takes several cycles (``multiprec``) does not (`PEKind.parts`).
"""

from amaranth import Shape, Signal, Value


__all__ = ["is_parts", "compose_term", "term_shape_bound"]


def is_parts(obj):
    """Whether ``obj`` honours the parts contract: a `tessera.hdl.arith.intacc.IntAccPE`
    (``front``, ``products``, ``term``, ``acc_bits``, a `PESignature`)."""
    from tessera.hdl.arith.intacc import IntAccPE
    return isinstance(obj, IntAccPE)


def compose_term(m, parts):
    """Product, product register and term of ``parts`` in module ``m``.

    Calls ``parts.products(m)`` (which reads the parts' operand members, adds its own logic
    and ``front`` registers to ``m``), registers each value (reset-less, one register named
    as the value) and returns ``parts.term(m, regs)`` as a `Value`: the term of the pair
    presented ``front + 1`` cycles earlier.
    """
    regs = {}
    for name, value in parts.products(m).items():
        value, shape = value if isinstance(value, tuple) else (value, None)
        value = Value.cast(value)
        regs[name] = Signal(value.shape() if shape is None else shape, name=name,
                            reset_less=True)
        m.d.sync += regs[name].eq(value)
    return Value.cast(parts.term(m, regs))


def term_shape_bound(term_shape, count, acc_bits):
    """The signed shape that holds the exact sum of ``count`` terms of ``term_shape``, or
    ``signed(acc_bits)`` when that is narrower (the sum then wraps as the accumulator does,
    which gives the same code modulo ``2**acc_bits``)."""
    s = Shape.cast(term_shape)
    exact = s.width + (0 if s.signed else 1) + (count - 1).bit_length()
    return Shape(min(exact, acc_bits), signed=True)
