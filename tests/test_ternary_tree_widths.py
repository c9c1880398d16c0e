# amaranth: UnusedElaboratable=no
"""The ternary units at the limits of their width parameters, against plain Python integers.

Issue 20 found two faults in the ``ternary_tree`` unit (`TernaryDot`) that the older tests
missed: they compared the unit with its twin, which modelled the same 2**16-word limit, and no
result was wider than the unit's internal difference:

* sign loss: with ``acc_bits`` wider than the internal difference (``scale_bits + sum_bits + 17``
  bits), every negative result came out zero-extended (``--inputs 4 --act-bits 1 --scale-bits 8
  --acc-bits 29``: -1 gave 0x0FFFFFFF);
* long sums: the class-sum accumulators had ``sum_bits + 16`` bits, so a dot product of more
  than 2**16 words lost their high bits (the default unit, 70,000 words of 255s with code +1,
  wp = 213: 703,257,856 expected, -638,919,424 returned).

Every check here compares the unit with a reference written in this file from the definition
(``wp * S_p - wn * S_n`` wrapped to ``acc_bits``, ``S`` the exact class sums), never with
`tessera.sim.ternary_tree`. The unit is the component `tessera unit` builds (the unit registry's
``build`` with its resolved options), run in the Amaranth simulator; the Verilator tier runs the
Verilog `tessera unit` writes (`generate_unit`), several configurations in one Verilator build.

The width sweep walks ``inputs``, ``act_bits``, ``scale_bits`` and ``acc_bits`` to the limits
the units document (their option help, checked here against the constructors) with the
smallest and largest negative and positive results of each configuration, results that wrap,
and long sums. The same sweep covers ``ternary_adder_tree`` (`TernaryTree`: exact unsigned class
sums at every width), the tree engine's `SerialScaler` (its products and difference, at results
narrower and wider than them) and both tree engines end to end with 64-bit results.
"""

import re
import subprocess

import numpy as np
import pytest
from amaranth import Elaboratable, Module, Value
from amaranth.lib.memory import Memory

from tessera.generators.units import generate_unit, get_unit, resolve_options
from tessera.hdl.arith.ternary_scale import SerialScaler
from tessera.hdl.arith.ternary_tree import TernaryDot, TernaryTree
from helpers import simulate


POS, NEG = 0b01, 0b11


# -- the plain-integer reference -------------------------------------------------------------------
def wrap_signed(v, bits):
    v %= 1 << bits
    return v - (1 << bits) if v >> (bits - 1) else v


def ref_sums(words):
    """Exact class sums of ``words`` = [(count, a, w), ...]: code 0b01 adds to S_p, 0b11 to S_n,
    0b00 and 0b10 to neither."""
    sp = sum(n * x for n, a, w in words for x, c in zip(a, w) if c == POS)
    sn = sum(n * x for n, a, w in words for x, c in zip(a, w) if c == NEG)
    return sp, sn


def ref_dot(words, wp, wn, acc_bits):
    sp, sn = ref_sums(words)
    return wrap_signed(wp * sp - wn * sn, acc_bits)


# -- the unit as `tessera unit` builds it ----------------------------------------------------------
def build(name, opts):
    unit = get_unit(name)
    return unit.build(**resolve_options(unit, opts))


def pack(values, bits):
    return sum(int(v) << (i * bits) for i, v in enumerate(values))


def dot_cycles(dots, inputs, act_bits):
    """Input lines [(count, valid, first, last, a, w, wp, wn), ...] for ``dots`` =
    [(words, wp, wn), ...], ``words`` = [(count, a, w), ...]: ``count`` copies of a word in a
    row (a long dot product is a few lines); ``wp``/``wn`` are presented with every word (they
    are sampled with the last one)."""
    lines = []
    for words, wp, wn in dots:
        for j, (count, a, w) in enumerate(words):
            av, wv = pack(a, act_bits), pack(w, 2)
            first, last = j == 0, j == len(words) - 1
            runs = [(1, first, last and count == 1)]
            if count > 2:
                runs.append((count - 2, False, False))
            if count > 1:
                runs.append((1, False, last))
            for n, f, lst in runs:
                lines.append((n, 1, int(f), int(lst), av, wv, wp, wn))
    return lines


