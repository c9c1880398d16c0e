"""cocotb 2 drivers for tessera's byte streams, and the host transport used in simulation.

Cores expose Amaranth's flattened stream ports ``<prefix>__payload``, ``<prefix>__valid`` and
``<prefix>__ready`` (``i`` host -> core, ``o`` core -> host) on the ``clk``/``rst`` domain.

Timing discipline (STYLE pitfall 4). One :class:`ClockLoop` per clock runs every attached
endpoint with exactly two triggers per cycle, however many endpoints there are:

1. after ``RisingEdge(clk)`` (writable): each endpoint commits the transfer decided in the
   previous cycle, wakes its waiters, and drives ``valid``/``payload``/``ready`` for this cycle;
2. after ``ReadOnly()`` (settled, including combinational ``ready`` paths through the DUT): each
   endpoint samples the handshake. ``valid & ready`` here means the beat transfers at the next
   rising edge.

Waiters are only ever woken in phase 1, so code awaiting :meth:`StreamSource.send` or
:meth:`StreamSink.recv` may drive signals as soon as it resumes.

Pause generators follow cocotbext-axi: any iterable of truthy/falsy values, typically
``itertools.cycle([1, 0, 0])``; one value is consumed per cycle. For a source, a truthy value
delays presenting the *next* byte (``valid`` is never withdrawn before its transfer, per the
Amaranth stream rules); for a sink, a truthy value drives ``ready`` low for that cycle.
"""

import heapq
import itertools
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Event, ReadOnly, RisingEdge


__all__ = [
    "ClockLoop", "CocotbByteTransport", "StreamSink", "StreamSource", "reset", "start_clock",
]


def start_clock(dut, period_ns=10, *, clk_name="clk"):
    """Start a free-running clock on ``dut.<clk_name>``.

    Parameters
    ----------
    dut : cocotb handle
        The top-level handle.
    period_ns : int or float
        Clock period in nanoseconds.
    clk_name : str
        Name of the clock port.

    Returns
    -------
    cocotb.clock.Clock
        The started clock (call ``.stop()`` to stop it).
    """
    clock = Clock(_port(dut, clk_name), period_ns, unit="ns")
    clock.start(start_high=False)
    return clock


async def reset(dut, cycles=4, *, clk_name="clk", rst_name="rst"):
    """Hold the active-high synchronous reset for ``cycles`` rising edges, then release it.

    Returns just after a rising edge with ``rst`` low, in the writable phase. Every test in a
    cocotb module shares one simulation, so each test should call this itself.

    Parameters
    ----------
    dut : cocotb handle
    cycles : int
        Number of rising edges during which ``rst`` is high (at least 1).
    clk_name, rst_name : str
        Port names.
    """
    if not isinstance(cycles, int) or cycles < 1:
        raise ValueError(f"reset cycles must be an int >= 1, not {cycles!r}")
    clk = _port(dut, clk_name)
    rst = _port(dut, rst_name)
    rst.value = 1
    edge = RisingEdge(clk)
    for _ in range(cycles):
        await edge
    rst.value = 0


def _port(dut, name):
    try:
        return getattr(dut, name)
    except AttributeError:
        raise AttributeError(
            f"design {dut._name!r} has no port {name!r}; tessera cores use clk, rst and "
            f"<prefix>__payload/valid/ready stream ports") from None


