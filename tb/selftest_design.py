"""Tiny Amaranth designs that exercise the simulation plumbing (not part of any core).

* :class:`EchoPlusOne` has the core's host-link signature
  (:class:`tessera.hdl.core.HostLinkSignature`) and answers every byte with that byte plus one.
  The cocotb self-test (``tb/selftest_cocotb.py``) drives it through :mod:`tessera.tb.drivers`.
* :class:`LintSampler` is never simulated: it gathers the constructs that make Verilator's
  ``-Wall`` complain about Amaranth output (``lib.memory.Memory``, signed arithmetic, an FSM,
  mixed-width comparisons, unused input bits) so the waivers in ``tb/waivers.vlt`` are justified
  against real generated Verilog, and stay lint-clean.
"""

import os

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.back import verilog
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tessera.hdl.io.hostlink import HostLinkSignature


__all__ = ["EchoPlusOne", "LintSampler", "to_verilog"]


class EchoPlusOne(wiring.Component):
    """Byte echo that returns ``(byte + increment) % 256`` through a 1-deep output register.

    The output register is a pipeline stage with no skid buffer: ``i.ready`` is high when the
    register is empty or is being emptied this cycle, so back-pressure on ``o`` stalls ``i``
    combinationally. Latency is one cycle; throughput is one byte per cycle.

    Parameters
    ----------
    increment : int
        Added to each byte, modulo 256. Changing it changes the Verilog, which the runner's build
        cache must notice.

    Members
    -------
    i, o : as in `HostLinkSignature`
        Host-to-core and core-to-host bytes.
    busy : Out(1)
        High while a byte waits in the output register.
    error : Out(1)
        Sticky; set when a byte 0xFF is received (so tests can check a flag), cleared by reset.
    """

    def __init__(self, *, increment=1):
        if not isinstance(increment, int) or not 0 <= increment <= 255:
            raise ValueError(f"increment must be an int in 0..255, not {increment!r}")
        self._increment = increment
        super().__init__(HostLinkSignature())

    @property
    def increment(self):
        """Value added to every byte (modulo 256)."""
        return self._increment

    @property
    def latency(self):
        """Cycles from an accepted input byte to its output byte becoming valid."""
        return 1

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.eq((self.i.payload + self._increment)[:8]),
            ]
            with m.If(self.i.payload == 0xFF):
                m.d.sync += self.error.eq(1)
        m.d.comb += self.busy.eq(self.o.valid)
        return m


class _SignedProduct(wiring.Component):
    """Registered signed 8x8 product (a submodule, so the Verilog holds a second module)."""

    a: In(signed(8))
    b: In(signed(8))
    en: In(1)
    p: Out(signed(16))

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.p.eq(self.a * self.b)
        return m


class LintSampler(wiring.Component):
    """A small accumulate-into-memory engine that uses every construct the waivers cover.

    Each accepted ``i`` beat carries a signed 8-bit operand pair; a submodule registers their
    product, which is added to a signed accumulator held in a 16-entry ``Memory`` (synchronous
    read, so the FSM waits a cycle). The top bits of the beat select the address; ``cfg[6:0]``
    are deliberately unused.

    Members
    -------
    i : In(stream.Signature(20))
        ``[7:0]`` operand a, ``[15:8]`` operand b, ``[19:16]`` address.
    cfg : In(8)
        ``cfg[7]`` clears the addressed word instead of accumulating; ``cfg[6:0]`` are unused.
    o : Out(stream.Signature(signed(20)))
        The new accumulator value.
    """

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(20)),
            "cfg": In(8),
            "o": Out(stream.Signature(signed(20))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=signed(20), depth=16, init=[])
        rd = mem.read_port()
        wr = mem.write_port()
        m.submodules.mul = mul = _SignedProduct()
        addr = self.i.payload[16:20]
        m.d.comb += [
            mul.a.eq(self.i.payload[0:8].as_signed()),
            mul.b.eq(self.i.payload[8:16].as_signed()),
        ]
        prod_q = mul.p
        addr_q = Signal(unsigned(4))
        clear_q = Signal()
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                m.d.comb += rd.addr.eq(addr)
                m.d.comb += mul.en.eq(self.i.valid)
                with m.If(self.i.valid):
                    m.d.sync += [addr_q.eq(addr), clear_q.eq(self.cfg[7])]
                    m.next = "ACC"
            with m.State("ACC"):
                new = Mux(clear_q, 0, rd.data + prod_q)
                m.d.comb += [wr.addr.eq(addr_q), wr.data.eq(new), wr.en.eq(1)]
                m.d.sync += [self.o.payload.eq(new), self.o.valid.eq(1)]
                m.next = "OUT"
            with m.State("OUT"):
                with m.If(self.o.ready):
                    m.d.sync += self.o.valid.eq(0)
                    m.next = "IDLE"
        return m


def to_verilog(component, name):
    """Convert ``component`` to deterministic Verilog text.

    Parameters
    ----------
    component : wiring.Component
        A freshly constructed component (components are single-use).
    name : str
        Verilog module name.

    Returns
    -------
    str
        Verilog source, byte-identical for the same design and tool versions.
    """
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    return verilog.convert(component, name=name, emit_src=False)
