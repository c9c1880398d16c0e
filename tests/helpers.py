"""Shared helpers for the Amaranth-simulator test tier."""

from amaranth.sim import Simulator


def simulate(dut, *benches, vcd=None):
    """Run ``dut`` with the given async testbenches on a 100 MHz clock."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for b in benches:
        sim.add_testbench(b)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


def accumulations(rng, n, lo, hi, *, max_len=9):
    """``n`` operand sequences of random lengths 1..max_len with values in [lo, hi]."""
    out = []
    for _ in range(n):
        length = int(rng.integers(1, max_len + 1))
        out.append((rng.integers(lo, hi + 1, length), rng.integers(lo, hi + 1, length)))
    return out


def drive_pe(dut, seqs, gaps=None):
    """Drive a PE with back-to-back accumulations; return the results in order.

    ``seqs`` is a list of (a_values, b_values); ``gaps`` optionally gives idle cycles after each.
    The collector checks that result_valid comes exactly ``latency`` cycles after each last pair.
    """
    results, last_cycles, valid_cycles = [], [], []
    total = sum(len(a) for a, _ in seqs) + sum(gaps or [0]) + dut.latency + 4

    async def drive(ctx):
        cycle = 0
        for idx, (a_seq, b_seq) in enumerate(seqs):
            n = len(a_seq)
            for j in range(n):
                ctx.set(dut.a, int(a_seq[j]))
                ctx.set(dut.b, int(b_seq[j]))
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, int(j == 0))
                ctx.set(dut.last, int(j == n - 1))
                if j == n - 1:
                    last_cycles.append(cycle)
                await ctx.tick()
                cycle += 1
            ctx.set(dut.valid, 0)
            for _ in range((gaps or [0] * len(seqs))[idx]):
                await ctx.tick()
                cycle += 1
        ctx.set(dut.valid, 0)

    async def collect(ctx):
        for cycle in range(total):
            if ctx.get(dut.result_valid):
                results.append(ctx.get(dut.result))
                valid_cycles.append(cycle)
            await ctx.tick()

    simulate(dut, drive, collect)
    assert valid_cycles == [c + dut.latency for c in last_cycles], \
        "result_valid does not follow each last pair by exactly `latency` cycles"
    return results


def run_lanes(dut, names, cols, gaps, *, dtype=None, zero_gaps=False):
    """Drive a one-lane unit with members ``valid``, ``names`` (inputs, sampled with valid) and
    ``out_valid``/``out``: element ``i`` of every column after ``gaps[i]`` idle cycles (inputs
    set to 0 during them with ``zero_gaps``); returns the ``out`` values in order."""
    import numpy as np
    n = len(cols[0])
    got = []

    async def drive(ctx):
        for i in range(n):
            for _ in range(gaps[i]):
                ctx.set(dut.valid, 0)
                if zero_gaps:
                    for name in names:
                        ctx.set(getattr(dut, name), 0)
                await ctx.tick()
            ctx.set(dut.valid, 1)
            for name, c in zip(names, cols):
                ctx.set(getattr(dut, name), int(c[i]))
            await ctx.tick()
        ctx.set(dut.valid, 0)

    async def collect(ctx):
        t = 0
        while len(got) < n:
            if ctx.get(dut.out_valid):
                got.append(ctx.get(dut.out))
            await ctx.tick()
            t += 1
            assert t < 4 * n + 100

    simulate(dut, drive, collect)
    return np.array(got, dtype=dtype or np.int64)


def derive(preset, **sections):
    """A preset's config with some sections' keys replaced (and no board list, so the
    board-fit estimate does not refuse a small test core)."""
    from tessera.generators.config import config_from_dict, load_config
    d = load_config(preset).to_dict()
    for sec, vals in sections.items():
        d[sec].update(vals)
    d["core"]["boards"] = []
    return config_from_dict(d)
