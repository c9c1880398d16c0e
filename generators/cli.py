"""The ``tessera`` command line: presets, generate, unit, regress, report, build, program, run,
clean.

Every command checks what it can decide from the config and the arguments (the config itself,
output paths, whether a layer maps onto the scratchpads, whether the core fits the named board)
before it generates Verilog, compiles a simulation or places and routes. One handler in `main`
turns every expected failure into one line ``tessera: error: ...`` (exit status 2); an
unexpected exception prints one line and how to see its traceback (``--debug``, exit status 3).
"""

import argparse
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
    if args.name is None:
        if extra or args.output or args.lint:
            given = " ".join([*(["-o", args.output] if args.output else []),
                              *(["--lint"] if args.lint else []), *extra])
            raise CliError(f"unit: {_q(given, 60)} needs a unit NAME first; allowed NAMEs: "
                           + ", ".join(sorted(UNITS)) + " (`tessera unit --list`)")
        if args.help:
            _unit_command_parser().print_help()
            raise SystemExit(EXIT_OK)
        _print_unit_list(UNITS)
        return EXIT_OK
    if args.list:
        raise CliError(f"unit: --list takes no unit NAME (given {_q(args.name, 40)}); see "
                       f"`tessera unit {args.name} --help` for one unit's options")
    unit = get_unit(args.name)
    if args.help:
        _unit_parser(unit).print_help()
        raise SystemExit(EXIT_OK)
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


def _option_type_name(o):
    return {int: "INT", str: "NAME"}.get(o.type, "BOOL")


def _print_unit_list(units):
    for name in sorted(units):
        u = units[name]
        print(f"{name}: {u.summary}")
        for o in u.options:
            choices = f"; one of {', '.join(map(str, o.choices))}" if o.choices else ""
            print(f"    --{o.name.replace('_', '-')} {_option_type_name(o)}  {o.help} "
                  f"(default {o.default}{choices})")


def _unit_example(unit):
    """A command line for the help's example: the unit with its first option changed."""
    for o in unit.options:
        if o.choices:
            other = next((c for c in o.choices if c not in (o.default, "")), None)
            if other is not None:
                return f"--{o.name.replace('_', '-')} {other}"
        elif o.type is int:
            return f"--{o.name.replace('_', '-')} {o.default}"
    return ""


def _unit_parser(unit):
    """An argparse parser that documents one unit's options (for ``tessera unit NAME --help``;
    the options themselves are parsed by `_parse_unit_options`)."""
    ex = _unit_example(unit)
    p = _Parser(prog=f"tessera unit {unit.name}", add_help=False,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description=f"{unit.summary}.\n\nWrites tessera_{unit.name}.v and manifest.json "
                            f"(ports, latency, formats: docs/manifest.md).",
                epilog="example:\n"
                       f"  tessera unit {unit.name}{' ' + ex if ex else ''} "
                       f"-o build/unit/{unit.name}\n"
                       f"  tessera unit {unit.name} --lint")
    g = p.add_argument_group("unit options (as --opt VALUE or --opt=VALUE)")
    for o in unit.options:
        choices = f"; one of {', '.join(repr(c) for c in o.choices)}" if o.choices else ""
        g.add_argument(f"--{o.name.replace('_', '-')}", metavar=_option_type_name(o),
                       help=f"{o.help} (default {o.default!r}{choices})".replace("%", "%%"))
    _common_unit_arguments(p.add_argument_group("common options"))
    return p


def _common_unit_arguments(g, *, with_list=False):
    g.add_argument("-h", "--help", action="store_true",
                   help="show this help (with NAME: the unit's own options) and exit")
    if with_list:
        g.add_argument("--list", action="store_true",
                       help="list every unit with its options and defaults")
    g.add_argument("-o", "--output", metavar="DIR",
                   help="output folder: new, or one tessera wrote (default build/unit/NAME)")
    g.add_argument("--lint", action="store_true",
                   help="also run verilator --lint-only on the Verilog (docs/lint.md)")


def _unit_command_parser():
    return _SUBPARSERS["unit"]


