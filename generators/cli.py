"""The ``tessera`` command line: presets, generate, unit, regress, report, build, program, run."""

import argparse
import asyncio
import json
import pathlib
import sys
import time


__all__ = ["main"]


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _cfg(spec):
    from tessera.generators.config import load_config
    return load_config(spec)


def _default_out(cfg, what):
    return pathlib.Path("build") / what / cfg.core.name


# -- presets ------------------------------------------------------------------------------------
def cmd_presets(args):
    from tessera.generators.config import DEFAULT_PRESET, preset_names, preset_summary
    names = preset_names()
    width = max(len(n) for n in names)
    for n in names:
        mark = " (default)" if n == DEFAULT_PRESET else ""
        print(f"{n:<{width}}  {preset_summary(n)}{mark}")
    return 0


# -- generate -----------------------------------------------------------------------------------
def cmd_generate(args):
    from tessera.generators.generate import generate_core
    cfg = _cfg(args.config)
    out = pathlib.Path(args.output) if args.output else _default_out(cfg, "generate")
    t0 = time.monotonic()
    manifest = generate_core(cfg, out)
    dt = time.monotonic() - t0
    if args.lint:
        _lint(out / manifest["verilog"], manifest["top"])
    print(f"{manifest['top']}: {cfg.rows}x{cfg.cols} {cfg.array.kind} array of {cfg.pe.name} PEs "
          f"({cfg.source}) -> {out}/ ({dt:.1f}s)")
    for f in (manifest["verilog"], "manifest.json", f"{manifest['top']}_defs.h"):
        print(f"  {out / f}")
    print(f"  verilog sha256 {manifest['verilog_sha256'][:16]}...")
    return 0


def _lint(path, top):
    from tessera.sim.verilator import lint
    res = lint([path], top)
    if not res.ok:
        raise CliError(f"verilator lint of {path} failed:\n" + "\n".join(res.messages))
    print(f"  lint: clean under tb/waivers.vlt ({path.name})")


# -- unit ---------------------------------------------------------------------------------------
def cmd_unit(args, extra):
    from tessera.generators.units import UNITS, generate_unit, get_unit
    if args.list or not args.name:
        for name in sorted(UNITS):
            u = UNITS[name]
            print(f"{name}: {u.summary}")
            for o in u.options:
                choices = f"; one of {', '.join(map(str, o.choices))}" if o.choices else ""
                tname = {int: "INT", str: "NAME"}.get(o.type, "BOOL")
                print(f"    --{o.name.replace('_', '-')} {tname}  {o.help} "
                      f"(default {o.default}{choices})")
        return 0
    unit = get_unit(args.name)
    opts = _parse_unit_options(unit, extra)
    out = pathlib.Path(args.output) if args.output else pathlib.Path("build/unit") / args.name
    manifest = generate_unit(args.name, opts, out)
    lat = manifest["latency"]
    print(f"{manifest['top']} -> {out}/ (latency {lat if lat is not None else 'n/a'})")
    if args.lint:
        _lint(out / manifest["verilog"], manifest["top"])
    return 0


def _parse_unit_options(unit, extra):
    known = {"--" + o.name.replace("_", "-"): o for o in unit.options}
    opts = {}
    it = iter(extra)
    for tok in it:
        key, _, val = tok.partition("=")
        if key not in known:
            raise CliError(f"unit {unit.name}: unknown option {key!r}; allowed: "
                           + ", ".join(sorted(known)))
        if not val:
            try:
                val = next(it)
            except StopIteration:
                raise CliError(f"unit {unit.name}: option {key} needs a value") from None
        o = known[key]
        try:
            opts[o.name] = o.type(val)
        except ValueError:
            what = {int: "an integer", str: "a string"}.get(o.type, "true/false")
            raise CliError(f"unit {unit.name}: option {key} = {val!r} is not {what}") from None
    return opts


# -- regress ------------------------------------------------------------------------------------
def cmd_regress(args):
    from tessera.generators.regress import run_regression
    cfg = _cfg(args.config)
    say = (lambda s: print(s, file=sys.stderr)) if args.json else print
    summary = run_regression(cfg, waves=args.waves, quick=args.quick,
                             junit=pathlib.Path(args.junit) if args.junit else None,
                             progress=say)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_regress(summary)
    return 0 if summary["ok"] else 1


