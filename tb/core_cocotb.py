"""cocotb regression of a generated core: GEMMs and layers vs reference, cycles vs golden, bad
commands.

Loaded by the simulator, driven by a plan file (``TESSERA_PLAN``, written by
`tessera.generators.regress`); per-case measurements go to ``TESSERA_RESULTS`` (JSON lines).
"""

import itertools
import json
import os
import time

import cocotb
import numpy as np

from tessera.generators.config import config_from_dict
from tessera.hdl.ctrl.protocol import STATUS_BYTES, Err, Op, epilogue_caps
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver, TesseraError
from tessera.sim.layers import layer_from_dict
from tessera.sim.lowering import case_bias, requant_params, run_layer
from tessera.sim.workloads import case_operands, gemm_operands, reference_gemm
from tessera.tb.drivers import CocotbByteTransport, reset, start_clock


def _load_plan():
    path = os.environ.get("TESSERA_PLAN")
    if not path:
        raise RuntimeError("tessera.tb.core_cocotb needs TESSERA_PLAN (written by "
                           "tessera.generators.regress); without a plan there is nothing to test")
    with open(path) as f:
        plan = json.load(f)
    if not (plan.get("cases") or plan.get("layers")) or not plan.get("config"):
        raise RuntimeError(f"plan {path} has no GEMM or layer cases, or no config")
    return plan


PLAN = _load_plan()
CFG = config_from_dict(PLAN["config"])