class _Timer:
    __slots__ = ("cycle", "callback", "cancelled")

    def __init__(self, cycle, callback):
        self.cycle = cycle
        self.callback = callback
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class ClockLoop:
    """Runs stream endpoints on one clock with two cocotb triggers per cycle.

    Create one per test (cocotb cancels the loop's task when the test that started it ends) and
    pass it to every :class:`StreamSource`/:class:`StreamSink` on that clock.

    Parameters
    ----------
    clk : cocotb handle
        The clock signal (already toggling, see :func:`start_clock`).

    Attributes
    ----------
    cycle : int
        Number of rising edges seen since the loop started.
    """

    def __init__(self, clk):
        self._clk = clk
        self._endpoints = []
        self._timers = []
        self._seq = itertools.count()
        self.cycle = 0
        self._task = cocotb.start_soon(self._run())

    def attach(self, endpoint):
        """Add an endpoint with ``_drive()`` and ``_sample()`` methods (used by the drivers)."""
        self._endpoints.append(endpoint)

    def call_at(self, cycle, callback):
        """Call ``callback()`` in the writable phase of cycle ``cycle``; returns a cancellable."""
        timer = _Timer(cycle, callback)
        heapq.heappush(self._timers, (cycle, next(self._seq), timer))
        return timer

    async def wait_cycles(self, cycles):
        """Return after ``cycles`` rising edges, in the writable phase (``cycles`` >= 0)."""
        if not isinstance(cycles, int) or cycles < 0:
            raise ValueError(f"cycles must be an int >= 0, not {cycles!r}")
        if cycles == 0:
            return
        event = Event()
        self.call_at(self.cycle + cycles, event.set)
        await event.wait()

    async def _run(self):
        edge = RisingEdge(self._clk)
        settled = ReadOnly()
        endpoints = self._endpoints
        timers = self._timers
        while True:
            await edge
            self.cycle += 1
            while timers and timers[0][0] <= self.cycle:
                timer = heapq.heappop(timers)[2]
                if not timer.cancelled:
                    timer.callback()
            for ep in endpoints:
                ep._drive()
            await settled
            for ep in endpoints:
                ep._sample()


def _int_reader(handle):
    """Return a zero-argument function reading ``handle`` as an unsigned int.

    Reads happen every cycle on every stream, so this skips building a ``Logic``/``LogicArray``
    per read and calls the GPI object's ``get_signal_val_long`` directly, which raised the
    transport's round-trip rate from ~46 kB/s to ~70 kB/s. That is cocotb-internal API (cocotb is
    pinned to 2.1.0); if it is absent, the public ``handle.value`` path is used instead.
    """
    gpi = getattr(handle, "_handle", None)
    fast = getattr(gpi, "get_signal_val_long", None)
    if fast is not None:
        return fast
    return lambda: int(handle.value)


class _StreamPorts:
    def __init__(self, dut, prefix):
        self.name = prefix
        self.payload = _port(dut, f"{prefix}__payload")
        self.valid = _port(dut, f"{prefix}__valid")
        self.ready = _port(dut, f"{prefix}__ready")
        self.width = len(self.payload)
        self.read_payload = _int_reader(self.payload)
        self.read_valid = _int_reader(self.valid)
        self.read_ready = _int_reader(self.ready)