def _print_regress(s):
    print(f"\n{'case':<14} {'M':>4} {'N':>4} {'K':>5} {'runs':>4} {'cycles':>8} "
          f"{'ideal':>8} {'util':>7}  result")
    for g in s["gemms"]:
        ok = "bit-exact" if g["mismatches"] == 0 else f"{g['mismatches']} MISMATCHES"
        cyc = "ok" if g["cycles"] == g["golden_cycles"] else f"golden {g['golden_cycles']}"
        print(f"{g['case']:<14} {g['m']:>4} {g['n']:>4} {g['k']:>5} {g['runs']:>4} "
              f"{g['cycles']:>8} {g['ideal_cycles']:>8.0f} {100 * g['utilization']:>6.2f}%  "
              f"{ok}, cycles {cyc}")
    failed = [t for t in s["tests"] if t["status"] == "failed"]
    for t in failed:
        print(f"FAILED {t['name']}: {t['message'].splitlines()[0] if t['message'] else ''}")
    print(f"\n{s['passed']} passed, {s['failed']} failed ({s['wall_seconds']}s; "
          f"build {'compiled' if s['rebuilt'] else 'cached'}); JUnit: {s['junit']}"
          + (f"; waves: {s['waves']}" if s["waves"] else ""))


# -- report -------------------------------------------------------------------------------------
def cmd_report(args):
    from tessera.generators.report import make_report
    cfg = _cfg(args.config)
    say = (lambda s: print(s, file=sys.stderr)) if args.json else print
    rep = make_report(cfg, progress=say, plot=args.plot)
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        print(f"\n{cfg.core.name}: reference GEMM {rep['gemm']} on {cfg.rows}x{cfg.cols} PEs")
        for k in ("cycles", "ideal_cycles", "utilization", "luts", "dsps", "brams",
                  "fmax_mhz", "board"):
            if k in rep:
                v = rep[k]
                print(f"  {k:<13} {v:.4f}" if isinstance(v, float) else f"  {k:<13} {v}")
        if "luts" not in rep:
            print("  (no bitstream built yet: run `tessera build` for LUT/DSP/BRAM/Fmax)")
    return 0


# -- build / program / run ----------------------------------------------------------------------
def cmd_build(args):
    from tessera.generators.assemble import build_core
    from tessera.fpga.build import build_bitstream
    cfg = _cfg(args.config)
    _need_uart(cfg, "build")
    out = pathlib.Path(args.output) if args.output else \
        pathlib.Path("build/fpga") / f"{cfg.core.name}-{args.board}"
    if cfg.core.boards and args.board not in cfg.core.boards:
        print(f"note: {cfg.core.name} lists boards {list(cfg.core.boards)}; building for "
              f"{args.board} anyway", file=sys.stderr)
    say = (lambda s: print(s, file=sys.stderr)) if args.json else print
    res = build_bitstream(build_core(cfg), board=args.board, out_dir=out, name=cfg.core.name,
                          seed=args.seed, baud=cfg.host.baud, progress=say)
    import dataclasses
    d = dataclasses.asdict(res)
    if args.json:
        print(json.dumps(d, indent=1, default=str))
        return 0
    print(f"\n{cfg.core.name} on {args.board} ({d['device']}):")
    print(f"  LUTs   {d['luts']:>6} / {d['luts_total']}")
    print(f"  DSPs   {d['dsps']:>6} / {d['dsps_total']}")
    print(f"  BRAMs  {d['brams']:>6} / {d['brams_total']}")
    met = "met" if d["timing_met"] else "NOT met"
    print(f"  Fmax   {d['fmax_mhz']:.1f} MHz vs board clock {d['target_mhz']:.1f} MHz "
          f"(timing {met})")
    print(f"  bitstream {d['bitstream']}")
    return 0


def _need_uart(cfg, command):
    """Board commands reach the core through the UART bridge: ``host.interface`` says so."""
    if cfg.host.interface != "uart":
        raise CliError(f"host.interface: {cfg.host.interface!r} has no board link; allowed for "
                       f"`tessera {command}`: 'uart' (set [host] interface = \"uart\" and baud)")


def cmd_program(args):
    from tessera.fpga.program import program
    bit = pathlib.Path(args.bitstream)
    if not bit.is_file():
        raise CliError(f"program: bitstream {str(bit)!r} does not exist; build one with "
                       f"`tessera build --board {args.board}`")
    program(str(bit), args.board, dry_run=args.dry_run)
    return 0


