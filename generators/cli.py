"""The ``tessera`` command line: presets, generate, unit, regress, report, build, program, run.

Every command checks what it can decide from the config and the arguments (the config itself,
output paths, whether a layer maps onto the scratchpads, whether the core fits the named board)
before it generates Verilog, compiles a simulation or places and routes. One handler in `main`
turns every expected failure into one line ``tessera: error: ...`` (exit status 2); an
unexpected exception prints one line and how to see its traceback (``--debug``, exit status 3).
"""

import argparse
import asyncio
import json
import os
import pathlib
import sys
import time


__all__ = ["main", "CliError", "EXIT_OK", "EXIT_FAILED", "EXIT_ERROR", "EXIT_INTERNAL",
           "EXIT_INTERRUPTED"]

#: Exit statuses (docs/cli.md).
EXIT_OK = 0             # success
EXIT_FAILED = 1         # the command ran, and what it checked failed (regress, run)
EXIT_ERROR = 2          # bad input or a failing tool / environment: one line on stderr
EXIT_INTERNAL = 3       # a bug in tessera: one line, the traceback with --debug
EXIT_INTERRUPTED = 130  # Ctrl-C

#: Longest error line printed (the rest is cut, with a mark).
MESSAGE_LIMIT = 400

#: Largest GEMM dimension `tessera run` accepts.
MAX_GEMM_DIM = 65536


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _cfg(spec):
    from tessera.generators.config import load_config
    return load_config(spec)


def _q(value, limit=100):
    from tessera.generators.emit import quote
    return quote(value, limit)


def _default_out(cfg, what):
    return pathlib.Path("build") / what / cfg.core.name


def _check_out(path, records=("manifest.json",), what="output folder"):
    from tessera.generators.emit import check_output_dir
    return check_output_dir(path, records=records, what=what)