def _parse_unit_options(unit, extra):
    from tessera.generators.config import did_you_mean
    known = {"--" + o.name.replace("_", "-"): o for o in unit.options}
    opts = {}
    it = iter(extra)
    for tok in it:
        key, eq, val = tok.partition("=")
        if key not in known:
            what = "option" if key.startswith("-") else "argument"
            raise CliError(f"unit {unit.name}: unknown {what} {_q(key, 40)}; "
                           f"{did_you_mean(key, known, str)}allowed: "
                           + (", ".join(sorted(known)) or "no options")
                           + f" (`tessera unit {unit.name} --help`)")
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
    from tessera.generators.regress import (check_regression, check_waves_window, default_cases,
                                            run_regression)
    cfg = _cfg(args.config)
    junit = pathlib.Path(args.junit) if args.junit else None
    cases = default_cases(cfg, quick=args.quick)
    check_regression(cfg, cases=cases, junit=junit)
    layers = cfg.engine.layer_cases(quick=args.quick)
    waves = _waves_choice(args)
    if args.waves_window is not None:
        try:
            check_waves_window(args.waves_window, cases, layers)
        except ValueError as e:
            raise CliError(str(e)) from None
    _check_mappable(cfg, [(c["m"], c["n"], c["k"], c.get("mode")) for c in cases], "regress")
    _need_verilator()
    keep = _keep()
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else \
        (lambda s: print(s, flush=True))
    summary = run_regression(cfg, waves=waves, quick=args.quick, junit=junit, progress=say,
                             waves_depth=args.waves_depth, waves_window=args.waves_window,
                             keep=keep)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_regress(summary)
    return EXIT_OK if summary["ok"] else EXIT_FAILED


def _waves_choice(args):
    """What `run_regression` gets for ``waves``: False, or "fst"/"vcd" (FST by default where
    this machine can build it; a window is cut from VCD)."""
    from tessera.sim.runner import fst_support
    wanted = args.waves or args.waves_format is not None or args.waves_depth is not None \
        or args.waves_window is not None
    if not wanted:
        return False
    if args.waves_format == "fst":
        if args.waves_window is not None:
            raise CliError("--waves-window cuts VCD files; drop --waves-format fst (a window "
                           "gives VCD) or drop the window")
        if fst_support() is None:
            raise CliError("--waves-format fst: Verilator's FST writer needs lz4 (Debian: "
                           "liblz4-dev, or its runtime liblz4-1), which is not installed; "
                           "allowed here: --waves-format vcd")
        return "fst"
    if args.waves_format == "vcd" or args.waves_window is not None:
        return "vcd"
    return "fst" if fst_support() is not None else "vcd"


#: Environment variable: how many runs, builds and work folders per core the commands keep.
KEEP_ENV = "TESSERA_KEEP"
DEFAULT_KEEP = 3


def _keep():
    text = os.environ.get(KEEP_ENV, "").strip()
    if not text:
        return DEFAULT_KEEP
    try:
        value = int(text, 10)
    except ValueError:
        value = 0
    if value < 1:
        raise CliError(f"{KEEP_ENV}: {_q(text, 40)} is not a positive integer; allowed: 1 or "
                       f"more (how many runs, builds and work folders per core to keep; "
                       f"default {DEFAULT_KEEP})")
    return value


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
    if s.get("network"):
        n = s["network"]
        ok = "bit-exact" if n["equal_golden"] == n["images"] else "MISMATCHES"
        print(f"\nnetwork case: {n['network']} quantized for {n.get('pe')}, {n['images']} "
              f"images, classes {n['classes']} (labels {n['labels']}), {n['cycles']} cycles; "
              f"{ok}, cycles {'ok' if n['cycles_equal'] else '!= golden'}")
    failed = [t for t in s["tests"] if t["status"] == "failed"]
    for t in failed:
        print(f"FAILED {t['name']}: {t['message'].splitlines()[0] if t['message'] else ''}")
    print(f"\n{s['passed']} passed, {s['failed']} failed ({s['wall_seconds']}s; "
          f"build {'compiled' if s['rebuilt'] else 'cached'}); JUnit: {s['junit']}"
          + (f"; waves: {s['waves']}" if s["waves"] else "")
          + (f" ({_window_text(s['waves_window_ns'])})" if s.get("waves_window_ns") else ""))


def _window_text(w):
    lo, hi = w
    return f"window {lo:g}..{'end' if hi is None else format(hi, 'g')} ns"


# -- report -------------------------------------------------------------------------------------
def cmd_sweep(args):
    from tessera.generators.sweep import cmd_sweep as run
    return run(args)


def cmd_infer(args):
    from tessera.generators.infer import run_cli
    cfg = _cfg(args.config)
    return run_cli(args, cfg)


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
    keep = _keep()
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else \
        (lambda s: print(s, flush=True))
    rep = make_report(cfg, progress=say, plot=args.plot, layers=layers, keep=keep)
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        print(format_report(cfg, rep))
    return EXIT_OK


