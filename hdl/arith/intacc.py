"""The integer accumulator PE shell: a product function, its registered result, a wrapping
accumulator. `IntMacPE`, `FpecMacPE`, `BiScaledMacPE` and `BitFusionPE` are built on it; its
product, term and accumulate are the parts other engines compose (`tessera.hdl.array.parts`)."""

from amaranth import Module, Mux, Shape, Signal, Value

from tessera.hdl.arith.params import int_acc_latency
from tessera.hdl.array.parts import Parts, compose_term, wrap_step
from tessera.hdl.array.pe import PE


__all__ = ["IntAccPE", "wrap_accumulate"]


def wrap_accumulate(m, pe, term, *, valid, first, last):
    """The wrapping accumulator of an integer PE, in module ``m``: when ``valid``, the
    accumulator (``pe.result``'s shape, reset-less) becomes ``term`` if ``first``, else its sum
    with ``term``, modulo ``2**width``; ``pe.result`` shows the accumulator and
    ``pe.result_valid`` is ``last`` one cycle later (when the sum is complete). ``last`` must
    be high only with ``valid`` (pass ``valid & last`` otherwise).

    Returns the accumulator signal.
    """
    acc = Signal(pe.result.shape(), name="acc", reset_less=True)
    with m.If(valid):
        m.d.sync += acc.eq(Mux(first, 0, acc) + term)
    m.d.sync += pe.result_valid.eq(last)
    m.d.comb += pe.result.eq(acc)
    return acc


class IntAccPE(PE, Parts):
    """Base of the integer PEs whose every operand pair makes one term of a wrapping sum.

    Pipeline (initiation interval 1): the subclass's product function, with `front` pipeline
    registers of its own (control follows the data through as many registers); the product
    register, which registers what `products` returns; then `term`, combinational, from the
    registered products; then the accumulator (`wrap_accumulate`) into a signed ``acc_bits``
    ``result``. Latency ``front + 2`` (`tessera.hdl.arith.params.int_acc_latency`): a ``last``
    pair presented in cycle t gives ``result_valid`` in cycle t + latency. A new accumulation
    may start the cycle after the ``last`` pair: its first term reaches the accumulator the
    cycle after the result was shown.

    Subclasses call ``super().__init__(signature)`` with a `PESignature` whose ``acc_shape`` is
    ``signed(acc_bits)``, and define `products` (and `term`, `front` where needed).
    """

    @property
    def acc_bits(self):
        return Shape.cast(self.signature.acc_shape).width

    @property
    def latency(self):
        return int_acc_latency(self.front)

    def accumulate(self, m, psum, term, row):
        """The wrapping accumulate (`wrap_step`)."""
        return wrap_step(psum, term, row, self.acc_bits)

    def elaborate(self, platform):
        m = Module()
        valid, first, last = self.valid, self.valid & self.first, self.valid & self.last
        # The control follows the pair through the product function's own registers and
        # the product register (`compose_term`), then meets the term at the accumulator.
        for i in range(self.front + 1):
            nv, nf, nl = (Signal(name=f"{n}_s{i}" if i < self.front else f"{n}_p")
                          for n in ("valid", "first", "last"))
            m.d.sync += [nv.eq(valid), nf.eq(first), nl.eq(last)]
            valid, first, last = nv, nf, nl
        term = Value.cast(compose_term(m, self))
        wrap_accumulate(m, self, term, valid=valid, first=first, last=last)
        return m