def _record(entry):
    path = os.environ.get("TESSERA_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


async def _setup(dut, **transport_kw):
    start_clock(dut, 10)
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await reset(dut, 4)
    t = CocotbByteTransport(dut, **transport_kw)
    return t, TesseraDriver(t, CFG, poll_cycles=PLAN.get("poll_cycles", 64))


async def _golden_cycles(a, b, mode):
    gd = TesseraDriver(GoldenTransport(GoldenCore(CFG)), CFG)
    out, stats = await gd.gemm(a, b, mode=mode)
    return out, stats


@cocotb.test()
async def test_info(dut):
    """INFO reports the geometry, kinds and latencies the config asked for."""
    _, drv = await _setup(dut)
    # A driver without the config unpacks INFO on its own; compare field by field.
    info = await TesseraDriver(drv.t).connect()
    g = CFG.geometry
    assert (info.rows, info.cols) == (CFG.rows, CFG.cols)
    assert [(s.id, s.lanes, s.lane_bits, s.depth, s.result) for s in info.stores] == \
        [(s.id, s.lanes, s.lane_bits, s.depth, s.result) for s in g.stores]
    assert (info.engine, info.pe_kind) == (CFG.engine.code, CFG.pe.code)
    assert (info.pe_latency, info.pe_ii) == (CFG.pe.latency, CFG.pe.ii())
    assert info.accumulate == (CFG.pe.combiner() is not None)
    assert info == CFG.core_info(), "; ".join(info.differences(CFG.core_info()))
    assert [(s.name, s.id, s.word_bits) for s in info.stores] == \
        [(s.name, s.id, s.word_bits) for s in g.stores]
    assert [s.role == "result" for s in info.stores] == [s.result for s in g.stores]
    assert info.result_store.name == g.result_stores[0].name
    assert (info.engine_name, info.pe_name) == (CFG.engine.name, CFG.pe.name)
    assert info.modes == len(CFG.pe.modes) and info.has_modes == bool(CFG.pe.modes)
    # Extra cycles of an accumulating RUN: the stored word's read register and the combiner.
    assert info.combiner_latency == (1 + CFG.pe.combiner().latency if CFG.pe.combiner() else 0)
    assert info.layer_types == tuple(CFG.engine.layer_types)
    assert info.epilogue == epilogue_caps(CFG.engine.epilogue())
    assert info.formats == CFG.core_info().formats
    assert info.version == 4


if PLAN.get("cases"):
    @cocotb.parametrize(case=[c["name"] for c in PLAN["cases"]])
    async def test_gemm(dut, case):
        """One GEMM: bit-exact against the independent reference, cycle-exact against the golden
        model, and the golden model bit-exact against the reference too."""
        spec = next(c for c in PLAN["cases"] if c["name"] == case)
        t, drv = await _setup(dut)
        await drv.connect()
        mode = spec.get("mode")
        a, b = case_operands(CFG, spec)
        t0, c0 = time.time(), t.cycle
        got, stats = await drv.gemm(a, b, mode=mode)
        expect = reference_gemm(CFG, a, b, k_split=stats.k_split, mode=mode)
        wall, sim_cycles = time.time() - t0, t.cycle - c0
        golden_out, golden_stats = await _golden_cycles(a, b, mode)
        mism = int(np.count_nonzero(got != expect))
        ideal = CFG.engine.ideal_cycles(a, b, mode)
        _record({"case": case, "m": spec["m"], "n": spec["n"], "k": spec["k"],
                 "kind": spec["kind"], "mode": mode, "acc_bound": _acc_bound(spec["k"], mode),
                 "mismatches": mism, "cycles": stats.cycles, "golden_cycles": golden_stats.cycles,
                 "runs": stats.runs, "k_split": stats.k_split, "ideal_cycles": ideal,
                 "utilization": ideal / stats.cycles if stats.cycles else None,
                 "sim_cycles_total": sim_cycles, "wall_s": round(wall, 3)})
        assert mism == 0, f"{mism} of {got.size} results differ from the reference"
        assert np.array_equal(golden_out, expect), "golden core model disagrees with the reference"
        assert stats.run_cycles == golden_stats.run_cycles, \
            f"RTL cycles {stats.run_cycles} != golden {golden_stats.run_cycles}"


if PLAN.get("layers"):
    @cocotb.parametrize(case=[c["name"] for c in PLAN["layers"]])
    async def test_layer(dut, case):
        """One layer (dense or convolution) through the engine's layer mapper: bit-exact
        against the engine's independent layer reference (a direct convolution over the
        padded input), cycle-exact against the golden core."""
        spec = next(c for c in PLAN["layers"] if c["name"] == case)
        layer = layer_from_dict(spec["layer"])
        mode = spec.get("mode")
        t, drv = await _setup(dut)
        await drv.connect()
        x, w = CFG.engine.layer_operands(layer, spec["input"], kind=spec.get("kind", "random"),
                                         seed=spec["seed"], mode=mode)
        kw = {}
        if spec.get("epilogue"):
            kw = {"epilogue": spec["epilogue"], "bias": case_bias(CFG, layer, spec)}
        t0, c0 = time.time(), t.cycle
        got, stats = await run_layer(drv, layer, x, w, raw=True, mode=mode, **kw)
        wall, sim_cycles = time.time() - t0, t.cycle - c0
        expect = CFG.engine.layer_reference(layer, x, w, k_split=stats.k_split, mode=mode)
        if kw:       # the epilogue's independent reference on the accumulator reference
            params = requant_params(CFG.engine, kw["epilogue"], kw["bias"],
                                    np.shape(expect)[1], mode=mode)
            expect = CFG.engine.epilogue().reference_codes(expect, params, mode=mode)
        gd = TesseraDriver(GoldenTransport(GoldenCore(CFG)), CFG)
        await gd.connect()
        golden_out, golden_stats = await run_layer(gd, layer, x, w, raw=True, mode=mode, **kw)
        got = np.asarray(got, dtype=np.uint64)
        mism = int(np.count_nonzero(got != np.asarray(expect, dtype=np.uint64)))
        _record({"case": case, "layer": spec["layer"], "input": spec["input"], "mode": mode,
                 "epilogue": spec.get("epilogue"),
                 "acc_bound": _acc_bound(layer.gemm_k(), mode),
                 "mismatches": mism, **stats.as_dict(),
                 "golden_cycles": golden_stats.cycles,
                 "sim_cycles_total": sim_cycles, "wall_s": round(wall, 3)})
        assert mism == 0, f"{mism} of {got.size} results differ from the reference"
        assert np.array_equal(np.asarray(golden_out, np.uint64), np.asarray(expect, np.uint64)), \
            "golden core model disagrees with the reference"
        assert stats.run_cycles == golden_stats.run_cycles, \
            f"RTL cycles {stats.run_cycles} != golden {golden_stats.run_cycles}"


if PLAN.get("network"):
    @cocotb.test()
    async def test_network(dut):
        """A handful of digits images through a quantized network (the MLP, quantized for this
        core's PE kind), layer by layer on the RTL: outputs equal to the golden core's and to
        the independent reference, cycles of every RUN equal to the golden core's."""
        from tessera.sim.qnet import k_splits_of, load, reference_network, run_network
        spec = PLAN["network"]
        q = load(spec["qnet"])
        x = np.asarray(spec["x"], dtype=np.float32)
        t, drv = await _setup(dut)
        await drv.connect()
        t0, c0 = time.time(), t.cycle
        res = await run_network(drv, q, x)
        wall, sim_cycles = time.time() - t0, t.cycle - c0
        gd = TesseraDriver(GoldenTransport(GoldenCore(CFG)), CFG)
        await gd.connect()
        gold = await run_network(gd, q, x)
        ref = reference_network(q, CFG.pe, x, k_splits=k_splits_of(res))
        same_gold = [np.array_equal(a, b) for a, b in zip(res.outputs, gold.outputs)]
        same_ref = [np.array_equal(a, b) for a, b in zip(res.outputs, ref.outputs)]
        rtl_cycles = [s.run_cycles for r in res.records for s in r.stats]
        gold_cycles = [s.run_cycles for r in gold.records for s in r.stats]
        _record({"case": spec["name"], "network": spec["name"], "pe": CFG.pe.name,
                 "images": len(x),
                 "equal_golden": int(sum(same_gold)), "equal_reference": int(sum(same_ref)),
                 "classes": res.classes.tolist(), "labels": spec.get("y"),
                 "cycles": int(sum(sum(c) for c in rtl_cycles)),
                 "cycles_equal": rtl_cycles == gold_cycles,
                 "sim_cycles_total": sim_cycles, "wall_s": round(wall, 3)})
        assert all(same_gold), f"RTL outputs differ from the golden core on images " \
                               f"{[i for i, ok in enumerate(same_gold) if not ok]}"
        assert all(same_ref), "the golden core's outputs differ from the reference"
        assert rtl_cycles == gold_cycles, f"RTL RUN cycles {rtl_cycles} != golden {gold_cycles}"


@cocotb.test()
async def test_backpressure(dut):
    """Idle cycles on the command stream and back-pressure on responses change nothing."""
    t, drv = await _setup(dut, source_pause=itertools.cycle([0, 1, 0, 0, 1]),
                          sink_pause=itertools.cycle([1, 1, 0]))
    await drv.connect()
    m, n, k = CFG.rows + 1, CFG.cols + 2, 7
    a, b = gemm_operands(CFG, m, n, k, kind="random", seed=99)
    got, stats = await drv.gemm(a, b)
    assert np.array_equal(got, reference_gemm(CFG, a, b, k_split=stats.k_split))


async def _expect_error(drv, coro, code):
    try:
        await coro
    except TesseraError as e:
        assert e.code == code, f"expected error {code}, got {e.code}: {e}"
    else:
        raise AssertionError(f"expected error {code}, command succeeded")


@cocotb.test()
async def test_malformed_commands(dut):
    """Bad commands give their error code, never hang, and the core keeps answering."""
    t, drv = await _setup(dut)
    info = await drv.connect()
    g = CFG.geometry
    res = g.result_stores[0]
    da, dc = info.store(0).depth, res.depth
    wb_a = info.store(0).word_bytes
    twin = CFG.engine.twin()

    # Unknown opcode: answered at once with ERR_OPCODE, latched for STATUS, cleared by reading.
    await t.send(bytes([0x7E]))
    assert (await t.recv(1))[0] == Err.OPCODE
    st = await drv.status()
    assert st.last_error == Err.OPCODE
    assert (await drv.status()).last_error == 0

    # Bad scratchpad id: rejected after the header, no data expected.
    await t.send(bytes([Op.READ, 7, 0, 0, 1, 0]))
    assert (await t.recv(1))[0] == Err.SPAD
    # WRITE past the end: the data is consumed and dropped, then ERR_RANGE.
    await t.send(bytes([Op.WRITE, 0]) + (da - 1).to_bytes(2, "little") + (2).to_bytes(2, "little")
                 + bytes(2 * wb_a))
    assert (await t.recv(1))[0] == Err.RANGE
    # Zero-length READ.
    await t.send(bytes([Op.READ, 1, 0, 0, 0, 0]))
    assert (await t.recv(1))[0] == Err.ARG
    await _expect_error(drv, drv.read(res.name, dc - 1, 2), Err.RANGE)
    # RUNs the engine's argument check refuses (operands that do not fit, a zero dimension,
    # unknown flags), from the engine twin.
    for fields, code in twin.bad_runs():
        assert twin.check(_full(fields)) == code, f"twin: {fields} -> {twin.check(_full(fields))}"
        await _expect_error(drv, drv.start(**fields), code)
    # RUN naming an engine this core does not have.
    some_run = twin.bad_runs()[0][0]
    await _expect_error(drv, drv.start(engine=CFG.engine.code ^ 0x40, **some_run), Err.ENGINE)

    # While a RUN executes: STATUS answers busy; READ and WRITE to C are refused; A and B
    # stay writable (software double buffering); a second RUN is held and starts (and is
    # answered) in the cycle the first completes. Each check sends a RUN and the command in one
    # burst, and the RUN is chosen from the cycle model to last well past the moment the core
    # decides on the command, so no check races the hardware (the RUN's own cycle count is
    # checked against the model too).
    word_c = bytes(res.word_bytes)
    checks = [
        ("STATUS", bytes([Op.STATUS]), None),
        ("READ a", bytes([Op.READ, 0, 0, 0, 1, 0]), Err.BUSY),
        ("RUN", "held", Err.OK),
        ("WRITE c", bytes([Op.WRITE, res.id, 0, 0, 1, 0]) + word_c, Err.BUSY),
        ("WRITE a", bytes([Op.WRITE, 0, 0, 0, 1, 0]) + bytes(wb_a), Err.OK),
    ]
    for name, cmd, want in checks:
        header = 6 if cmd == "held" or cmd[0] == Op.WRITE else len(cmd)
        found = twin.busy_run(twin.check_cycles + 2 + header + 16)
        assert found is not None, f"no RUN fits the scratchpads long enough to check {name}"
        fields, cycles, preload = found
        if cmd == "held":
            cmd = _run_bytes(**fields)
        for store, (addr, words) in preload.items():
            await drv.write(store, addr, words)
        await t.send(_run_bytes(**fields) + cmd)
        assert (await t.recv(1))[0] == Err.OK, f"RUN {fields} (for the {name} check) refused"
        if want is None:          # STATUS: OK, flags (bit 0 busy), last error, cycles
            st = await t.recv(STATUS_BYTES)
            assert st[0] == Err.OK and st[1] & 1, f"STATUS during a RUN: {st.hex()}"
        else:
            got = (await t.recv(1))[0]
            assert got == want, f"{name} during a {cycles}-cycle RUN: {got}, expected {want}"
        st = await drv.wait()
        assert st.cycles == cycles, f"RUN {fields}: {st.cycles} cycles, the model says {cycles}"
        if name == "RUN":         # the held RUN ran straight after the first, as long
            want = cycles if any(s.banks > 1 for s in CFG.geometry.stores) else 0
            assert st.prev_cycles == want, f"held RUN: previous {st.prev_cycles} != {want}"
    # And a normal command works afterwards.
    assert (await drv.connect()).rows == CFG.rows


def _acc_bound(k, mode):
    """``[worst-case |sum|, accumulator limit]`` for K products (`PEKind.acc_bound`), or None:
    the regression says "may wrap" next to "bit-exact" when the first exceeds the second."""
    b = CFG.pe.acc_bound(k, mode=mode)
    return None if b is None else [int(b[0]), int(b[1])]


def _run_bytes(**fields):
    """RUN command bytes with the engine's argument ``fields`` (missing ones are 0)."""
    from tessera.hdl.ctrl.protocol import command
    head = command(Op.RUN).args.pack(engine=CFG.engine.code)
    return bytes([Op.RUN]) + head + CFG.engine.args().pack(**fields)


def _full(fields):
    """RUN fields with the missing ones 0, as the core sees them."""
    return {f.name: fields.get(f.name, 0) for f in CFG.engine.args().fields}
