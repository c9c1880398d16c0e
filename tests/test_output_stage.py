# amaranth: UnusedElaboratable=no
"""The engine seam's own units: OutputStage (with each kind's combiner), RunControl, WrapAdd,
StoreArbiter, against a behavioural memory and the combiners' twins."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from tessera.generators.kinds.fpmac import FPAddCombiner
from tessera.generators.kinds.int import WrapAddCombiner
from tessera.hdl.arith.formats import FORMATS
from tessera.hdl.arith.wrapadd import WrapAdd
from tessera.hdl.ctrl.output_stage import OutputStage
from tessera.hdl.ctrl.runctl import RunControl
from tessera.hdl.mem.scratchpad import StoreArbiter


def _run_output_stage(comb, words, *, lanes, bits, depth=16, init=None):
    """Drive ``words`` ({cycle: (addr, word, accumulate)}) into an OutputStage whose port is
    a behavioural synchronous-read memory; return (writes as (cycle, addr, word), memory,
    idle per cycle)."""
    dut = OutputStage(depth=depth, lanes=lanes, lane_bits=bits, combiner=comb)
    mem = dict(init or {})
    writes, idle = [], []
    last = max(words) + 12

    async def bench(ctx):
        rdata = 0
        for t in range(last):
            if t in words:
                addr, word, acc = words[t]
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload.addr, addr)
                ctx.set(dut.i.payload.data, word)
                ctx.set(dut.i.payload.accumulate, acc)
            else:
                ctx.set(dut.i.valid, 0)
            ctx.set(dut.port.r_data, rdata)
            if ctx.get(dut.port.w_en):
                a, w = ctx.get(dut.port.w_addr), ctx.get(dut.port.w_data)
                writes.append((t, a, w))
                mem[a] = w
            idle.append(ctx.get(dut.idle))
            nxt = mem.get(ctx.get(dut.port.r_addr), 0) if ctx.get(dut.port.r_en) else rdata
            await ctx.tick()
            rdata = nxt

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return writes, mem, idle


def _pack(lanes, bits):
    return sum(int(v) << (i * bits) for i, v in enumerate(lanes))


def _unpack(word, n, bits):
    return [(word >> (i * bits)) & ((1 << bits) - 1) for i in range(n)]


def test_replace_writes_the_next_cycle_and_idle_follows():
    words = {2: (3, 0x1234, 0), 3: (4, 0xBEEF, 0), 7: (5, 0x0F0F, 0)}
    writes, mem, idle = _run_output_stage(None, words, lanes=2, bits=8)
    assert writes == [(3, 3, 0x1234), (4, 4, 0xBEEF), (8, 5, 0x0F0F)]
    # Idle: nothing arriving and nothing waiting to be written.
    assert [t for t, v in enumerate(idle) if not v] == [2, 3, 4, 7, 8]


def test_int_combiner_wraps_lane_by_lane():
    rng = np.random.default_rng(1)
    comb = WrapAddCombiner(8)
    old = {a: _pack(rng.integers(0, 256, 3), 8) for a in range(6)}
    new = {a: rng.integers(0, 256, 3) for a in range(6)}
    words = {4 + a: (a, _pack(new[a], 8), 1) for a in range(6)}   # back to back
    writes, mem, _ = _run_output_stage(comb, words, lanes=3, bits=8, init=old)
    # latency 0: read t, registered t+1, combined and written t+2
    assert [(t, a) for t, a, _ in writes] == [(6 + a, a) for a in range(6)]
    for a in range(6):
        want = comb.twin(np.array(_unpack(old[a], 3, 8), dtype=np.uint64), new[a])
        assert _unpack(mem[a], 3, 8) == [int(v) for v in want]


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_fp_combiner_latency_and_values(stages):
    fmt = FORMATS["fp16"]
    comb = FPAddCombiner(fmt, stages)
    rng = np.random.default_rng(stages)
    codes = rng.integers(0, 1 << 16, (2, 5, 2)).astype(np.uint64)   # old/new x addr x lane
    codes[0, 0] = [0x7C00, 0x8000]                                    # +Inf, -0
    codes[1, 0] = [0xFC00, 0x8000]                                    # -Inf, -0
    old = {a: _pack(codes[0, a], 16) for a in range(5)}
    words = {3 + a: (a, _pack(codes[1, a], 16), 1) for a in range(5)}
    writes, mem, idle = _run_output_stage(comb, words, lanes=2, bits=16, init=old)
    # Written L+1 cycles after the replace case: arrive t, read t, register t+1, combine from
    # t+2, write t+2+L.
    assert [(t, a) for t, a, _ in writes] == [(5 + stages + a, a) for a in range(5)]
    for a in range(5):
        want = comb.twin(codes[0, a], codes[1, a])
        assert _unpack(mem[a], 2, 16) == [int(v) for v in want]
    assert _unpack(mem[0], 2, 16) == [fmt.nan_code, 0x8000]           # Inf - Inf, -0 + -0
    assert not any(idle[3:5 + stages + 5])      # busy until the last combined word is written


def test_wrap_add_unit():
    dut = WrapAdd(width=6)
    got = []

    async def bench(ctx):
        for a, b in ((1, 2), (63, 1), (40, 40), (0, 0)):
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            await ctx.delay(1e-9)
            got.append(ctx.get(dut.result))
    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert got == [3, 0, 16, 0] and dut.latency == 0
    with pytest.raises(ValueError, match=r"width must be an integer 1\.\.128, not 0"):
        WrapAdd(width=0)


def test_run_control_busy_and_cycles():
    """busy rises after start; falls after a failed check, or once the engine is done and the
    output stage is idle; cycles counts the busy cycles."""
    dut = RunControl(arg_bits=8)
    trace = []

    async def bench(ctx):
        ctx.set(dut.out_idle, 1)
        ctx.set(dut.run.start, 1)
        ctx.set(dut.run.args, 0x5A)
        assert ctx.get(dut.engine.start) and ctx.get(dut.engine.args) == 0x5A
        await ctx.tick()
        ctx.set(dut.run.start, 0)
        for t in range(12):
            ctx.set(dut.engine.done, t == 4)
            ctx.set(dut.out_idle, t not in (4, 5, 6))
            trace.append((ctx.get(dut.run.busy), ctx.get(dut.run.cycles)))
            await ctx.tick()
        ctx.set(dut.engine.done, 0)
        # A RUN whose check fails: busy for the check cycle only.
        ctx.set(dut.run.start, 1)
        await ctx.tick()
        ctx.set(dut.run.start, 0)
        ctx.set(dut.engine.check_done, 1)
        ctx.set(dut.engine.check_err, 4)
        assert ctx.get(dut.run.check_done) and ctx.get(dut.run.check_err) == 4
        await ctx.tick()
        ctx.set(dut.engine.check_done, 0)
        trace.append((ctx.get(dut.run.busy), ctx.get(dut.run.cycles)))
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    busy = [b for b, _ in trace[:12]]
    # done at t=4, output stage busy until t=6: idle at t=7, busy falls in t=8.
    assert busy == [1] * 8 + [0] * 4
    assert trace[7][1] == 7 and trace[11][1] == 8
    assert trace[12] == (0, 1)


@pytest.mark.parametrize("core_writes", [False, True])
def test_store_arbiter_routes_by_busy(core_writes):
    dut = StoreArbiter(depth=16, width=8, core_writes=core_writes)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.host.r_addr, 3)
        ctx.set(dut.host.r_en, 1)
        ctx.set(dut.host.w_addr, 5)
        ctx.set(dut.host.w_en, 1)
        ctx.set(dut.host.w_data, 0x11)
        ctx.set(dut.core.r_addr, 9)
        ctx.set(dut.core.r_en, 1)
        if core_writes:
            ctx.set(dut.core.w_addr, 7)
            ctx.set(dut.core.w_en, 1)
            ctx.set(dut.core.w_data, 0x22)
        ctx.set(dut.mem.r_data, 0x99)
        for busy in (0, 1):
            ctx.set(dut.busy, busy)
            await ctx.delay(1e-9)
            seen[busy] = (ctx.get(dut.mem.r_addr), ctx.get(dut.mem.w_addr),
                          ctx.get(dut.mem.w_data), ctx.get(dut.host.r_data),
                          ctx.get(dut.core.r_data))
    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert seen[0] == (3, 5, 0x11, 0x99, 0x99)
    # Busy: the core reads; an operand store stays host-written, a result store core-written.
    assert seen[1] == (9, 7, 0x22, 0x99, 0x99) if core_writes else (9, 5, 0x11, 0x99, 0x99)