def cmd_run(args):
    import numpy as np
    from tessera.fpga.boards import get_board
    from tessera.fpga.link import UartTransport
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.workloads import gemm_operands, reference_gemm
    cfg = _cfg(args.config)
    _need_uart(cfg, "run")
    board = get_board(args.board)
    m, n, k = args.gemm

    async def go():
        async with UartTransport.for_board(args.port, board) as t:
            drv = TesseraDriver(t, cfg, poll_cycles=1000)
            info = await drv.connect()
            a, b = gemm_operands(cfg, m, n, k, seed=args.seed)
            got, stats = await drv.gemm(a, b)
            return info, got, stats, reference_gemm(cfg, a, b, k_split=stats.k_split)
    info, got, stats, ref = asyncio.run(go())
    bad = int(np.count_nonzero(got != ref))
    print(f"{m}x{n}x{k} GEMM on {args.board}: {stats.cycles} cycles in {stats.runs} runs, "
          f"{'bit-exact' if bad == 0 else f'{bad} mismatches'}")
    return 0 if bad == 0 else 1


def _parser():
    p = argparse.ArgumentParser(
        prog="tessera",
        description="Generate, verify and deploy DNN-inference accelerator cores. CONFIG is a "
                    "TOML file or a preset name (see `tessera presets`); default: the default "
                    "preset.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    s = sub.add_parser("presets", help="list the built-in presets")
    s.set_defaults(fn=cmd_presets)

    s = sub.add_parser("generate", help="write Verilog, manifest.json and driver constants")
    s.add_argument("config", nargs="?", metavar="CONFIG")
    s.add_argument("-o", "--output", metavar="DIR", help="output folder (default build/generate/NAME)")
    s.add_argument("--lint", action="store_true", help="also run verilator --lint-only")
    s.set_defaults(fn=cmd_generate)

    s = sub.add_parser("unit", help="write one unit (a MAC, an array, ...) alone",
                       description="Options after NAME are the unit's own (see --list).")
    s.add_argument("name", nargs="?", metavar="NAME")
    s.add_argument("--list", action="store_true", help="list units and their options")
    s.add_argument("-o", "--output", metavar="DIR")
    s.add_argument("--lint", action="store_true", help="also run verilator --lint-only")
    s.set_defaults(fn=cmd_unit, takes_extra=True)

    s = sub.add_parser("regress", help="cocotb + Verilator regression against the golden model")
    s.add_argument("config", nargs="?", metavar="CONFIG")
    s.add_argument("--waves", action="store_true", help="write a VCD waveform")
    s.add_argument("--json", action="store_true", help="print a machine-readable summary")
    s.add_argument("--junit", metavar="PATH", help="JUnit XML path")
    s.add_argument("--quick", action="store_true", help="fewer GEMM cases")
    s.set_defaults(fn=cmd_regress)

    s = sub.add_parser("report", help="cycles/utilization of the reference GEMM + last build")
    s.add_argument("config", nargs="?", metavar="CONFIG")
    s.add_argument("--json", action="store_true")
    s.add_argument("--plot", metavar="PNG", help="also plot utilization vs GEMM size")
    s.set_defaults(fn=cmd_report)

    from tessera.generators.config import BOARDS
    s = sub.add_parser("build", help="bitstream for a board, with LUT/DSP/BRAM/Fmax")
    s.add_argument("config", nargs="?", metavar="CONFIG")
    s.add_argument("--board", required=True, choices=BOARDS)
    s.add_argument("-o", "--output", metavar="DIR")
    s.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_build)

    s = sub.add_parser("program", help="load a bitstream onto a board with openFPGALoader")
    s.add_argument("bitstream", metavar="BITSTREAM")
    s.add_argument("--board", required=True, choices=BOARDS)
    s.add_argument("--dry-run", action="store_true", help="print the command only")
    s.set_defaults(fn=cmd_program)

    s = sub.add_parser("run", help="run a GEMM on a programmed board over its UART")
    s.add_argument("config", nargs="?", metavar="CONFIG")
    s.add_argument("--board", required=True, choices=BOARDS)
    s.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB1")
    s.add_argument("--gemm", nargs=3, type=int, default=(16, 16, 16), metavar=("M", "N", "K"))
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_run)
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = _parser()
    args, extra = p.parse_known_args(argv)
    if not getattr(args, "cmd", None):
        p.print_help()
        return 2
    if extra and not getattr(args, "takes_extra", False):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if getattr(args, "takes_extra", False):
            return args.fn(args, extra)
        return args.fn(args)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("tessera: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line for user errors, full trace only for bugs
        from tessera.generators.config import ConfigError
        from tessera.generators.units import UnitError
        user = (CliError, ConfigError, UnitError, FileNotFoundError)
        names = {"BuildError", "ProgramError", "ToolchainError", "LinkError", "LinkTimeout",
                 "TesseraError", "LintError", "VerilatorNotFoundError", "VersionError"}
        if isinstance(e, user) or type(e).__name__ in names:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"tessera: error: {msg}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