def _check_mappable(cfg, shapes, what):
    """Every (M, N, K) in ``shapes`` must map onto the scratchpads (decided from the config)."""
    mapper = cfg.engine.mapper()
    if not hasattr(mapper, "plan"):
        return
    for m, n, k, mode in shapes:
        kw = -(-k // cfg.pe.layout(mode).k_per_word)
        try:
            mapper.plan(m, n, kw)
        except ValueError as e:
            raise CliError(f"{what}: a {m}x{n}x{k} GEMM cannot run on {cfg.core.name}: {e}") \
                from None


def _need_verilator():
    from tessera.sim.verilator import verilator_executable
    verilator_executable()


# -- presets ------------------------------------------------------------------------------------
def cmd_presets(args):
    from tessera.generators.config import DEFAULT_PRESET, preset_names, preset_summary
    names = preset_names()
    width = max(len(n) for n in names)
    for n in names:
        mark = " (default)" if n == DEFAULT_PRESET else ""
        print(f"{n:<{width}}  {preset_summary(n)}{mark}")
    return EXIT_OK


# -- generate -----------------------------------------------------------------------------------
def cmd_generate(args):
    from tessera.generators.generate import generate_core
    cfg = _cfg(args.config)
    out = pathlib.Path(args.output) if args.output else _default_out(cfg, "generate")
    _check_out(out)
    if args.lint:
        _need_verilator()
    t0 = time.monotonic()
    manifest = generate_core(cfg, out)
    dt = time.monotonic() - t0
    print(f"{manifest['top']}: {cfg.rows}x{cfg.cols} {cfg.array.kind} array of {cfg.pe.name} PEs "
          f"({cfg.source}) -> {out}/ ({dt:.1f}s)")
    for f in (manifest["verilog"], "manifest.json", f"{manifest['top']}_defs.h"):
        print(f"  {out / f}")
    print(f"  verilog sha256 {manifest['verilog_sha256'][:16]}...")
    if args.lint:
        _lint(out / manifest["verilog"], manifest["top"])
    return EXIT_OK


def _lint(path, top):
    from tessera.sim.verilator import lint
    res = lint([path], top)
    if not res.ok:
        first = str(res.messages[0]) if res.messages else \
            f"verilator exited with status {res.returncode}"
        more = f" (and {len(res.messages) - 1} more)" if len(res.messages) > 1 else ""
        raise CliError(f"lint: {_q(str(path))} is not lint-clean: {first}{more}")
    print(f"  lint: clean under tb/waivers.vlt ({path.name})")


# -- unit ---------------------------------------------------------------------------------------
def cmd_unit(args, extra):
    from tessera.generators.units import UNITS, generate_unit, get_unit
    if args.list or not args.name:
        if extra:
            raise CliError(f"unit: unexpected arguments {_q(' '.join(extra), 60)} without a "
                           f"unit NAME")
        for name in sorted(UNITS):
            u = UNITS[name]
            print(f"{name}: {u.summary}")
            for o in u.options:
                choices = f"; one of {', '.join(map(str, o.choices))}" if o.choices else ""
                tname = {int: "INT", str: "NAME"}.get(o.type, "BOOL")
                print(f"    --{o.name.replace('_', '-')} {tname}  {o.help} "
                      f"(default {o.default}{choices})")
        return EXIT_OK
    unit = get_unit(args.name)
    opts = _parse_unit_options(unit, extra)
    out = pathlib.Path(args.output) if args.output else pathlib.Path("build/unit") / args.name
    _check_out(out)
    if args.lint:
        _need_verilator()
    manifest = generate_unit(args.name, opts, out)
    lat = manifest["latency"]
    print(f"{manifest['top']} -> {out}/ (latency {lat if lat is not None else 'n/a'})")
    if args.lint:
        _lint(out / manifest["verilog"], manifest["top"])
    return EXIT_OK


def _parse_unit_options(unit, extra):
    known = {"--" + o.name.replace("_", "-"): o for o in unit.options}
    opts = {}
    it = iter(extra)
    for tok in it:
        key, eq, val = tok.partition("=")
        if key not in known:
            raise CliError(f"unit {unit.name}: unknown option {_q(key, 40)}; allowed: "
                           + ", ".join(sorted(known)))
        if not eq:
            try:
                val = next(it)
            except StopIteration:
                raise CliError(f"unit {unit.name}: option {key} needs a value") from None
        o = known[key]
        if o.name in opts:
            raise CliError(f"unit {unit.name}: option {key} is given twice")
        try:
            opts[o.name] = o.type(val)
        except ValueError:
            what = {int: "an integer", str: "a string"}.get(o.type, "true/false")
            raise CliError(f"unit {unit.name}: option {key} = {_q(val, 40)} is not {what}") \
                from None
    return opts


# -- regress ------------------------------------------------------------------------------------
def cmd_regress(args):
    from tessera.generators.regress import check_regression, default_cases, run_regression
    cfg = _cfg(args.config)
    junit = pathlib.Path(args.junit) if args.junit else None
    cases = default_cases(cfg, quick=args.quick)
    check_regression(cfg, cases=cases, junit=junit)
    _check_mappable(cfg, [(c["m"], c["n"], c["k"], c.get("mode")) for c in cases], "regress")
    _need_verilator()
    say = (lambda s: print(s, file=sys.stderr)) if args.json else print
    summary = run_regression(cfg, waves=args.waves, quick=args.quick, junit=junit,
                             progress=say)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_regress(summary)
    return EXIT_OK if summary["ok"] else EXIT_FAILED


def _wraps(g):
    """" (accumulator may wrap: ...)" when the case's K can overflow the accumulator: the
    results then match the reference's wrap-around, not the exact sums."""
    b = g.get("acc_bound")
    if not b or b[0] <= b[1]:
        return ""
    return f" (accumulator may wrap: worst case {b[0]} > {b[1]})"


def _print_regress(s):
    print(f"\n{'case':<14} {'M':>4} {'N':>4} {'K':>5} {'runs':>4} {'cycles':>8} "
          f"{'ideal':>8} {'util':>7}  result")
    for g in s["gemms"]:
        ok = "bit-exact" if g["mismatches"] == 0 else f"{g['mismatches']} MISMATCHES"
        ok += _wraps(g)
        cyc = "ok" if g["cycles"] == g["golden_cycles"] else f"golden {g['golden_cycles']}"
        print(f"{g['case']:<14} {g['m']:>4} {g['n']:>4} {g['k']:>5} {g['runs']:>4} "
              f"{g['cycles']:>8} {g['ideal_cycles']:>8.0f} {100 * g['utilization']:>6.2f}%  "
              f"{ok}, cycles {cyc}")
    if s.get("layers"):
        from tessera.sim.layers import describe
        print(f"\n{'layer case':<24} {'layer':<28} {'input':<12} {'runs':>4} {'cycles':>8} "
              f"{'ideal':>8} {'util':>7}  result")
        for g in s["layers"]:
            ok = "bit-exact" if g["mismatches"] == 0 else f"{g['mismatches']} MISMATCHES"
            ok += _wraps(g)
            cyc = "ok" if g["cycles"] == g["golden_cycles"] else f"golden {g['golden_cycles']}"
            shape = "x".join(str(d) for d in g["input"])
            util = f"{100 * g['utilization']:>6.2f}%" if g["utilization"] else "     -"
            print(f"{g['case']:<24} {describe(g['layer']):<28} {shape:<12} {g['runs']:>4} "
                  f"{g['cycles']:>8} {g['ideal_cycles']:>8.0f} {util}  {ok}, cycles {cyc}")
    failed = [t for t in s["tests"] if t["status"] == "failed"]
    for t in failed:
        print(f"FAILED {t['name']}: {t['message'].splitlines()[0] if t['message'] else ''}")
    print(f"\n{s['passed']} passed, {s['failed']} failed ({s['wall_seconds']}s; "
          f"build {'compiled' if s['rebuilt'] else 'cached'}); JUnit: {s['junit']}"
          + (f"; waves: {s['waves']}" if s["waves"] else ""))


# -- report -------------------------------------------------------------------------------------
def cmd_report(args):
    from tessera.generators.report import check_report, load_layers_file, make_report
    cfg = _cfg(args.config)
    layers = None
    if args.layers:
        try:
            layers = load_layers_file(args.layers)
        except OSError as e:
            raise CliError(f"--layers: {_q(args.layers)}: {e.strerror or e}") from None
        except Exception as e:
            raise CliError(f"--layers: {e}") from None
    cases = check_report(cfg, plot=args.plot, layers=layers)
    _check_mappable(cfg, [(c["m"], c["n"], c["k"], c.get("mode")) for c in cases], "report")
    _need_verilator()
    say = (lambda s: print(s, file=sys.stderr)) if args.json else print
    rep = make_report(cfg, progress=say, plot=args.plot, layers=layers)
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        print(f"\n{cfg.core.name}: {cfg.rows}x{cfg.cols} PEs, {cfg.pe.name}")
        print(f"{'workload':<40} {'mode':<8} {'GEMMs (M x N x K)':<22} {'runs':>5} "
              f"{'cycles':>9} {'ideal':>9} {'util':>7}")
        for r in rep["rows"]:
            gem = r["mapping"]
            mp = ("{}x{}x{}".format(*gem[0]) + (f" x{len(gem)}" if len(gem) > 1 else ""))
            print(f"{r['workload']:<40} {str(r['mode'] or '-'):<8} {mp:<22} {r['runs']:>5} "
                  f"{r['cycles']:>9} {round(r['ideal_cycles']):>9} "
                  f"{100 * r['utilization']:>6.1f}%")
        for k in ("board", "luts", "dsps", "brams", "fmax_mhz"):
            if k in rep:
                v = rep[k]
                print(f"  {k:<13} {v:.2f}" if isinstance(v, float) else f"  {k:<13} {v}")
        if "luts" not in rep:
            print("  (no bitstream built yet: run `tessera build` for LUT/DSP/BRAM/Fmax)")
    return EXIT_OK


# -- build / program / run ----------------------------------------------------------------------
def cmd_build(args):
    from tessera.fpga.boards import baud_problem, fit_problem
    from tessera.fpga.build import RESULT_FILE, check_build_environment
    cfg = _cfg(args.config)
    _need_uart(cfg, "build")
    # Cheap checks first: environment, fit and baud rate, output folder, tools.
    check_build_environment()
    why = fit_problem(cfg, args.board)
    if why:
        raise CliError(f"build: {cfg.core.name} cannot fit the {args.board}: it {why}")
    why = baud_problem(cfg.host.baud, args.board)
    if why:
        raise CliError(f"host.baud: {cfg.host.baud} cannot be made on the {args.board}: {why}")
    out = pathlib.Path(args.output) if args.output else \
        pathlib.Path("build/fpga") / f"{cfg.core.name}-{args.board}"
    _check_out(out, records=(RESULT_FILE,), what="build folder")
    from tessera.fpga.boards import get_board
    from tessera.fpga.toolchain import require_tools
    require_tools(get_board(args.board).tools)
    if cfg.core.boards and args.board not in cfg.core.boards:
        print(f"note: {cfg.core.name} lists boards {list(cfg.core.boards)}; building for "
              f"{args.board} anyway", file=sys.stderr)
    from tessera.fpga.build import build_bitstream
    from tessera.generators.assemble import build_core
    say = (lambda s: print(s, file=sys.stderr)) if args.json else print
    res = build_bitstream(build_core(cfg), board=args.board, out_dir=out, name=cfg.core.name,
                          seed=args.seed, baud=cfg.host.baud, progress=say)
    import dataclasses
    d = dataclasses.asdict(res)
    if args.json:
        print(json.dumps(d, indent=1, default=str))
        return EXIT_OK
    print(f"\n{cfg.core.name} on {args.board} ({d['device']}):")
    print(f"  LUTs   {d['luts']:>6} / {d['luts_total']}")
    print(f"  DSPs   {d['dsps']:>6} / {d['dsps_total']}")
    print(f"  BRAMs  {d['brams']:>6} / {d['brams_total']}")
    met = "met" if d["timing_met"] else "NOT met"
    print(f"  Fmax   {d['fmax_mhz']:.1f} MHz vs board clock {d['target_mhz']:.1f} MHz "
          f"(timing {met})")
    print(f"  bitstream {d['bitstream']}")
    return EXIT_OK


def _need_uart(cfg, command):
    """Board commands reach the core through the UART bridge: ``host.interface`` says so."""
    if cfg.host.interface != "uart":
        raise CliError(f"host.interface: {cfg.host.interface!r} has no board link; allowed for "
                       f"`tessera {command}`: 'uart' (set [host] interface = \"uart\" and baud)")


def cmd_program(args):
    from tessera.fpga.boards import get_board
    from tessera.fpga.program import program
    board = get_board(args.board)
    bit = pathlib.Path(args.bitstream)
    if not str(bit).endswith(board.bitstream_suffix):
        raise CliError(f"program: bitstream {_q(str(bit))} is not a {board.bitstream_suffix} "
                       f"file; allowed for {board.name}: the {board.bitstream_suffix} file "
                       f"`tessera build --board {board.name}` writes")
    if not bit.is_file():
        raise CliError(f"program: bitstream {_q(str(bit))} does not exist; build one with "
                       f"`tessera build --board {args.board}`")
    command = program(str(bit), args.board, dry_run=args.dry_run)
    if args.dry_run:
        print(" ".join(command))
    return EXIT_OK


def cmd_run(args):
    import numpy as np
    from tessera.fpga.boards import baud_problem, get_board
    from tessera.fpga.link import UartTransport
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.workloads import gemm_operands, reference_gemm
    cfg = _cfg(args.config)
    _need_uart(cfg, "run")
    board = get_board(args.board)
    layers = None
    if args.layers:
        from tessera.generators.report import load_layers_file, report_layers
        if args.gemm is not None:
            raise CliError("run: give --gemm or --layers, not both")
        try:
            layers = report_layers(cfg, load_layers_file(args.layers))
        except OSError as e:
            raise CliError(f"--layers: {_q(args.layers)}: {e.strerror or e}") from None
        except ValueError as e:
            raise CliError(f"--layers: {e}") from None
    m, n, k = args.gemm or (16, 16, 16)
    if layers is None:
        _check_mappable(cfg, [(m, n, k, None)], "run")
    why = baud_problem(cfg.host.baud, board)
    if why:
        raise CliError(f"host.baud: {cfg.host.baud} cannot be made on the {board.name}: {why}")

    async def go():
        async with UartTransport.for_board(args.port, board, baud=cfg.host.baud) as t:
            drv = TesseraDriver(t, cfg, poll_cycles=1000)
            info = await drv.connect()
            if layers is not None:
                return info, await _run_layers(drv, cfg, layers, args.seed)
            a, b = gemm_operands(cfg, m, n, k, seed=args.seed)
            got, stats = await drv.gemm(a, b)
            return info, (got, stats, reference_gemm(cfg, a, b, k_split=stats.k_split))
    info, result = asyncio.run(go())
    if layers is not None:
        from tessera.sim.layers import describe
        print(f"{'layer':<16} {'':<30} {'runs':>5} {'cycles':>9} {'util':>7} {'to core':>8} "
              f"{'from core':>9}  result")
        bad_total = 0
        for case, (bad, st) in zip(layers, result):
            bad_total += bad
            util = f"{100 * st.utilization:6.1f}%" if st.utilization else "      -"
            print(f"{case['name']:<16} {describe(case['layer']):<30} {st.runs:>5} "
                  f"{st.cycles:>9} {util} {st.bytes_out:>8} {st.bytes_in:>9}  "
                  f"{'bit-exact' if bad == 0 else f'{bad} mismatches'}")
        return EXIT_OK if bad_total == 0 else EXIT_FAILED
    got, stats, ref = result
    bad = int(np.count_nonzero(got != ref))
    print(f"{m}x{n}x{k} GEMM on {args.board}: {stats.cycles} cycles in {stats.runs} runs, "
          f"{'bit-exact' if bad == 0 else f'{bad} mismatches'}")
    return EXIT_OK if bad == 0 else EXIT_FAILED


async def _run_layers(drv, cfg, cases, seed):
    """Each layer case with seeded operands on the core; [(mismatches, LayerStats)]."""
    import numpy as np
    from tessera.sim.layers import layer_from_dict
    from tessera.sim.lowering import run_layer
    out = []
    for i, case in enumerate(cases):
        layer = layer_from_dict(case["layer"])
        x, w = cfg.engine.layer_operands(layer, case["input"], seed=seed + i,
                                         mode=case.get("mode"))
        got, st = await run_layer(drv, layer, x, w, raw=True, mode=case.get("mode"))
        want = cfg.engine.layer_reference(layer, x, w, k_split=st.k_split, mode=case.get("mode"))
        out.append((int(np.count_nonzero(np.asarray(got, np.uint64)
                                         != np.asarray(want, np.uint64))), st))
    return out


# -- argument types -----------------------------------------------------------------------------
def _int_in(lo, hi, what):
    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer; allowed: "
                                             f"{what}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: {what}")
        return value
    parse.__name__ = "integer"
    return parse