class StreamSource:
    """Drives bytes (or ``width``-bit words) into a ``<prefix>__payload/valid/ready`` stream.

    Parameters
    ----------
    dut : cocotb handle
    prefix : str
        Stream name, e.g. ``"i"``.
    loop : ClockLoop, optional
        Shared loop; a new one on ``dut.clk`` is created if omitted.
    pause : Iterable, optional
        Pause generator (see module docstring) inserting idle cycles between beats.
    """

    def __init__(self, dut, prefix, *, loop=None, pause=None):
        self._ports = _StreamPorts(dut, prefix)
        self._max = (1 << self._ports.width) - 1
        self._loop = ClockLoop(_port(dut, "clk")) if loop is None else loop
        self._pause = None
        self.set_pause_generator(pause)
        self._queue = deque()
        self._current = None      # word presented on payload, not yet transferred
        self._transferred = False  # sampled valid & ready: completes at the next edge
        self._valid = 0
        self._ports.valid.value = 0
        self._done = Event()
        self._progress_cycle = 0
        self.count = 0
        self._loop.attach(self)

    @property
    def loop(self):
        """The :class:`ClockLoop` this source runs on."""
        return self._loop

    @property
    def idle(self):
        """True when nothing is queued or presented."""
        return self._current is None and not self._queue

    def set_pause_generator(self, pause):
        """Set (or clear with ``None``) the pause generator for idle insertion."""
        self._pause = None if pause is None else iter(pause)

    def send_nowait(self, data):
        """Queue ``data`` (``bytes`` or iterable of ints) without waiting."""
        words = list(data)
        for w in words:
            if not isinstance(w, int) or not 0 <= w <= self._max:
                raise ValueError(f"stream {self._ports.name!r} carries {self._ports.width}-bit "
                                 f"words; cannot send {w!r}")
        self._queue.extend(words)

    async def send(self, data, *, timeout_cycles=None):
        """Queue ``data`` and return once every queued word has been accepted.

        Parameters
        ----------
        data : bytes or Iterable[int]
        timeout_cycles : int, optional
            Raise :class:`TimeoutError` if no word is accepted for this many cycles.
        """
        self.send_nowait(data)
        total = len(self._queue) + (self._current is not None)
        start = self.count
        self._progress_cycle = self._loop.cycle
        while not self.idle:
            self._done.clear()
            timer = None
            if timeout_cycles is not None:
                timer = self._loop.call_at(self._progress_cycle + timeout_cycles,
                                           self._done.set)
            await self._done.wait()
            if timer is not None:
                timer.cancel()
                stalled = self._loop.cycle - self._progress_cycle
                if not self.idle and stalled >= timeout_cycles:
                    raise TimeoutError(
                        f"stream {self._ports.name!r}: DUT accepted {self.count - start} of "
                        f"{total} bytes; no transfer for {stalled} cycles "
                        f"(timeout_cycles={timeout_cycles})")

    def _drive(self):
        if self._transferred:
            self._transferred = False
            self._current = None
            self.count += 1
            self._progress_cycle = self._loop.cycle
            if not self._queue:
                self._done.set()
        if self._current is None:
            valid = 0
            if self._queue and (self._pause is None or not next(self._pause)):
                self._current = self._queue.popleft()
                self._ports.payload.value = self._current
                valid = 1
            if valid != self._valid:
                self._valid = valid
                self._ports.valid.value = valid

    def _sample(self):
        if self._current is not None and self._ports.read_ready():
            self._transferred = True


class StreamSink:
    """Accepts words from a ``<prefix>__payload/valid/ready`` stream into a buffer.

    The sink runs for the whole test, so a DUT never stalls waiting for the host to call
    :meth:`recv` (only the pause generator applies back-pressure).

    Parameters
    ----------
    dut : cocotb handle
    prefix : str
        Stream name, e.g. ``"o"``.
    loop : ClockLoop, optional
        Shared loop; a new one on ``dut.clk`` is created if omitted.
    pause : Iterable, optional
        Pause generator; a truthy value deasserts ``ready`` for that cycle.
    """

    def __init__(self, dut, prefix, *, loop=None, pause=None):
        self._ports = _StreamPorts(dut, prefix)
        self._loop = ClockLoop(_port(dut, "clk")) if loop is None else loop
        self._pause = None
        self.set_pause_generator(pause)
        self._buffer = bytearray() if self._ports.width <= 8 else []
        self._ready = None
        self._pending = None
        self._want = None
        self._arrived = Event()
        self._last_rx_cycle = 0
        self.count = 0
        self._loop.attach(self)

    @property
    def loop(self):
        """The :class:`ClockLoop` this sink runs on."""
        return self._loop

    def __len__(self):
        return len(self._buffer)

    def set_pause_generator(self, pause):
        """Set (or clear with ``None``) the pause generator for back-pressure."""
        self._pause = None if pause is None else iter(pause)

    def recv_nowait(self, n=None):
        """Remove and return up to ``n`` buffered words (all if ``n`` is None)."""
        n = len(self._buffer) if n is None else min(n, len(self._buffer))
        out = self._buffer[:n]
        del self._buffer[:n]
        return bytes(out) if isinstance(out, bytearray) else out

    async def recv(self, n, *, timeout_cycles=None):
        """Wait for ``n`` words and return them (``bytes`` for streams up to 8 bits wide).

        Parameters
        ----------
        n : int
        timeout_cycles : int, optional
            Raise :class:`TimeoutError` if no word arrives for this many cycles while fewer
            than ``n`` are buffered. The buffered words stay in the buffer.
        """
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"recv count must be an int >= 0, not {n!r}")
        self._last_rx_cycle = max(self._last_rx_cycle, self._loop.cycle)
        while len(self._buffer) < n:
            self._want = n
            self._arrived.clear()
            timer = None
            if timeout_cycles is not None:
                timer = self._loop.call_at(self._last_rx_cycle + timeout_cycles,
                                           self._arrived.set)
            await self._arrived.wait()
            if timer is not None:
                timer.cancel()
                stalled = self._loop.cycle - self._last_rx_cycle
                if len(self._buffer) < n and stalled >= timeout_cycles:
                    self._want = None
                    raise TimeoutError(
                        f"stream {self._ports.name!r}: received {len(self._buffer)} of {n} "
                        f"bytes; nothing arrived for {stalled} cycles "
                        f"(timeout_cycles={timeout_cycles})")
        self._want = None
        return self.recv_nowait(n)

    def _drive(self):
        if self._pending is not None:
            self._buffer.append(self._pending)
            self._pending = None
            self.count += 1
            self._last_rx_cycle = self._loop.cycle
            if self._want is not None and len(self._buffer) >= self._want:
                self._arrived.set()
        ready = 0 if self._pause is not None and next(self._pause) else 1
        if ready != self._ready:
            self._ready = ready
            self._ports.ready.value = ready

    def _sample(self):
        if self._ready and self._ports.read_valid():
            self._pending = self._ports.read_payload()