def human(value, digits=3):
    """A number for people: integers (and floats that are whole) as integers, other floats
    with ``digits`` significant digits but never in exponent form for everyday sizes
    (``23.987654`` -> ``"24"`` at 2 digits, ``"24.0"`` at 3; ``32768.0`` -> ``"32768"``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    import math
    if value == 0 or not math.isfinite(value):
        return str(value)
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{decimals}f}"


def format_report(cfg, rep):
    """The text `tessera report` prints: one row per workload and mode, figures rounded for
    people (the JSON keeps full precision)."""
    lines = [f"\n{cfg.core.name}: {cfg.rows}x{cfg.cols} PEs, {cfg.pe.name}",
             f"{'workload':<40} {'mode':<8} {'GEMMs (M x N x K)':<22} {'runs':>5} "
             f"{'cycles':>9} {'ideal':>9} {'util':>6}"]
    for r in rep["rows"]:
        gem = r["mapping"]
        mp = ("{}x{}x{}".format(*gem[0]) + (f" x{len(gem)}" if len(gem) > 1 else ""))
        lines.append(f"{r['workload']:<40} {str(r['mode'] or '-'):<8} {mp:<22} {r['runs']:>5} "
                     f"{r['cycles']:>9} {round(r['ideal_cycles']):>9} "
                     f"{100 * r['utilization']:>5.1f}%")
    for k in ("board", "luts", "dsps", "brams", "fmax_mhz"):
        if k in rep:
            v = rep[k]
            text = f"{v:.2f}" if k == "fmax_mhz" and isinstance(v, float) else human(v)
            lines.append(f"  {k:<13} {text}")
    if "luts" not in rep:
        lines.append("  (no bitstream built yet: run `tessera build` for LUT/DSP/BRAM/Fmax)")
    return "\n".join(lines)


# -- build / program / run ----------------------------------------------------------------------
def _board_fits(cfg, board, command):
    """The core of ``cfg`` must fit ``board`` at its clock and baud rate
    (`tessera.fpga.deploy.board_problem`); its ``host.interface`` does not matter: every board
    top has the framed UART link."""
    from tessera.fpga.deploy import board_problem
    why = board_problem(cfg, board)
    if why:
        # "core.clock_mhz: ..." and "host.baud: ..." name their option already.
        raise CliError(why if why.startswith(("core.", "host.")) else f"{command}: {why}")


def cmd_build(args):
    from tessera.fpga.build import RESULT_FILE, check_build_environment
    cfg = _cfg(args.config)
    # Cheap checks first: environment, fit, clock and baud rate, output folder, tools.
    check_build_environment()
    _board_fits(cfg, args.board, "build")
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
                          seed=args.seed, baud=cfg.host.baud,
                          clk_hz=cfg.core.clock_mhz * 1e6, progress=say)
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
    print(f"  Fmax   {d['fmax_mhz']:.1f} MHz vs core clock {d['target_mhz']:.1f} MHz "
          f"(timing {met})")
    print(f"  bitstream {d['bitstream']}")
    return EXIT_OK


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


def _run_positionals(args, extra):
    """``(config, model)`` of `tessera run [CONFIG] [MODEL]`: argparse gives a trailing MODEL
    after the options as an extra argument; one positional is the MODEL when it is an ``.npz``
    file name, else the CONFIG."""
    options = [t for t in extra if t.startswith("-")]
    words = [t for t in extra if not t.startswith("-")]
    if options:
        _SUBPARSERS["run"].unknown(extra)
    given = [v for v in (args.config, args.model) if v is not None] + words
    if len(given) > 2:
        _SUBPARSERS["run"].unknown(given[2:])
    config, model = (given + [None, None])[:2]
    if model is None and config is not None and config.lower().endswith(".npz"):
        config, model = None, config
    if args.model_option is not None:
        if model is not None:
            raise CliError(f"run: the model is given twice ({_q(model, 60)} and --model "
                           f"{_q(args.model_option, 60)}); give MODEL once")
        model = args.model_option
    return config, model


def cmd_run(args, extra=()):
    from tessera.fpga import deploy
    args.config, model = _run_positionals(args, list(extra))
    if model is not None:
        return cmd_run_model(args, model)
    if args.images is not None or args.data != "digits":
        given = "--images" if args.images is not None else "--data"
        raise CliError(f"run: {given} chooses the images of a MODEL, and none is given; allowed: "
                       f"`tessera run [CONFIG] --board B --port P MODEL.npz {given} ...`")
    cfg = _cfg(args.config)
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
    _board_fits(cfg, args.board, "run")
    say = (lambda line: print(line, file=sys.stderr, flush=True))
    if layers is not None:
        rows = deploy.run_layers(args.port, cfg, args.board, layers, seed=args.seed,
                                 resident=args.resident,
                                 progress=say)
        print(deploy.format_layers(rows, port=args.port, board=args.board))
        return EXIT_OK if all(r["mismatches"] == 0 for r in rows) else EXIT_FAILED
    r = deploy.run_gemm(args.port, cfg, args.board, m, n, k, seed=args.seed, progress=say,
                        resident=args.resident)
    print(deploy.format_gemm(r, port=args.port, board=args.board))
    return EXIT_OK if r["mismatches"] == 0 else EXIT_FAILED


def cmd_run_model(args, model):
    """`tessera run [CONFIG] MODEL`: a quantized network on the board (or a virtual board,
    ``--port sim:golden|sim:verilator``), through `tessera.fpga.deploy.run_network`."""
    from tessera.fpga import deploy
    from tessera.generators.infer import load_data
    from tessera.sim.qnet import load
    cfg = _cfg(args.config)
    if args.gemm is not None or args.layers:
        raise CliError("run: give MODEL, --gemm or --layers, one of them")
    _board_fits(cfg, args.board, "run")
    qnet = load(model)
    _, x, y = load_data(args.data)
    images = len(x) if args.images is None else min(args.images, len(x))
    deploy.check_model(cfg, qnet, batch=min(50, images))
    say = (lambda line: print(line, file=sys.stderr, flush=True))

    def on_images(done, total):
        print(f"\r[run] images {done}/{total}", end="" if done < total else "\n",
              file=sys.stderr, flush=True)
    r = deploy.run_network(args.port, cfg, args.board, qnet, x, y, images=args.images,
                           progress=say, on_images=on_images, resident=args.resident)
    print(deploy.format_network(r))
    return EXIT_OK if r["equal_to_reference"] == r["images"] else EXIT_FAILED


# -- clean --------------------------------------------------------------------------------------
#: Files by which tessera recognizes a folder it wrote (docs/cli.md, "Output paths").
RECORDS = ("manifest.json", "summary.json", "build_result.json", "build_failed.json",
           "tessera-build.json", "tessera-vsim.json")


def cmd_clean(args):
    root = pathlib.Path(args.dir)
    if not root.exists():
        print(f"{root}/: nothing to clean")
        return EXIT_OK
    if not root.is_dir():
        raise CliError(f"clean: {_q(str(root))} is not a folder")
    before = _size(root)
    if args.keep is not None:
        gone, left = _prune_all(root, args.keep, args.dry_run), []
    else:
        gone, left = _clean_plan(root)
        if not args.dry_run:
            for path, _ in gone:
                _remove(path)
    freed = sum(size for _, size in gone) if args.dry_run else None
    if not args.dry_run:
        _remove_empty(root, [p for p, _ in gone])
    verb = "would remove" if args.dry_run else "removed"
    for path, size in gone:
        print(f"  {verb} {path} ({_mb(size)})")
    for path in left[:10]:
        print(f"  left {path} (not written by tessera)")
    if len(left) > 10:
        print(f"  left {len(left) - 10} more entries not written by tessera")
    after = before - freed if args.dry_run else _size(root) if root.exists() else 0
    print(f"{root}/: {_mb(before)} -> {_mb(after)} ({verb} {len(gone)} "
          f"{'entry' if len(gone) == 1 else 'entries'}"
          + (f"; kept the newest {args.keep} per core" if args.keep is not None else "")
          + (f"; left {len(left)} not written by tessera" if left else "") + ")")
    return EXIT_OK


def _mb(n):
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _size(path):
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if not os.path.isdir(os.path.join(dirpath, n)) or os.path.islink(
                    os.path.join(dirpath, n)):
                total += st.st_size
    return total


def _is_key(name, length=16):
    import re
    return re.fullmatch(rf"[0-9a-f]{{{length}}}", name) is not None


def _busy(lock_path):
    """True if another process holds the simulation-build lock ``lock_path``."""
    import fcntl
    try:
        with open(lock_path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
    except OSError:
        return False
    return False


def _clean_plan(root):
    """(tessera's entries under ``root`` with their sizes, the entries it left alone)."""
    gone, left = [], []
    hour_ago = time.time() - 3600

    def visit(folder):
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        names = {e.name for e in entries}
        for e in entries:
            if e.is_symlink():
                left.append(e)
            elif e.is_dir():
                if e.name.startswith((".tessera-tmp-", ".tessera-old-")):
                    if e.stat().st_mtime < hour_ago:       # younger: a run may be writing it
                        gone.append((e, _size(e)))
                elif _is_key(e.name) and f"{e.name}.lock" in names:
                    if not _busy(folder / f"{e.name}.lock"):
                        gone.append((e, _size(e)))
                elif any((e / r).is_file() for r in RECORDS):
                    gone.append((e, _size(e)))
                elif e.name == ".lz4" and (e / "lz4.h").is_file():
                    gone.append((e, _size(e)))
                elif _is_key(e.name, 64) and all(f.suffix == ".v" for f in e.iterdir()):
                    gone.append((e, _size(e)))            # the test suite's unit sources
                else:
                    visit(e)
            elif e.name.endswith(".lock") and _is_key(e.name[:-5]):
                gone.append((e, e.stat().st_size))
            else:
                left.append(e)
    if any((root / r).is_file() for r in RECORDS):
        return [(root, _size(root))], []
    visit(root)
    return gone, left


def _prune_all(root, keep, dry_run):
    """`tessera clean --keep N`: the pruning every run does, over the whole build folder;
    returns [(path, size)] of what goes (or would go, with ``dry_run``)."""
    from tessera.generators.regress import prune_work_folders
    from tessera.sim.runner import prune_builds, prune_runs

    def prune(really):
        out = []
        markers = sorted(root.rglob("tessera-build.json"))
        for marker in markers:
            out += prune_runs(marker.parent, keep, dry_run=not really)
        tops = {}
        for marker in markers:
            try:
                top = json.loads(marker.read_text()).get("top")
            except (OSError, ValueError):
                continue
            if top:
                tops.setdefault(marker.parent.parent, set()).add(top)
        for sim_root, names in sorted(tops.items()):
            for top in sorted(names):
                out += prune_builds(sim_root, top, keep, dry_run=not really)
        for folder in sorted({m.parent.parent for m in root.rglob("summary.json")}):
            out += prune_work_folders(folder, keep, dry_run=not really)
        return out

    plan = [(p, _size(p)) for p in prune(False)]
    if not dry_run:
        prune(True)
    # The builds that stay drop their precompiled headers (builds made before tessera did
    # that itself); a build in use is left alone.
    from tessera.sim.runner import slim_build
    for marker in sorted(root.rglob("tessera-build.json")):
        d = marker.parent
        gch = [(g, g.stat().st_size) for g in d.glob("*.gch")]
        if not gch or _busy(d.parent / f"{d.name}.lock"):
            continue
        plan += gch
        if not dry_run:
            slim_build(d)
    return plan


def _remove(path):
    import shutil
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def _remove_empty(root, touched=()):
    """Remove the folders under ``root`` (and ``root``) that are left empty: those that held
    what was removed (``touched``: the removed paths), and others untouched for a minute (a run
    may have just made one to write into)."""
    ours = {os.path.abspath(os.path.dirname(p)) for p in touched}
    recent = time.time() - 60
    for dirpath, _, _ in os.walk(root, topdown=False):
        path = os.path.abspath(dirpath)
        try:
            if path in ours or os.stat(path).st_mtime < recent:
                os.rmdir(path)         # only ever removes an empty folder
                ours.add(os.path.dirname(path))
        except OSError:
            pass


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
                                         f"/dev/ttyUSB1, or sim:golden, sim:verilator")
    if text.startswith("sim:"):
        from tessera.fpga.deploy import SIM_PORTS
        if text not in SIM_PORTS:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a virtual board; allowed: "
                                             f"{', '.join(SIM_PORTS)}")
    return text