def _port(text):
    if not text or "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a serial device path; allowed: e.g. "
                                         f"/dev/ttyUSB1")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse without abbreviations: ``--out`` never silently means ``--output``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def _parser():
    debug = _Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="print the traceback of an error (also TESSERA_DEBUG=1)")
    p = _Parser(
        prog="tessera", parents=[debug],
        description="Generate, verify and deploy DNN-inference accelerator cores. CONFIG is a "
                    "TOML file or a preset name (see `tessera presets`); default: the default "
                    "preset.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    def command(name, help, **kw):
        return sub.add_parser(name, help=help, parents=[debug], **kw)

    s = command("presets", "list the built-in presets")
    s.set_defaults(fn=cmd_presets)

    s = command("generate", "write Verilog, manifest.json and driver constants")
    s.add_argument("config", nargs="?", metavar="CONFIG")
    s.add_argument("-o", "--output", metavar="DIR",
                   help="output folder: new, or one tessera wrote (default build/generate/NAME)")
    s.add_argument("--lint", action="store_true", help="also run verilator --lint-only")
    s.set_defaults(fn=cmd_generate)

    s = command("unit", "write one unit (a MAC, an array, ...) alone",
                description="Options after NAME are the unit's own (see --list).")
    s.add_argument("name", nargs="?", metavar="NAME")
    s.add_argument("--list", action="store_true", help="list units and their options")
    s.add_argument("-o", "--output", metavar="DIR",
                   help="output folder: new, or one tessera wrote (default build/unit/NAME)")
    s.add_argument("--lint", action="store_true", help="also run verilator --lint-only")
    s.set_defaults(fn=cmd_unit, takes_extra=True)

    s = command("regress", "cocotb + Verilator regression against the golden model")
    s.add_argument("config", nargs="?", metavar="CONFIG")
    s.add_argument("--waves", action="store_true", help="write a VCD waveform")
    s.add_argument("--json", action="store_true", help="print a machine-readable summary")
    s.add_argument("--junit", metavar="PATH", help="JUnit XML path (new, or one tessera wrote)")
    s.add_argument("--quick", action="store_true", help="fewer GEMM cases")
    s.set_defaults(fn=cmd_regress)

    s = command("report", "cycles/utilization per layer and mode (RTL) + last build")
    s.add_argument("config", nargs="?", metavar="CONFIG")
    s.add_argument("--json", action="store_true")
    s.add_argument("--plot", metavar="PNG", help="also plot utilization vs GEMM size")
    s.add_argument("--layers", metavar="TOML",
                   help="layers to report instead of the default conv 3x3 and dense: [[layer]] "
                        "tables with name, input (shape) and the layer's keys (docs/cli.md)")
    s.set_defaults(fn=cmd_report)

    from tessera.generators.config import BOARDS
    s = command("build", "bitstream for a board, with LUT/DSP/BRAM/Fmax")
    s.add_argument("config", nargs="?", metavar="CONFIG")
    s.add_argument("--board", required=True, choices=BOARDS)
    s.add_argument("-o", "--output", metavar="DIR",
                   help="build folder: new, or one tessera built (default build/fpga/NAME-BOARD)")
    s.add_argument("--seed", type=_int_in(0, 2**31 - 1, "0..2147483647"), default=1,
                   help="nextpnr placement seed")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_build)

    s = command("program", "load a bitstream onto a board with openFPGALoader")
    s.add_argument("bitstream", metavar="BITSTREAM")
    s.add_argument("--board", required=True, choices=BOARDS)
    s.add_argument("--dry-run", action="store_true", help="print the command only")
    s.set_defaults(fn=cmd_program)

    s = command("run", "run a GEMM or layers on a programmed board over its UART")
    s.add_argument("config", nargs="?", metavar="CONFIG")
    s.add_argument("--board", required=True, choices=BOARDS)
    s.add_argument("--port", required=True, type=_port, help="serial port, e.g. /dev/ttyUSB1")
    dim = _int_in(1, MAX_GEMM_DIM, f"1..{MAX_GEMM_DIM}")
    s.add_argument("--gemm", nargs=3, type=dim, default=None, metavar=("M", "N", "K"),
                   help="run one M x N x K GEMM of seeded random operands (default 16 16 16)")
    s.add_argument("--layers", metavar="TOML",
                   help="run these layers instead ([[layer]] tables as for `report --layers`), "
                        "each checked against the layer reference")
    s.add_argument("--seed", type=_int_in(0, 2**32 - 1, "0..4294967295"), default=0)
    s.set_defaults(fn=cmd_run)
    return p