class CocotbByteTransport:
    """The host driver's transport (``send``/``recv``/``idle``) over a core's byte streams.

    Parameters
    ----------
    dut : cocotb handle
        A core with ``clk``, ``i__*`` (host -> core) and ``o__*`` (core -> host) ports. The
        clock must be running (see :func:`start_clock`).
    source_pause, sink_pause : Iterable, optional
        Pause generators for idle insertion on ``i`` and back-pressure on ``o``.
    recv_timeout_cycles : int
        :meth:`recv` raises :class:`TimeoutError` after this many cycles without a byte.
    send_timeout_cycles : int
        :meth:`send` raises :class:`TimeoutError` after this many cycles without acceptance.
    in_prefix, out_prefix : str
        Stream names.
    """

    def __init__(self, dut, *, source_pause=None, sink_pause=None, recv_timeout_cycles=100_000,
                 send_timeout_cycles=100_000, in_prefix="i", out_prefix="o"):
        for name, value in (("recv_timeout_cycles", recv_timeout_cycles),
                            ("send_timeout_cycles", send_timeout_cycles)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, not {value!r}")
        self.loop = ClockLoop(_port(dut, "clk"))
        self.source = StreamSource(dut, in_prefix, loop=self.loop, pause=source_pause)
        self.sink = StreamSink(dut, out_prefix, loop=self.loop, pause=sink_pause)
        self.recv_timeout_cycles = recv_timeout_cycles
        self.send_timeout_cycles = send_timeout_cycles

    async def send(self, data: bytes) -> None:
        """Send ``data`` to the core; returns when the core has accepted every byte."""
        await self.source.send(bytes(data), timeout_cycles=self.send_timeout_cycles)

    async def recv(self, n: int) -> bytes:
        """Return the next ``n`` bytes from the core (bytes arriving earlier are buffered)."""
        return await self.sink.recv(n, timeout_cycles=self.recv_timeout_cycles)

    async def idle(self, cycles: int) -> None:
        """Let ``cycles`` clock cycles pass (output keeps being collected)."""
        await self.loop.wait_cycles(cycles)

    @property
    def cycle(self):
        """Clock cycles since the transport was created."""
        return self.loop.cycle
