"""cocotb self-test of ``tessera.tb.drivers`` against :class:`tessera.tb.selftest_design.EchoPlusOne`.

Run through ``tessera.sim.runner.run_cocotb`` (see ``tests/test_sim_plumbing.py``), never collected by
pytest. Environment knobs:

* ``TESSERA_SELFTEST_INCREMENT``: the increment the design was generated with (default 1).
* ``TESSERA_SELFTEST_FAIL=1``: makes :func:`deliberate_failure` fail, to check that failures are
  detected and reported; otherwise it passes.
* ``TESSERA_SELFTEST_BYTES``: size of the throughput test (default 4096).
"""

import itertools
import os
import random
import time

import cocotb

from tessera.tb.drivers import (
    ClockLoop, CocotbByteTransport, StreamSink, StreamSource, reset, start_clock,
)


INCREMENT = int(os.environ.get("TESSERA_SELFTEST_INCREMENT", "1"))
THROUGHPUT_BYTES = int(os.environ.get("TESSERA_SELFTEST_BYTES", "4096"))


def expected(data):
    """Bytes the echo design returns for ``data``."""
    return bytes((b + INCREMENT) & 0xFF for b in data)


async def setup(dut):
    """Start the clock and reset the design (each test shares the one simulation)."""
    start_clock(dut, 10)
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await reset(dut, 3)


@cocotb.test()
async def echo_full_rate(dut):
    """Without pauses the design moves one byte per cycle through the transport."""
    await setup(dut)
    t = CocotbByteTransport(dut)
    data = bytes(range(200))
    start = t.cycle
    await t.send(data)
    got = await t.recv(len(data))
    cycles = t.cycle - start
    assert got == expected(data), f"echo mismatch: sent {data[:8]!r}..., got {got[:8]!r}..."
    # 200 beats at 1/cycle, plus the register stage and the commit cycle of each end.
    assert cycles <= len(data) + 4, f"{len(data)} bytes took {cycles} cycles, expected ~1/cycle"


@cocotb.parametrize(
    source_pause=[None, (1, 0, 0), (1, 1, 0, 1, 0, 0, 0)],
    sink_pause=[None, (0, 1), (1, 1, 1, 0)],
)
async def echo_with_pauses(dut, source_pause, sink_pause):
    """Idle insertion and back-pressure never lose, duplicate or reorder bytes."""
    await setup(dut)
    t = CocotbByteTransport(
        dut,
        source_pause=None if source_pause is None else itertools.cycle(source_pause),
        sink_pause=None if sink_pause is None else itertools.cycle(sink_pause),
    )
    rng = random.Random(1234)
    data = bytes(rng.randrange(255) for _ in range(300))
    start = t.cycle
    await t.send(data[:100])
    await t.idle(7)
    await t.send(data[100:])
    got = await t.recv(150)
    got += await t.recv(150)
    assert got == expected(data)
    if sink_pause == (1, 1, 1, 0):
        # Ready is high one cycle in four, so the stream cannot go faster than that.
        assert t.cycle - start >= 4 * len(data) - 8, "back-pressure was not applied"


@cocotb.test()
async def output_buffered_while_sending(dut):
    """Output produced during a long send is collected, not stalled (no deadlock)."""
    await setup(dut)
    t = CocotbByteTransport(dut)
    await t.send(bytes(64))
    await t.idle(20)
    assert len(t.sink) == 64, f"expected 64 buffered bytes, have {len(t.sink)}"
    assert await t.recv(64) == expected(bytes(64))


@cocotb.test()
async def recv_timeout_names_byte_count(dut):
    """recv() gives up after the cycle timeout, naming how many bytes it got."""
    await setup(dut)
    t = CocotbByteTransport(dut, recv_timeout_cycles=50)
    await t.send(b"\x01\x02\x03")
    try:
        await t.recv(5)
    except TimeoutError as exc:
        assert "received 3 of 5 bytes" in str(exc), str(exc)
    else:
        raise AssertionError("recv(5) returned although only 3 bytes can ever arrive")


@cocotb.test()
async def send_timeout_when_core_stalls(dut):
    """send() times out when the core stops accepting (output never drained)."""
    await setup(dut)
    loop = ClockLoop(dut.clk)
    src = StreamSource(dut, "i", loop=loop)
    dut.o__ready.value = 0  # nobody drains o: the echo holds one byte, then stalls i
    try:
        await src.send(b"\x10\x11\x12", timeout_cycles=30)
    except TimeoutError as exc:
        assert "accepted 1 of 3 bytes" in str(exc), str(exc)
    else:
        raise AssertionError("send() completed although o__ready was held low")


@cocotb.test()
async def separate_source_and_sink(dut):
    """StreamSource/StreamSink on their own loops, plus busy/error flags."""
    await setup(dut)
    src = StreamSource(dut, "i", pause=itertools.cycle((0, 1)))
    sink = StreamSink(dut, "o", pause=itertools.cycle((1, 0, 0)))
    assert int(dut.error.value) == 0
    await src.send(b"\x00\x7f\xff")
    assert await sink.recv(3, timeout_cycles=100) == expected(b"\x00\x7f\xff")
    assert int(dut.error.value) == 1, "error flag must latch after byte 0xFF"
    await reset(dut, 2)
    assert int(dut.error.value) == 0, "reset must clear the error flag"


@cocotb.test()
async def transport_throughput(dut):
    """Round-trip THROUGHPUT_BYTES bytes and log the wall-clock rate."""
    await setup(dut)
    t = CocotbByteTransport(dut)
    data = bytes(random.Random(7).randrange(256) for _ in range(THROUGHPUT_BYTES))
    t0 = time.perf_counter()
    await t.send(data)
    got = await t.recv(len(data))
    dt = time.perf_counter() - t0
    assert got == expected(data)
    dut._log.info("THROUGHPUT %d bytes in %.3f s = %.0f bytes/s (%d cycles)",
                  len(data), dt, len(data) / dt, t.cycle)


@cocotb.test()
async def deliberate_failure(dut):
    """Fails only when TESSERA_SELFTEST_FAIL=1, so the runner's failure reporting is tested."""
    await setup(dut)
    t = CocotbByteTransport(dut)
    await t.send(b"\x05")
    got = await t.recv(1)
    if os.environ.get("TESSERA_SELFTEST_FAIL") == "1":
        assert got == b"\x05", "deliberate failure: the echo adds the increment"
    assert got == expected(b"\x05")