def run_dot_amaranth(opts, dots):
    """Results of ``dots`` on the ``ternary_tree`` unit in the Amaranth simulator, in order;
    also checks that each comes ``latency`` cycles after its last word."""
    dut = build("ternary_tree", opts)
    lines = dot_cycles(dots, dut.inputs, dut.act_bits)
    total = sum(n for n, *_ in lines)
    last_cycles, t = [], 0
    for n, _, _, last, *_ in lines:
        t += n
        if last:
            last_cycles.append(t - 1)
    a_port, w_port = Value.cast(dut.a), Value.cast(dut.w)
    got = []

    async def drive(ctx):
        for n, valid, first, last, a, w, wp, wn in lines:
            for port, v in ((dut.valid, valid), (dut.first, first), (dut.last, last),
                            (a_port, a), (w_port, w), (dut.wp, wp), (dut.wn, wn)):
                ctx.set(port, v)
            await ctx.tick().repeat(n)
        ctx.set(dut.valid, 0)

    async def collect(ctx):
        for t in range(total + dut.latency + 2):
            if ctx.get(dut.result_valid):
                got.append((t, ctx.get(dut.result)))
            await ctx.tick()

    simulate(dut, drive, collect)
    assert [t for t, _ in got] == [t + dut.latency for t in last_cycles]
    return [r for _, r in got]


def check_dots(opts, dots):
    got = run_dot_amaranth(opts, dots)
    want = [ref_dot(words, wp, wn, opts["acc_bits"]) for words, wp, wn in dots]
    assert got == want, f"ternary_tree {opts}"


# -- issue 20's reproducers ------------------------------------------------------------------------
def test_issue20_sign_loss_reproducers():
    """One word, lane 0 = 1 with code -1, wp = 0, wn = 1: the result is -1, not -1 zero-extended
    from the internal width (0x0FFFFFFF at 29 bits; 0x1FFFFFFFFF at 38 bits)."""
    for opts in (dict(inputs=4, act_bits=1, scale_bits=8, acc_bits=29),
                 dict(inputs=16, act_bits=8, scale_bits=8, acc_bits=38)):
        n = opts["inputs"]
        word = (1, [1] + [0] * (n - 1), [NEG] + [0] * (n - 1))
        assert run_dot_amaranth(opts, [([word], 0, 1)]) == [-1], opts


def test_issue20_long_sum_70000_words():
    """The default unit, one dot product of 70,000 words of 255 with code +1, wp = 213:
    213 * S_p mod 2**32 (the accumulators used to keep only sum_bits + 16 = 28 bits). About 2 s
    in the simulator."""
    opts = dict(inputs=16, act_bits=8, scale_bits=8, acc_bits=32)
    words = [(70_000, [255] * 16, [POS] * 16)]
    want = ref_dot(words, 213, 0, 32)
    assert want == 703_257_856
    assert run_dot_amaranth(opts, [(words, 213, 0)]) == [want]