# -- the one error handler ----------------------------------------------------------------------
#: Exceptions that are expected failures (printed as one line, exit 2), besides the classes
#: below: matched by name so that modules need not be imported to be caught.
_EXPECTED_NAMES = {"BuildError", "ProgramError", "ToolchainError", "LinkError", "LinkTimeout",
                   "TesseraError", "LintError", "VerilatorNotFoundError", "VersionError",
                   "SimulationError", "OutputPathError", "ConfigError", "UnitError",
                   "ReportError", "TimeoutExpired"}


def _expected(e):
    if isinstance(e, (CliError, OSError)):
        return True
    return any(c.__name__ in _EXPECTED_NAMES for c in type(e).__mro__)


def one_line(text, limit=MESSAGE_LIMIT):
    """``text`` as one printable line: its first non-empty line (a mark if more followed),
    control characters escaped, cut to ``limit`` characters."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[0] if lines else ""
    if len(lines) > 1:
        line += " [...]"
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
    if len(line) > limit:
        line = line[:limit - 20] + f"... [{len(line)} characters]"
    return line


def _os_error(e):
    what = e.strerror or type(e).__name__
    if e.filename is not None:
        other = f" -> {_q(os.fsdecode(e.filename2))}" if e.filename2 is not None else ""
        return f"{_q(os.fsdecode(e.filename))}{other}: {what}"
    return str(e) or what


def _message(e):
    if isinstance(e, OSError) and not type(e).__name__.startswith("Link"):
        if isinstance(e, TimeoutError) and not e.filename:
            return one_line(str(e) or "timed out")
        return one_line(_os_error(e))
    text = str(e)
    return one_line(text) if text.strip() else type(e).__name__


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = _parser()
    args, extra = p.parse_known_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("TESSERA_DEBUG", "") not in ("", "0")
    if not getattr(args, "cmd", None):
        p.print_help()
        return EXIT_ERROR
    if extra and not getattr(args, "takes_extra", False):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "takes_extra", False):
        return guarded(lambda: args.fn(args, extra), debug=debug)
    return guarded(lambda: args.fn(args), debug=debug)


def guarded(fn, *, debug=False):
    """Run ``fn()`` and return its exit status; the one error handler of every command (and
    of `make demo`): expected failures print one line and give `EXIT_ERROR`, anything else one
    line with the ``--debug`` hint and `EXIT_INTERNAL`."""
    try:
        return fn()
    except BrokenPipeError:
        # The reader went away (`tessera presets | head -1`): stop quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
    except KeyboardInterrupt:
        print("tessera: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        if debug:
            import traceback
            traceback.print_exc()
        if _expected(e):
            print(f"tessera: error: {_message(e)}", file=sys.stderr)
            return EXIT_ERROR
        hint = "" if debug else \
            "; run again with --debug (or TESSERA_DEBUG=1) for the traceback"
        print(f"tessera: internal error (a bug in tessera): {type(e).__name__}: {_message(e)}"
              f"{hint}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