def _board(text):
    """A board name or alias (``ulx3s`` is the ULX3S-85F), with "did you mean" otherwise."""
    from tessera.generators.config import ConfigError, board_name
    try:
        return board_name(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e).split(": ", 1)[1]) from None


_board.__name__ = "board"


class _Parser(argparse.ArgumentParser):
    """argparse without abbreviations (``--out`` never silently means ``--output``), whose
    errors for an unknown option name the closest one."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def unknown(self, extra):
        """Exit with this (sub)command's usage and the unknown arguments (and the closest
        option to each mistyped one)."""
        from tessera.generators.config import suggest
        options = [o for a in self._actions for o in a.option_strings]
        hints = {}
        for tok in extra:
            near = suggest(tok.partition("=")[0], options) if tok.startswith("-") else None
            if near:
                hints[tok] = near
        if len(hints) == 1:
            hint = f" (did you mean {next(iter(hints.values()))}?)"
        else:
            hint = "".join(f"; {t}: did you mean {n}?" for t, n in hints.items())
        self.error(f"unrecognized arguments: {' '.join(extra)}{hint}")


#: Every subcommand's parser, by name (for its own usage in errors and `tessera unit --help`).
_SUBPARSERS = {}

_CONFIG_HELP = ("a TOML file (docs/config.md) or a preset name (`tessera presets`); default: "
                "the default preset, int8-8x8")
_BOARD_HELP = "the board: icebreaker or ulx3s-85f (ulx3s means the ULX3S-85F)"


def _parser():
    debug = _Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="print the traceback of an error (also TESSERA_DEBUG=1)")
    p = _Parser(
        prog="tessera", parents=[debug], formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Generate, verify and deploy DNN-inference accelerator cores. CONFIG is a "
                    "TOML file or a preset name\n(see `tessera presets`); default: the default "
                    "preset. `tessera COMMAND --help` explains a command.",
        epilog="example:\n"
               "  tessera presets\n"
               "  tessera generate icebreaker -o build/ice\n"
               "  tessera regress int8-4x4 --quick")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    def command(name, help, description, example, **kw):
        s = sub.add_parser(name, help=help, parents=[debug], description=description,
                           epilog="example:\n" + "\n".join(f"  {e}" for e in example),
                           formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
        _SUBPARSERS[name] = s
        return s

    def config(s):
        s.add_argument("config", nargs="?", metavar="CONFIG", help=_CONFIG_HELP)

    s = command("presets", "list the built-in presets",
                "Lists the built-in presets: name, one-line summary, and (default) after the "
                "default one.",
                ["tessera presets"])
    s.set_defaults(fn=cmd_presets)

    s = command("generate", "write Verilog, manifest.json and driver constants",
                "Writes the core's Verilog (<name>.v), manifest.json (ports, timing, formats, "
                "command set:\ndocs/manifest.md) and the C header <name>_defs.h into one folder.",
                ["tessera generate icebreaker -o build/ice",
                 "tessera generate my_core.toml --lint"])
    config(s)
    s.add_argument("-o", "--output", metavar="DIR",
                   help="output folder: new, or one tessera wrote (default build/generate/NAME)")
    s.add_argument("--lint", action="store_true",
                   help="also run verilator --lint-only on the Verilog (docs/lint.md)")
    s.set_defaults(fn=cmd_generate)

    s = command("unit", "write one unit (a MAC, an array, ...) alone",
                "Writes one unit alone: tessera_<NAME>.v and manifest.json. Options after NAME "
                "are the unit's own\n(`tessera unit NAME --help` lists them; `tessera unit "
                "--list` lists every unit).",
                ["tessera unit --list", "tessera unit int_mac --help",
                 "tessera unit int_mac --acc-bits 24 -o build/mac24"],
                add_help=False)
    s.add_argument("name", nargs="?", metavar="NAME",
                   help="the unit (see --list); without NAME: list the units")
    _common_unit_arguments(s, with_list=True)
    s.set_defaults(fn=cmd_unit, takes_extra=True)

    s = command("regress", "cocotb + Verilator regression against the golden model",
                "Generates the core and runs its cocotb testbench on Verilator: GEMM and layer "
                "cases bit-exact against\nthe reference and cycle-exact against the golden "
                "model, plus INFO, back-pressure and malformed-command\ntests. Each test is "
                "printed as it finishes. Work files: build/regress/NAME-DIGEST/; the newest\n"
                f"{DEFAULT_KEEP} runs, builds and work folders per core are kept ({KEEP_ENV}=N "
                f"to keep another number).",
                ["tessera regress int8-4x4 --quick",
                 "tessera regress icebreaker --waves --waves-window ragged",
                 "tessera regress my_core.toml --junit results.xml --json > summary.json"])
    config(s)
    s.add_argument("--quick", action="store_true",
                   help="fewer GEMM cases (7 instead of 11 per mode, and fewer layers)")
    s.add_argument("--waves", action="store_true",
                   help="record a waveform: FST where this machine's Verilator can write it, "
                        "else VCD")
    s.add_argument("--waves-format", choices=("fst", "vcd"), default=None,
                   help="the waveform format (implies --waves)")
    s.add_argument("--waves-depth", metavar="N", type=_int_in(1, 99, "1..99"), default=None,
                   help="trace N levels of hierarchy only (1: the core's own signals; implies "
                        "--waves)")
    s.add_argument("--waves-window", metavar="CASE|FROM:TO",
                   help="keep only one case's stretch of the waveform (a case name such as "
                        "ragged, or FROM:TO in ns of simulation time); gives VCD (implies "
                        "--waves)")
    s.add_argument("--junit", metavar="PATH",
                   help="also write the JUnit XML to PATH (new, or a JUnit file tessera wrote)")
    s.add_argument("--json", action="store_true",
                   help="print the summary as JSON on stdout (progress goes to stderr)")
    s.set_defaults(fn=cmd_regress)

    s = command("report", "cycles/utilization per layer and mode (RTL) + last build",
                "Runs the 64x64x64 reference GEMM and layers on the core's RTL in every "
                "run-time mode and prints, per\nworkload and mode, the mapping, RUNs, "
                "measured and ideal cycles and utilization; plus LUTs, DSPs,\nBRAMs and Fmax "
                "of the last `tessera build` of the core.",
                ["tessera report int8-4x4",
                 "tessera report bitfusion --layers my_layers.toml --json"])
    config(s)
    s.add_argument("--json", action="store_true",
                   help="print the report as JSON (full precision; progress goes to stderr)")
    s.add_argument("--plot", metavar="PNG",
                   help="also sweep square GEMM sizes and plot utilization into PNG (new, or a "
                        "plot tessera wrote)")
    s.add_argument("--layers", metavar="TOML",
                   help="layers to report instead of the default conv 3x3 and dense: [[layer]] "
                        "tables with name, input (shape) and the layer's keys (docs/cli.md)")
    s.set_defaults(fn=cmd_report)

    s = command("infer", "run a network (ONNX or quantized) on the core: accuracy, cycles",
                "Compiles MODEL for the core (an .onnx float model is quantized for the core's "
                "PE kind from the\ncalibration images; an int8 QDQ model keeps its scales; a "
                ".npz is a network --save wrote;\ndigits-mlp and digits-cnn are built in), runs "
                "it layer by layer on the golden model or the\nVerilated RTL and prints per "
                "layer the mapping, RUNs, cycles against the ideal, where the\nepilogue ran and "
                "the bytes over the host link; then the accuracy, beside the float model's,\n"
                "and on how many images the outputs equal the independent reference "
                "(docs/models.md).",
                ["tessera infer digits-cnn --data digits --sim verilator",
                 "tessera infer model.onnx bitfusion --data test.npz --precisions 8,4x2 "
                 "--images 100",
                 "tessera infer model_qdq.onnx int8-requant --sim golden --json"])
    s.add_argument("model", metavar="MODEL",
                   help="an .onnx file (float or int8 QDQ), a quantized network .npz, or "
                        "digits-mlp / digits-cnn")
    config(s)
    s.add_argument("--data", default="digits", metavar="digits|FILE.npz",
                   help="images: 'digits' (default: the 1347/450 split of scikit-learn's "
                        "digits) or an .npz with x, optional y (labels) and x_calib")
    s.add_argument("--sim", choices=("golden", "verilator"), default="golden",
                   help="the golden model (default) or the core's Verilog under Verilator "
                        "(built once per config under build/vsim)")
    s.add_argument("--images", type=_int_in(1, 10**7, "1..10000000"), default=None,
                   metavar="N", help="run the first N test images (default all)")
    s.add_argument("--batch", type=_int_in(1, 4096, "1..4096"), default=50, metavar="B",
                   help="images per pass through the layers, 1..4096 (default 50)")
    s.add_argument("--calib", type=_int_in(1, 10**7, "1..10000000"), default=None,
                   metavar="N", help="calibrate on the first N calibration images (default "
                                     "all)")
    s.add_argument("--method", choices=("max", "percentile", "sawb"), default=None,
                   help="activation range rule of the quantizer (default: the recipe's)")
    s.add_argument("--percentile", type=float, default=None, metavar="P",
                   help="the percentile of --method percentile (default 99.99)")
    s.add_argument("--precisions", default=None, metavar="LIST",
                   help="bitfusion/multiprec: one precision per Dense/Conv layer, A or AxW "
                        "(e.g. 8,4x2,8)")
    s.add_argument("--save", metavar="QNET.npz",
                   help="also write the quantized network (loads without the float model)")
    s.add_argument("--json", action="store_true",
                   help="print the result as JSON (progress goes to stderr)")
    s.add_argument("--plot", metavar="PNG", help="plot cycles and ideal cycles per layer")
    s.set_defaults(fn=cmd_infer)

    s = command("build", "bitstream for a board, with LUT/DSP/BRAM/Fmax",
                "Synthesizes, places and routes the core for a board (YoWASP yosys + nextpnr) "
                "inside its board top:\nthe board's clocking (a PLL when core.clock_mhz is not "
                "the board clock), reset synchronisation,\nthe framed UART link at host.baud "
                "(docs/link.md) and status LEDs; shows each tool stage and prints\nLUT/DSP/BRAM "
                "use and Fmax against the core clock. Any config that fits the board builds,\n"
                "whatever its host.interface; one that certainly does not fit is refused before "
                "synthesis.",
                ["tessera build icebreaker --board icebreaker",
                 "tessera build --board ulx3s        # the default preset, on the ULX3S 85F",
                 "tessera build ulx3s --board ulx3s --seed 2 --json"])
    config(s)
    s.add_argument("--board", required=True, type=_board, metavar="BOARD", help=_BOARD_HELP)
    s.add_argument("-o", "--output", metavar="DIR",
                   help="build folder: new, or one tessera built (default build/fpga/NAME-BOARD)")
    s.add_argument("--seed", type=_int_in(0, 2**31 - 1, "0..2147483647"), default=1,
                   help="nextpnr placement seed, 0..2147483647 (default 1)")
    s.add_argument("--json", action="store_true", help="print the build result as JSON")
    s.set_defaults(fn=cmd_build)

    s = command("program", "load a bitstream onto a board with openFPGALoader",
                "Loads a bitstream written by `tessera build` onto a board with "
                "openFPGALoader.",
                ["tessera program build/fpga/tessera_icebreaker-icebreaker/"
                 "tessera_icebreaker.bin --board icebreaker",
                 "tessera program top.bit --board ulx3s --dry-run"])
    s.add_argument("bitstream", metavar="BITSTREAM",
                   help="the bitstream file (.bin for icebreaker, .bit for ulx3s-85f)")
    s.add_argument("--board", required=True, type=_board, metavar="BOARD", help=_BOARD_HELP)
    s.add_argument("--dry-run", action="store_true",
                   help="print the openFPGALoader command instead of running it")
    s.set_defaults(fn=cmd_program)

    s = command("run", "run a GEMM, layers or a network on a board (or a virtual board)",
                "Connects to a board programmed by `tessera build` over its framed UART link "
                "(docs/link.md) at the\nconfig's host.baud, checks that the core is the one "
                "the config describes (INFO), then runs\na GEMM or layers of seeded random "
                "operands, or the quantized network MODEL (what `tessera infer\n--save` "
                "writes) on test images, each result checked against the reference. --port "
                "sim:golden\nor sim:verilator is a virtual board: the golden model behind the "
                "framer's twin, or the board\ntop's Verilog (UART, framed link, core) under "
                "Verilator at the board's clock and baud. Exit\nstatus 0 when bit-exact, 1 "
                "otherwise.",
                ["tessera run icebreaker --board icebreaker --port /dev/ttyUSB1",
                 "tessera run icebreaker --board icebreaker --port sim:golden --gemm 32 8 64",
                 "tessera run icebreaker --board icebreaker --port sim:verilator mlp.npz "
                 "--images 50"])
    config(s)
    s.add_argument("model", nargs="?", metavar="MODEL",
                   help="a quantized network .npz (`tessera infer ... --save`): run it on the "
                        "images of --data and print accuracy, images per second and link time "
                        "per image")
    s.add_argument("--board", required=True, type=_board, metavar="BOARD", help=_BOARD_HELP)
    s.add_argument("--port", required=True, type=_port, metavar="PORT",
                   help="the board's serial port, e.g. /dev/ttyUSB1; or a virtual board: "
                        "sim:golden (the golden model, instant) or sim:verilator (the board "
                        "top's Verilog under Verilator, built once under build/vsim)")
    dim = _int_in(1, MAX_GEMM_DIM, f"1..{MAX_GEMM_DIM}")
    s.add_argument("--gemm", nargs=3, type=dim, default=None, metavar=("M", "N", "K"),
                   help=f"run one M x N x K GEMM of seeded random operands, each 1.."
                        f"{MAX_GEMM_DIM} (default 16 16 16)")
    s.add_argument("--layers", metavar="TOML",
                   help="run these layers instead ([[layer]] tables as for `report --layers`), "
                        "each checked against the layer reference")
    s.add_argument("--seed", type=_int_in(0, 2**32 - 1, "0..4294967295"), default=0,
                   help="operand seed, 0..4294967295 (default 0)")
    s.add_argument("--model", dest="model_option", metavar="QNET.npz", default=None,
                   help="the same as MODEL (its older spelling)")
    s.add_argument("--data", default="digits", metavar="digits|FILE.npz",
                   help="images for MODEL (default: the digits test split)")
    s.add_argument("--images", type=_int_in(1, 10**7, "1..10000000"), default=None,
                   metavar="N", help="with MODEL: the first N images (default all)")
    s.add_argument("--no-resident", dest="resident", action="store_false",
                   help="send every operand and parameter word again (default: of each write "
                        "only the span that differs from what this run already wrote, so "
                        "weights stay on chip across batches)")
    s.set_defaults(fn=cmd_run, takes_extra=True)

    from tessera.generators import sweep as _sweep
    s = command("sweep", "a grid of configs on a workload, on Dask: cycles, area, Pareto front",
                _sweep.DESCRIPTION, _sweep.EXAMPLES)
    _sweep.configure_parser(s)
    s.set_defaults(fn=cmd_sweep)

    s = command("clean", "remove what tessera built under build/",
                "Removes what tessera wrote under build/ (simulation builds and runs, regress "
                "and report work folders,\ngenerated cores and units, bitstream builds): "
                "folders it recognizes by their records. Anything else\nis left and named. "
                "With --keep N, keeps the newest N of each core instead.",
                ["tessera clean --dry-run", "tessera clean", "tessera clean --keep 1"])
    s.add_argument("--dry-run", action="store_true",
                   help="list what would be removed, and its size, without removing it")
    s.add_argument("--keep", metavar="N", type=_int_in(1, 1000, "1..1000"), default=None,
                   help="keep the newest N runs, builds and work folders of each core")
    s.add_argument("--dir", metavar="DIR", default="build",
                   help="the build folder (default build, in the working directory)")
    s.set_defaults(fn=cmd_clean)
    return p


# -- the one error handler ----------------------------------------------------------------------
#: Exceptions that are expected failures (printed as one line, exit 2), besides the classes
#: below: matched by name so that modules need not be imported to be caught.
_EXPECTED_NAMES = {"BuildError", "ProgramError", "ToolchainError", "LinkError", "LinkTimeout",
                   "LinkCorrupt", "DeployError", "TesseraError", "LintError",
                   "VerilatorNotFoundError", "VersionError", "SimulationError", "OutputPathError",
                   "ConfigError", "UnitError", "ReportError", "TimeoutExpired", "LayerError",
                   "InferError", "OnnxError", "VsimError", "SweepError"}


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
    """The `tessera` console script: parse, then run the command under `guarded`. A Ctrl-C
    anywhere, the first imports included, ends with one line and status 130."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("tessera: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = _parser()
    args, extra = p.parse_known_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("TESSERA_DEBUG", "") not in ("", "0")
    if not getattr(args, "cmd", None):
        p.print_help()
        return EXIT_ERROR
    if extra and not getattr(args, "takes_extra", False):
        _SUBPARSERS[args.cmd].unknown(extra)
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