def test_long_sums_wrap_only_at_acc_bits():
    """Accumulators narrower than one word's sum (256 x 0xffff, ``acc_bits`` = 8), and sums
    that wrap the 8-bit accumulators many times: the results equal the exact sums' wrapped."""
    n = 256
    big = [0xffff] * n
    dots = [([(5, big, [POS] * n), (3, big, [NEG] * n), (1, big, [POS, NEG] * (n // 2))], 3, 255),
            ([(2, big, [NEG] * n)], 0, 1)]
    check_dots(dict(inputs=n, act_bits=16, scale_bits=8, acc_bits=8), dots)
    check_dots(dict(inputs=1, act_bits=4, scale_bits=2, acc_bits=8),
               [([(1000, [15], [NEG])], 0, 3), ([(999, [15], [POS]), (1, [15], [NEG])], 3, 1)])


# -- the width sweep -------------------------------------------------------------------------------
#: The documented limits of the ternary units' options (their ``--help`` text; checked below).
LIMITS = {"inputs": (1, 256), "act_bits": (1, 16), "scale_bits": (2, 32), "acc_bits": (8, 64)}


def test_sweep_covers_the_documented_limits():
    for name, cls in (("ternary_tree", TernaryDot), ("ternary_adder_tree", TernaryTree)):
        unit = get_unit(name)
        for o in unit.options:
            lo, hi = LIMITS[o.name]
            assert f"({lo}..{hi})" in o.help, (name, o.name, o.help)
            # The limits are the constructor's (the class the unit builds): both ends are
            # accepted, one step past either end is refused.
            for ok in (lo, hi):
                cls(**resolve_options(unit, {o.name: ok}))
            for bad in (lo - 1, hi + 1):
                with pytest.raises(ValueError, match=rf"^{o.name} must be an integer {lo}\.\.{hi}"):
                    cls(**resolve_options(unit, {o.name: bad}))
    grid = {k: {case[i] for case in SWEEP}
            for i, k in enumerate(("inputs", "act_bits", "scale_bits"))}
    assert all(LIMITS[k][0] in v and LIMITS[k][1] in v for k, v in grid.items())
    accs = {acc for case in SWEEP for acc in acc_values(*case)}
    assert {8, 64} <= accs


def sum_bits(inputs, act_bits):
    return (inputs * ((1 << act_bits) - 1)).bit_length()


def acc_values(inputs, act_bits, scale_bits):
    """Result widths to try: both limits, the default, and the widths around the old internal
    difference width (``scale_bits + sum_bits + 17``) and around one word's sum and product."""
    s = sum_bits(inputs, act_bits)
    edges = {8, 32, 64, s + scale_bits + 17, s + scale_bits + 18, s + scale_bits + 1,
             s + scale_bits, s, s + 1}
    return sorted(a for a in edges if 8 <= a <= 64)


#: (inputs, act_bits, scale_bits): every combination of both limits and a middle value for the
#: small trees; the 256-input tree (slow to simulate) at both corners and at the default widths.
SWEEP = ([(i, a, s) for i in (1, 3, 16) for a in (1, 8, 16) for s in (2, 8, 32)]
         + [(256, 1, 2), (256, 16, 32), (256, 8, 8)])


def extreme_dots(inputs, act_bits, scale_bits, rng):
    """The smallest and largest results of magnitude 1 and of full scale, a small difference of
    two full-scale products, results that wrap, and random words with the unused code."""
    amax, smax = (1 << act_bits) - 1, (1 << scale_bits) - 1
    one = [1] + [0] * (inputs - 1)
    full = [amax] * inputs
    dots = [
        ([(1, one, [NEG] + [0] * (inputs - 1))], 0, 1),                # -1
        ([(1, one, [POS] + [0] * (inputs - 1))], 1, 0),                # +1
        ([(1, full, [NEG] * inputs)], smax, smax),                     # most negative word
        ([(1, full, [POS] * inputs)], smax, smax),                     # most positive word
        ([(3, full, [NEG] * inputs)], 0, smax),                        # 3 words, all negative
        ([(2, full, [POS] * inputs), (1, full, [NEG] * inputs)], smax, smax),
        ([(1, full, [0b10] * inputs)], smax, smax),                    # unused code: 0
    ]
    if inputs > 1:
        # smax * amax - smax * amax ... then one step below: -(amax) from two big products.
        half = [POS, NEG] + [0] * (inputs - 2)
        dots.append(([(1, full, half)], smax - 1, smax))
        dots.append(([(1, full, half)], smax, smax - 1))
    for _ in range(6):
        words = [(int(rng.integers(1, 4)), [int(x) for x in rng.integers(0, amax + 1, inputs)],
                  [int(x) for x in rng.integers(0, 4, inputs)])
                 for _ in range(int(rng.integers(1, 4)))]
        dots.append((words, int(rng.integers(0, smax + 1)), int(rng.integers(0, smax + 1))))
    return dots


@pytest.mark.parametrize("inputs,act_bits,scale_bits", SWEEP)
def test_ternary_tree_width_sweep(inputs, act_bits, scale_bits):
    rng = np.random.default_rng(inputs * 10_000 + act_bits * 100 + scale_bits)
    dots = extreme_dots(inputs, act_bits, scale_bits, rng)
    for acc_bits in acc_values(inputs, act_bits, scale_bits):
        check_dots(dict(inputs=inputs, act_bits=act_bits, scale_bits=scale_bits,
                        acc_bits=acc_bits), dots)


def run_adder_tree_amaranth(opts, words):
    """(sp, sn) of each word on the ``ternary_adder_tree`` unit, one word per cycle."""
    dut = build("ternary_adder_tree", opts)
    a_port, w_port = Value.cast(dut.a), Value.cast(dut.w)
    got = []

    async def bench(ctx):
        for t in range(len(words) + dut.latency + 1):
            a, w = words[t] if t < len(words) else ([0] * dut.inputs, [0] * dut.inputs)
            ctx.set(dut.valid, int(t < len(words)))
            ctx.set(a_port, pack(a, dut.act_bits))
            ctx.set(w_port, pack(w, 2))
            if t >= dut.latency:
                assert ctx.get(dut.out_valid) == int(t - dut.latency < len(words))
                if ctx.get(dut.out_valid):
                    got.append((ctx.get(dut.sp), ctx.get(dut.sn)))
            await ctx.tick()

    simulate(dut, bench)
    return got


@pytest.mark.parametrize("inputs", [1, 2, 3, 16, 255, 256])
def test_ternary_adder_tree_width_sweep(inputs):
    """Exact class sums at every activation width up to 16 bits, with full-scale words."""
    rng = np.random.default_rng(inputs)
    for act_bits in (1, 2, 8, 15, 16):
        amax = (1 << act_bits) - 1
        full = [amax] * inputs
        words = [(full, [POS] * inputs), (full, [NEG] * inputs), (full, [0b10] * inputs),
                 (full, [POS, NEG] * (inputs // 2) + [POS] * (inputs % 2))]
        words += [([int(x) for x in rng.integers(0, amax + 1, inputs)],
                   [int(x) for x in rng.integers(0, 4, inputs)]) for _ in range(8)]
        got = run_adder_tree_amaranth(dict(inputs=inputs, act_bits=act_bits), words)
        assert got == [ref_sums([(1, a, w)]) for a, w in words], (inputs, act_bits)
        assert got[0] == (inputs * amax, 0) and got[1] == (0, inputs * amax)


# -- the tree engine's serial scaler ---------------------------------------------------------------
class _ScalerWithStore(Elaboratable):
    """`SerialScaler` with its scale store (a synchronous-read memory holding ``scales``)."""

    def __init__(self, sc, scales):
        self.sc, self.scales = sc, scales

    def elaborate(self, platform):
        m = Module()
        m.submodules.sc = sc = self.sc
        m.submodules.mem = mem = Memory(shape=2 * sc.scale_bits, depth=sc.s_depth,
                                        init=self.scales)
        rd = mem.read_port()
        m.d.comb += [rd.addr.eq(sc.s_port.r_addr), rd.en.eq(sc.s_port.r_en),
                     sc.s_port.r_data.eq(rd.data)]
        return m


def run_scaler(lanes, sum_bits, scale_bits, acc_bits, loads, scales):
    """Each load is (sp lanes, sn lanes); lane j uses scale word j (``s_step`` = 1). Returns the
    result words as lists of signed lanes."""
    sc = SerialScaler(lanes=lanes, sum_bits=sum_bits, scale_bits=scale_bits, acc_bits=acc_bits,
                      s_depth=len(scales), c_depth=4)
    words = [wp | (wn << scale_bits) for wp, wn in scales]
    top = _ScalerWithStore(sc, words)
    got = []
    total = len(loads) * (lanes + 1) + lanes + sc.LATENCY_EXTRA + 4

    async def drive(ctx):
        ctx.set(sc.s_step, 1)
        for sp, sn in loads:
            while not ctx.get(sc.ready):
                await ctx.tick()
            for j in range(lanes):
                ctx.set(sc.sp[j], sp[j])
                ctx.set(sc.sn[j], sn[j])
            ctx.set(sc.load, 1)
            await ctx.tick()
            ctx.set(sc.load, 0)

    async def collect(ctx):
        for _ in range(total):
            if ctx.get(sc.result.valid):
                data = ctx.get(sc.result.payload.data)
                got.append([wrap_signed(data >> (j * acc_bits), acc_bits) for j in range(lanes)])
            await ctx.tick()

    simulate(top, drive, collect)
    return got


@pytest.mark.parametrize("sum_bits,scale_bits", [(1, 1), (3, 2), (12, 8), (24, 32), (96, 32)])
def test_serial_scaler_width_sweep(sum_bits, scale_bits):
    """-1, the most negative and most positive lane, a small difference of two full-scale
    products, at results narrower and wider than the scaler's products (2..64 bits)."""
    smax, mx = (1 << scale_bits) - 1, (1 << sum_bits) - 1
    scales = [(0, 1), (smax, smax), (smax, smax), (max(smax - 1, 0), smax)]
    loads = [([0, 0, mx, mx], [1, mx, 0, mx]), ([mx, mx, mx, 0], [0, 0, mx, 0]),
             ([1, mx, 0, mx // 2], [0, mx // 2, mx, mx])]
    for acc_bits in sorted({2, 8, 32, 64, min(64, sum_bits + scale_bits + 1),
                            min(64, sum_bits + scale_bits + 2)}):
        got = run_scaler(4, sum_bits, scale_bits, acc_bits, loads, scales)
        want = [[wrap_signed(scales[j][0] * sp[j] - scales[j][1] * sn[j], acc_bits)
                 for j in range(4)] for sp, sn in loads]
        assert got == want, (sum_bits, scale_bits, acc_bits)
        assert got[0][0] == wrap_signed(-1, acc_bits)


@pytest.mark.parametrize("lanes", [1, 2])
def test_serial_scaler_few_lanes(lanes):
    """One and two lanes (a tree engine with ``outputs`` 1 or 2): one lane once had zero-width
    lane counters that Verilog cannot declare."""
    scales = [(3, 5), (7, 1)][:lanes]
    loads = [([9, 4][:lanes], [2, 11][:lanes]), ([0, 1][:lanes], [6, 0][:lanes])]
    got = run_scaler(lanes, 4, 3, 16, loads, scales)
    want = [[wrap_signed(scales[j][0] * sp[j] - scales[j][1] * sn[j], 16)
             for j in range(lanes)] for sp, sn in loads]
    assert got == want


def test_tree_engine_with_one_output_lints_and_computes():
    """``array.outputs = 1`` (documented 1..32): the core's Verilog passes the lint and one
    output channel's results equal the plain-integer dot products."""
    from tessera.generators.assemble import build_core
    from tessera.generators.config import config_from_dict
    from tessera.generators.generate import generate_core
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.pysim import run_with_driver
    cfg = config_from_dict({
        "core": {"name": "one_out"},
        "array": {"kind": "tree", "inputs": 4, "outputs": 1, "scales": 16},
        "pe": {"kind": "ternary", "act_bits": 4, "scale_bits": 4, "scale_frac": 0,
               "acc_bits": 24, "per_channel": True},
        "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}})
    import tempfile
    from pathlib import Path
    from tessera.sim.verilator import lint
    with tempfile.TemporaryDirectory() as tmp:
        generate_core(cfg, tmp)
        lint([Path(tmp) / "one_out.v"], "one_out").check()
    rng = np.random.default_rng(5)
    a, b = cfg.pe.operands(3, 2, 8, kind="random", rng=rng)

    async def body(t):
        drv = TesseraDriver(t, cfg)
        await drv.connect()
        return await drv.gemm(a, b)
    got = run_with_driver(build_core(cfg), body)[0]
    assert np.array_equal(np.asarray(got), np.asarray(cfg.pe.reference(a, b)))


def _core_gemm(encoding, a, b):
    """``a @ b`` on a whole ternary core (Amaranth simulator, host driver): 1-bit activations,
    2-bit scales and 64-bit results, so the scaler's difference (about 10 bits) is far
    narrower than a result lane."""
    from tessera.generators.assemble import build_core
    from tessera.generators.config import config_from_dict
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.pysim import run_with_driver
    array = {"kind": "tree", "encoding": encoding, "inputs": 4, "scales": 16, "z_bits": 3}
    if encoding == "dense":
        array["outputs"] = 2
    cfg = config_from_dict({
        "core": {"name": "wide"}, "array": array,
        "pe": {"kind": "ternary", "act_bits": 1, "scale_bits": 2, "scale_frac": 0,
               "acc_bits": 64, "per_channel": True},
        "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}})

    async def body(t):
        drv = TesseraDriver(t, cfg)
        await drv.connect()
        return await drv.gemm(a, b)
    return run_with_driver(build_core(cfg), body)[0]


@pytest.mark.parametrize("encoding", ["dense", "rle"])
def test_tree_engine_negative_results_at_64_bits(encoding):
    """The tree engines' `SerialScaler` path end to end: negative results sign-extended into
    64-bit lanes (read back as two's complement)."""
    from tessera.sim.engines.tree import TernaryB
    a = np.ones((3, 6), dtype=np.int64)
    a[1, 0] = 0
    codes = np.full((6, 3), NEG)
    codes[:, 1] = POS
    codes[0, 2] = POS
    wp, wn = [3, 3, 1], [1, 3, 3]
    out = _core_gemm(encoding, a, TernaryB(codes, np.array(wp), np.array(wn)))
    want = [[wrap_signed(sum(int(a[r, k]) * (wp[c] if codes[k, c] == POS else -wn[c])
                             for k in range(6)), 64) for c in range(3)] for r in range(3)]
    assert [[wrap_signed(int(x), 64) for x in row] for row in out] == want
    assert want[0] == [-6, 18, -14]


# -- the Verilog `tessera unit` writes, on Verilator -----------------------------------------------
def _top_ports(text, top):
    """(direction, name, width) of the ports of module ``top`` in ``text``."""
    body = text[text.index(f"module {top}("):]
    body = body[:body.index("endmodule")]
    ports = []
    for d, hi, name in re.findall(r"^\s*(input|output)\s+(?:signed\s+)?(?:\[(\d+):0\]\s*)?(\w+);",
                                  body, re.M):
        ports.append((d, name, int(hi) + 1 if hi else 1))
    return ports


def run_units_verilator(tmp_path, cases):
    """Run ``cases`` = [(unit, opts, in_names, lines, valid_name, out_names), ...] in one
    Verilator build: each case's Verilog from `generate_unit` (its modules renamed apart), its
    input lines [(count, *values of in_names)] and, in order, the values of ``out_names`` on
    each cycle with ``valid_name`` high (as unsigned ints)."""
    from tessera.sim.verilator import verilator_env, verilator_executable
    sources, decls, blocks = [], [], []
    for i, (unit, opts, in_names, lines, valid_name, out_names) in enumerate(cases):
        man = generate_unit(unit, opts, tmp_path / f"u{i}")
        top = man["top"]
        text = (tmp_path / f"u{i}" / man["verilog"]).read_text()
        mine = f"{top}_c{i}"
        src = tmp_path / f"{mine}.v"
        src.write_text(re.sub(rf"\b{top}\b", mine, text))
        sources.append(str(src))
        ports = _top_ports(text, top)
        width = {n: w for _, n, w in ports}
        assert set(in_names) | set(out_names) | {valid_name} <= set(width), (unit, ports)
        conns = []
        for d, n, w in ports:
            kind = "reg" if d == "input" else "wire"
            init = " = 0" if d == "input" else ""
            decls.append(f"  {kind} [{w - 1}:0] c{i}_{n}{init};")
            conns.append(f".{n}({'clk' if n == 'clk' else f'c{i}_{n}'})")
        decls.append(f"  {mine} dut{i}({', '.join(conns)});")
        (tmp_path / f"v{i}.txt").write_text("".join(
            " ".join([str(line[0]), *(f"{v:x}" for v in line[1:])]) + "\n" for line in lines))
        fmt = " ".join(["%d"] + ["%h"] * len(in_names))
        hexes = " ".join("%h" for _ in out_names)
        outs = ", ".join(f"c{i}_{n}" for n in out_names)
        blocks.append(f"""
  integer fd{i}, n{i}, k{i};
  initial begin
    fd{i} = $fopen("{tmp_path}/v{i}.txt", "r");
    while ($fscanf(fd{i}, "{fmt}\\n", n{i}, {", ".join(f"c{i}_{n}" for n in in_names)})
           == {len(in_names) + 1}) begin
      for (k{i} = 0; k{i} < n{i}; k{i} = k{i} + 1) @(negedge clk);
    end
    {" ".join(f"c{i}_{n} = 0;" for n in in_names)}
    repeat (40) @(negedge clk);
    done[{i}] = 1;
  end
  always @(posedge clk) if (c{i}_{valid_name})
    $display("D{i} {hexes}", {outs});
""")
    # A line's inputs are read at time 0 or just after a falling edge and hold for `count`
    # rising edges, so the edge that samples them never races with the change. -O0: these
    # builds run once, compiling fast matters more than simulating fast.
    tb = tmp_path / "tb.sv"
    tb.write_text(f"""module tb;
  reg clk = 0;
  always #1 clk = ~clk;
  reg [{len(cases) - 1}:0] done = 0;
{chr(10).join(decls)}
{"".join(blocks)}
  initial begin
    wait (&done);
    $finish;
  end
endmodule
""")
    exe = tmp_path / "obj_dir" / "tbexe"
    env = verilator_env()
    build_cmd = [str(verilator_executable()), "--binary", "--timing", "-Wno-lint",
                 "-Wno-style", "--top-module", "tb", "--Mdir", str(tmp_path / "obj_dir"),
                 "-o", "tbexe", "-j", "2",
                 "-MAKEFLAGS", "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0", str(tb), *sources]
    res = subprocess.run(build_cmd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    res = subprocess.run([str(exe)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    out = [[] for _ in cases]
    for line in res.stdout.splitlines():
        if line.startswith("D"):
            tag, *vals = line.split()
            out[int(tag[1:])].append(tuple(int(v, 16) for v in vals))
    return out


DOT_IN = ("valid", "first", "last", "a", "w", "wp", "wn")


def dot_case(opts, dots):
    return ("ternary_tree", opts, DOT_IN, dot_cycles(dots, opts["inputs"], opts["act_bits"]),
            "result_valid", ("result",))


def check_verilator(tmp_path, cases, wants):
    got = run_units_verilator(tmp_path, cases)
    for case, g, want in zip(cases, got, wants):
        if case[0] == "ternary_tree":
            g = [wrap_signed(r, case[1]["acc_bits"]) for (r,) in g]
        assert g == want, case[1]


def test_verilog_reproducers(tmp_path):
    """The Verilog of the issue's two sign-loss reproducers and of the unit with the narrowest
    internals and the widest result, with the sweep's extreme vectors, on Verilator (one build,
    about 10 s; the whole sweep on the Verilog is the slow test below)."""
    cases, wants = [], []
    for inputs, act_bits, scale_bits, acc_bits in ((4, 1, 8, 29), (16, 8, 8, 38), (1, 1, 2, 64)):
        opts = dict(inputs=inputs, act_bits=act_bits, scale_bits=scale_bits, acc_bits=acc_bits)
        dots = extreme_dots(inputs, act_bits, scale_bits, np.random.default_rng(acc_bits))
        cases.append(dot_case(opts, dots))
        wants.append([ref_dot(words, wp, wn, acc_bits) for words, wp, wn in dots])
    check_verilator(tmp_path, cases, wants)


@pytest.mark.slow
def test_verilog_width_sweep_and_long_sum(tmp_path):
    """Slow tier: the whole width sweep of both ternary units and the 70,000-word sum, on the
    Verilog, in one Verilator build (a few minutes)."""
    cases, wants = [], []
    for inputs, act_bits, scale_bits in SWEEP:
        rng = np.random.default_rng(inputs * 10_000 + act_bits * 100 + scale_bits)
        dots = extreme_dots(inputs, act_bits, scale_bits, rng)
        for acc_bits in acc_values(inputs, act_bits, scale_bits):
            cases.append(dot_case(dict(inputs=inputs, act_bits=act_bits, scale_bits=scale_bits,
                                       acc_bits=acc_bits), dots))
            wants.append([ref_dot(words, wp, wn, acc_bits) for words, wp, wn in dots])
    words = [(70_000, [255] * 16, [POS] * 16)]
    cases.append(dot_case(dict(inputs=16, act_bits=8, scale_bits=8, acc_bits=32),
                          [(words, 213, 0)]))
    wants.append([703_257_856])
    for inputs in (1, 3, 256):
        for act_bits in (1, 16):
            amax = (1 << act_bits) - 1
            full = [amax] * inputs
            words = [(full, [POS] * inputs), (full, [NEG] * inputs),
                     (full, [POS, NEG] * (inputs // 2) + [POS] * (inputs % 2))]
            lines = [(1, 1, pack(a, act_bits), pack(w, 2)) for a, w in words]
            cases.append(("ternary_adder_tree", dict(inputs=inputs, act_bits=act_bits),
                          ("valid", "a", "w"), lines, "out_valid", ("sp", "sn")))
            wants.append([ref_sums([(1, a, w)]) for a, w in words])
    check_verilator(tmp_path, cases, wants)
