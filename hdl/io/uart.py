"""8N1 UART receiver, transmitter and a byte-stream bridge between UART pins and a core."""

from amaranth import *
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from tessera.hdl.io.params import _check_int, uart_divisor

__all__ = ["UARTRx", "UARTTx", "UARTBridge", "uart_divisor"]


# `uart_divisor` is plain Python in `tessera.hdl.io.params` (the host side reads it there).


class UARTRx(wiring.Component):
    """8N1 UART receiver with a receive FIFO.

    The ``rx`` pin passes through a two-flop synchronizer. A low level in idle starts a frame;
    the start bit is confirmed half a bit later (a glitch returns to idle), then each data bit
    (LSB first) and the stop bit are sampled in the middle of their bit time, every ``divisor``
    cycles. A good frame is written to a FIFO of ``fifo_depth`` bytes that feeds ``o``. A wire
    cannot be paused, so when the FIFO is full the new byte is dropped and ``overrun`` pulses.
    A low stop bit drops the byte and pulses ``error``; the receiver then waits for the line to
    return high before looking for the next start bit. Behaviour is modelled cycle-exactly
    (minus the two synchronizer cycles) by :func:`tessera.sim.uart.uart_decode`.

    Latency (:attr:`latency`): a byte appears on ``o`` 4 cycles after the middle of its stop
    bit on the pin (synchronizer 2, FIFO 2; 3 in total with ``fifo_depth=1``). Throughput: one
    byte per ``10*divisor`` cycles, the line rate.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (``clk_hz / baud``, see :func:`uart_divisor`), at least 4.
    fifo_depth : int
        Bytes the receive FIFO holds, at least 1.

    Members
    -------
    rx : In(1, init=1)
        Serial input (asynchronous to the clock; idle high).
    o : Out(stream.Signature(8))
        Received bytes.
    error : Out(1)
        One-cycle pulse per frame with a low stop bit (framing error).
    overrun : Out(1)
        One-cycle pulse per good byte dropped because the FIFO was full.
    busy : Out(1)
        High while a frame is being received.
    """

    def __init__(self, *, divisor, fifo_depth=16):
        self._divisor = _check_int("divisor", divisor, 4)
        self._fifo_depth = _check_int("fifo_depth", fifo_depth, 1)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "error": Out(1),
            "overrun": Out(1),
            "busy": Out(1),
        })

    @property
    def divisor(self):
        """Clock cycles per bit.

        Returns
        -------
        int
        """
        return self._divisor

    @property
    def fifo_depth(self):
        """Capacity of the receive FIFO in bytes.

        Returns
        -------
        int
        """
        return self._fifo_depth

    @property
    def latency(self):
        """Cycles from the stop-bit sample point on the pin to ``o.valid``.

        Returns
        -------
        int
        """
        return 2 + (1 if self._fifo_depth == 1 else 2)

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor

        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1, stages=2)

        m.submodules.fifo = queue = fifo.SyncFIFOBuffered(width=8, depth=self._fifo_depth)
        wiring.connect(m, wiring.flipped(self.o), queue.r_stream)

        count = Signal(range(divisor))
        bit = Signal(range(8))
        shreg = Signal(8)
        strobe = Signal()                      # good frame complete this cycle
        tick = count == 0

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += count.eq(divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(tick):
                    m.d.sync += [count.eq(divisor - 1), bit.eq(0)]
                    with m.If(rx):
                        m.next = "IDLE"        # glitch shorter than half a bit
                    with m.Else():
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += count.eq(count - 1)
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += [count.eq(divisor - 1), bit.eq(bit + 1),
                                 shreg.eq(Cat(shreg[1:], rx))]
                    with m.If(bit == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += count.eq(count - 1)
            with m.State("STOP"):
                with m.If(tick):
                    with m.If(rx):
                        m.d.comb += strobe.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.error.eq(1)
                        m.next = "BREAK"
                with m.Else():
                    m.d.sync += count.eq(count - 1)
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"

        m.d.comb += [
            self.busy.eq(~fsm.ongoing("IDLE")),
            queue.w_data.eq(shreg),
            queue.w_en.eq(strobe),
            self.overrun.eq(strobe & ~queue.w_rdy),
        ]
        return m


class UARTTx(wiring.Component):
    """8N1 UART transmitter with an optional transmit FIFO.

    A byte accepted from ``i`` is sent as a start bit, eight data bits LSB first and a stop bit,
    each ``divisor`` cycles long, on the registered output ``tx``. ``i.ready`` rises in the
    last cycle of the stop bit, so bytes offered back to back leave without idle time between
    frames; the waveform is then exactly :func:`tessera.sim.uart.uart_encode` of those bytes.
    The transmitter applies back-pressure itself; the optional FIFO (``fifo_depth`` > 0) only
    decouples a producer that wants to hand over a burst and move on.

    Latency (:attr:`latency`): ``tx`` goes low 1 cycle after the transfer on ``i`` when the
    line is idle; a FIFO adds 1 cycle (depth 1) or 2.
    Throughput: one byte per ``10*divisor`` cycles.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.
    fifo_depth : int
        Bytes buffered before the shifter; 0 for none.

    Members
    -------
    i : In(stream.Signature(8))
        Bytes to send.
    tx : Out(1, init=1)
        Serial output (idle high).
    busy : Out(1)
        High while a frame is on the line.
    """

    def __init__(self, *, divisor, fifo_depth=0):
        self._divisor = _check_int("divisor", divisor, 4)
        self._fifo_depth = _check_int("fifo_depth", fifo_depth, 0)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    @property
    def divisor(self):
        """Clock cycles per bit.

        Returns
        -------
        int
        """
        return self._divisor

    @property
    def fifo_depth(self):
        """Capacity of the transmit FIFO in bytes (0: no FIFO).

        Returns
        -------
        int
        """
        return self._fifo_depth

    @property
    def latency(self):
        """Cycles from a transfer on ``i`` (idle line) to the start bit on ``tx``.

        Returns
        -------
        int
        """
        return 1 + min(self._fifo_depth, 2)

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor

        if self._fifo_depth:
            m.submodules.fifo = queue = fifo.SyncFIFOBuffered(width=8, depth=self._fifo_depth)
            wiring.connect(m, wiring.flipped(self.i), queue.w_stream)
            source = queue.r_stream
        else:
            source = self.i

        count = Signal(range(divisor))
        bits_left = Signal(range(10))          # bits still to send after the current one
        shreg = Signal(9)                      # data bits then stop bit, LSB goes next
        last_cycle = self.busy & (count == 0) & (bits_left == 0)

        m.d.comb += source.ready.eq(~self.busy | last_cycle)
        with m.If(source.valid & source.ready):
            m.d.sync += [
                self.tx.eq(0),                 # start bit
                shreg.eq(Cat(source.payload, 1)),
                bits_left.eq(9),
                count.eq(divisor - 1),
                self.busy.eq(1),
            ]
        with m.Elif(self.busy):
            with m.If(count == 0):
                with m.If(bits_left == 0):
                    m.d.sync += self.busy.eq(0)          # tx stays high: line idle
                with m.Else():
                    m.d.sync += [
                        self.tx.eq(shreg[0]),
                        shreg.eq(shreg[1:]),
                        bits_left.eq(bits_left - 1),
                        count.eq(divisor - 1),
                    ]
            with m.Else():
                m.d.sync += count.eq(count - 1)
        return m


class UARTBridge(wiring.Component):
    """UART pins on one side, a pair of byte streams on the other.

    Connect a byte-stream core with ``wiring.connect(m, bridge.o, core.i)`` and
    ``wiring.connect(m, core.o, bridge.i)``. Received bytes wait in a FIFO of
    ``rx_fifo_depth`` bytes while the core applies back-pressure; bytes that arrive when it is
    full are dropped and set the sticky ``overrun`` flag. Framing errors set the sticky
    ``framing_error`` flag. Both flags clear only on reset; they are meant for LEDs and status.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.
    rx_fifo_depth : int
        Receive FIFO depth in bytes, at least 1.
    tx_fifo_depth : int
        Transmit FIFO depth in bytes, 0 for none.

    Members
    -------
    rx : In(1, init=1)
        Serial input pin (host to FPGA).
    tx : Out(1, init=1)
        Serial output pin (FPGA to host).
    o : Out(stream.Signature(8))
        Bytes received from the host, towards the core's ``i``.
    i : In(stream.Signature(8))
        Bytes from the core's ``o``, sent to the host.
    framing_error : Out(1)
        Sticky: a frame with a low stop bit was received.
    overrun : Out(1)
        Sticky: a received byte was dropped because the receive FIFO was full.
    rx_active, tx_active : Out(1)
        High while a byte is being received / sent (for activity LEDs).
    """

    def __init__(self, *, divisor, rx_fifo_depth=32, tx_fifo_depth=0):
        self._divisor = _check_int("divisor", divisor, 4)
        self._rx_fifo_depth = _check_int("rx_fifo_depth", rx_fifo_depth, 1)
        self._tx_fifo_depth = _check_int("tx_fifo_depth", tx_fifo_depth, 0)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "o": Out(stream.Signature(8)),
            "i": In(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
            "rx_active": Out(1),
            "tx_active": Out(1),
        })

    @property
    def divisor(self):
        """Clock cycles per bit.

        Returns
        -------
        int
        """
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UARTRx(divisor=self._divisor, fifo_depth=self._rx_fifo_depth)
        m.submodules.tx = tx = UARTTx(divisor=self._divisor, fifo_depth=self._tx_fifo_depth)
        wiring.connect(m, wiring.flipped(self.o), rx.o)
        wiring.connect(m, wiring.flipped(self.i), tx.i)
        m.d.comb += [
            rx.rx.eq(self.rx),
            self.tx.eq(tx.tx),
            self.tx_active.eq(tx.busy),
            self.rx_active.eq(rx.busy),
        ]
        with m.If(rx.error):
            m.d.sync += self.framing_error.eq(1)
        with m.If(rx.overrun):
            m.d.sync += self.overrun.eq(1)
        return m
