"""The framed host link: efficiency for large and small transfers, error injection, and the
digits network's images per second on each board preset in the virtual board.

Three parts:

1. ``efficiency``: on each board (its link sizes: iCE40 512-byte frames, ECP5 1024-byte ones)
   through the virtual board (``sim:verilator``: the board top's Verilog with the UART bit by
   bit at the board's clock and the preset's baud) and the modelled line (``sim:golden``), payload
   bytes per second over the line's bytes per second (``baud / 10``) for: a large WRITE (the
   largest operand store, to the last acknowledgement), a large READ (the result store, command
   to last byte), and small exchanges (STATUS: 1 byte out, 7 back; a one-word WRITE and READ),
   each a full round trip. Times are the simulated cycles with activity over the clock.
2. ``errors``: a GEMM through the virtual board with line noise injected on the host's side of
   the pseudo-terminal in both directions (per byte: flipped bits, lost bytes, garbage), at
   increasing rates: bit-exact or not, retransmissions, NAKs, timeouts, efficiency.
3. ``network``: the digits MLP (quantized for each preset's PE kind, `tessera.generators.infer`)
   on each board preset at its board's clock and baud: images per second of board time on the
   virtual board and the modelled line, the share of it on the link, link time and bytes per
   image, accuracy and bit-exactness against the reference over the 450 test images (golden);
   and, on the modelled line, the same at 115200 baud (every preset's rate before the board
   presets took their bridge's best, docs/link.md "Baud rates"): link and compute time per
   image before and after.

Writes ``benchmarks/results/link.{json,md,png}``. Usage::

    .venv/bin/python benchmarks/link.py [--part efficiency|errors|network|all]
        [--presets icebreaker,ulx3s,...] [--images N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

#: Where `benchmarks/seeds.core_builds` keeps each board preset's builds (nextpnr seeds 1, 2, 3
#: of the board top with the framed link; made by `benchmarks/skeleton.py`, `fp_exact.py`,
#: `ternary.py` and `tessera build`): the table's last column reads them, not this script.
BUILD_FOLDERS = {
    "icebreaker": "skeleton/icebreaker-icebreaker-s{}",
    "icebreaker-fp8": "fp_exact/icebreaker-fp8-icebreaker-s{}",
    "ternary": "ternary/presets/ternary-icebreaker-s{}",
    "ulx3s": "skeleton/ulx3s-ulx3s-85f-s{}",
    "ulx3s-fp8": "fp_exact/ulx3s-fp8-ulx3s-85f-s{}",
    "int8-8x8": "presets/int8-8x8-ulx3s-85f-s{}",
}


def part_builds(res):
    """The board builds of the presets, from their build folders (resources of seed 1, Fmax the
    median of the seeds): kept in the results, so the table renders without the folders."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import seeds as S
    root = Path(__file__).resolve().parent.parent / "build" / "bench"
    built = res.setdefault("built", {})
    for preset, board in PRESETS:
        try:
            r = S.core_builds(preset, board, lambda s: root / BUILD_FOLDERS[preset].format(s),
                              build=False)
        except RuntimeError:
            continue
        unit = "LCs" if board == "icebreaker" else "LUTs"
        built[preset] = (f"{r['luts']} / {r['luts_total']} {unit}, {S.mhz(r, 2)} MHz "
                         f"(median of seeds 1-3)")


#: Board presets and the board each one is for (the default int8-8x8, a `stream` core listed
#: for the ULX3S 85F, builds a board top like the others).
PRESETS = [("icebreaker", "icebreaker"), ("icebreaker-fp8", "icebreaker"),
           ("ternary", "icebreaker"), ("ulx3s", "ulx3s-85f"), ("ulx3s-fp8", "ulx3s-85f"),
           ("int8-8x8", "ulx3s-85f")]


def say(m):
    print(m, file=sys.stderr, flush=True)


async def _open(spec, cfg, board):
    from tessera.fpga import deploy
    port = await deploy.open_port(spec, cfg, board, progress=say)
    drv = await deploy.connect(port, cfg)
    return port, drv


async def _timed(port, coro):
    st = port.transport.stats
    t0, p0 = port.board_time(), st.payload_out + st.payload_in
    await coro
    return port.board_time() - t0, st.payload_out + st.payload_in - p0


async def _efficiency(spec, cfg, board):
    from tessera.sim.layout import pack_words
    port, drv = await _open(spec, cfg, board)
    line = port.baud / 10
    try:
        rng = np.random.default_rng(0)
        operands = [s for s in drv.info.stores if s.role != "result"]
        big = max(operands, key=lambda s: s.depth * s.word_bytes)
        res = drv.info.store("c")
        words = rng.integers(0, 1 << big.lane_bits, size=(big.depth, big.lanes),
                             dtype=np.uint64)
        cmd = bytes([3, big.id, 0, 0]) + big.depth.to_bytes(2, "little") + \
            pack_words(words, big.lane_bits)

        async def write_large():
            await port.transport.send(cmd)
            await port.transport.flush()
        s, p = await _timed(port, write_large())
        assert await port.transport.recv(1) == b"\x00"
        out = {"write_large": {"bytes": p, "s": s, "efficiency": p / s / line}}
        s, p = await _timed(port, drv.read("c", 0, res.depth))
        out["read_large"] = {"bytes": p, "s": s, "efficiency": p / s / line}
        for name, make in (("status", lambda: drv.status()),
                           ("write_word", lambda: drv.write(big.name, 0, words[:1])),
                           ("read_word", lambda: drv.read(big.name, 0, 1))):
            total_s = total_p = 0
            for _ in range(10):
                s, p = await _timed(port, make())
                total_s, total_p = total_s + s, total_p + p
            out[name] = {"bytes": total_p / 10, "s": total_s / 10,
                         "efficiency": total_p / total_s / line}
        out.update(spec=spec, board=port.board.name, preset=cfg.core.name, baud=port.baud,
                   clk_hz=port.clk_hz, max_payload=port.transport.info.max_payload,
                   store_written=big.name)
        return out
    finally:
        port.close()


def part_efficiency(res):
    from tessera.generators.config import load_config
    rows = []
    for preset, board in (("icebreaker", "icebreaker"), ("int8-4x4", "ulx3s-85f")):
        cfg = load_config(preset)
        for spec in ("sim:verilator", "sim:golden"):
            say(f"[link] efficiency: {preset} on {board} via {spec}")
            rows.append(asyncio.run(_efficiency(spec, cfg, board)))
    res["efficiency"] = rows


async def _noisy_gemm(cfg, board, rate, seed):
    from tessera.sim.framing import NoisyPipe
    from tessera.sim.workloads import gemm_operands, reference_gemm
    port, drv = await _open("sim:verilator", cfg, board)
    try:
        noisy = NoisyPipe(port.pipe, flip=rate, drop=rate / 2, garbage=rate / 4, seed=seed,
                          per_byte=True)
        port.transport.pipe = noisy
        port.transport.retries = 16
        st = port.transport.stats
        t0, w0, p0 = port.board_time(), st.wire_out + st.wire_in, \
            st.payload_out + st.payload_in
        a, b = gemm_operands(cfg, 32, 16, 64, seed=seed)
        error = None
        try:
            got, gs = await drv.gemm(a, b)
            exact = bool(np.array_equal(got, reference_gemm(cfg, a, b, k_split=gs.k_split)))
        except Exception as e:             # a link that gives up is a result here
            exact, error = False, f"{type(e).__name__}: {e}"
        seconds = port.board_time() - t0
        payload = st.payload_out + st.payload_in - p0
        return {"rate": rate, "exact": exact, "error": error, "damaged": dict(noisy.damaged),
                "retransmitted": st.retransmitted, "naks_in": st.naks_in,
                "naks_out": st.naks_out, "timeouts": st.timeouts, "refused_in": st.refused_in,
                "wire_bytes": st.wire_out + st.wire_in - w0, "payload_bytes": payload,
                "board_s": seconds, "efficiency": payload / seconds / (port.baud / 10)}
    finally:
        port.close()


def part_errors(res):
    from tessera.generators.config import load_config
    cfg = load_config("icebreaker")
    rows = []
    for rate in (0.0, 1e-4, 3e-4, 1e-3, 3e-3):
        say(f"[link] errors: line noise {rate:g} per byte")
        rows.append(asyncio.run(_noisy_gemm(cfg, "icebreaker", rate, seed=1)))
    res["errors"] = rows


def part_network(res, presets, images):
    from tessera.fpga import deploy
    from tessera.generators.config import load_config
    from tessera.generators.infer import compile_model, load_data
    calib, x, y = load_data("digits")
    rows = [r for r in res.get("network", []) if r["preset"] not in presets]
    for preset, board in PRESETS:
        if preset not in presets:
            continue
        cfg = load_config(preset)
        say(f"[link] network: digits-mlp on {preset} ({board})")
        try:
            q, _, _ = compile_model("digits-mlp", cfg, calib)
        except Exception as e:
            rows.append({"preset": preset, "board": board, "error": f"{type(e).__name__}: {e}"})
            continue
        g = deploy.run_network("sim:golden", cfg, board, q, x, y, batch=50)
        t0 = time.perf_counter()
        v = deploy.run_network("sim:verilator", cfg, board, q, x, y, images=images,
                               batch=min(50, images), progress=say)
        v_wall = time.perf_counter() - t0
        gv = deploy.run_network("sim:golden", cfg, board, q, x, y, images=images,
                                batch=min(50, images))
        from dataclasses import replace
        slow = replace(cfg, host=replace(cfg.host, baud=115200))
        gb = deploy.run_network("sim:golden", slow, board, q, x, y, batch=50)
        for r in (g, v, gv, gb):
            r.pop("classes")
        rows.append({"preset": preset, "board": board, "pe": cfg.pe.name,
                     "array": f"{cfg.rows}x{cfg.cols}", "clk_mhz": v["clk_hz"] / 1e6,
                     "baud": v["baud"], "golden_all": g, "verilator": v,
                     "golden_same_images": gv, "golden_115200": gb,
                     "verilator_wall_s": v_wall})
        res["network"] = rows
    res["network"] = sorted(rows, key=lambda r: [p for p, _ in PRESETS].index(r["preset"]))


def _before(r):
    b = r.get("golden_115200")
    if not b:
        return "-"
    return f"{b['images_per_s']:.2f}, {1e3 * b['link_s_per_image']:.1f}"


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f} %"


def table(res):
    out = ["# The framed host link", "",
           "Made by `benchmarks/link.py`. Frames: SYNC, TYPE, SEQ, LEN, header CRC-16, payload, "
           "payload CRC-16 (docs/link.md); go-back-N over byte offsets. Board time: simulated "
           "cycles with activity / core clock on the virtual board (`sim:verilator`: the board "
           "top's Verilog, UART bit by bit), modelled line time + RUN cycles on `sim:golden`. "
           "Each preset at its own baud (iCEBreaker 3 Mbaud, ULX3S 1.2 Mbaud: docs/link.md, "
           "'Baud rates'). Efficiency = payload bytes / s over line bytes / s "
           "(baud / 10); GLIP's UART backend reaches 99.5 %.", ""]
    if res.get("efficiency"):
        out += ["## Link efficiency", "",
                "| board | core | via | baud | frame payload | large WRITE | large READ | STATUS | "
                "1-word WRITE | 1-word READ |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["efficiency"]:
            out.append(
                f"| {r['board']} | {r['preset']} | {r['spec']} | {r.get('baud', '-')} | "
                f"{r['max_payload']} | "
                f"{_pct(r['write_large']['efficiency'])} ({r['write_large']['bytes']} B) | "
                f"{_pct(r['read_large']['efficiency'])} ({r['read_large']['bytes']} B) | "
                f"{_pct(r['status']['efficiency'])} | {_pct(r['write_word']['efficiency'])} | "
                f"{_pct(r['read_word']['efficiency'])} |")
        out.append("")
    if res.get("errors"):
        out += ["## Error injection (virtual icebreaker, 32x16x64 GEMM)", "",
                "Line noise on both directions, per byte: a flipped bit with probability p, a "
                "lost byte p/2, 1-8 garbage bytes p/4.", "",
                "| p | damage (flip/drop/garbage) | result | retransmitted B | NAKs in/out | "
                "timeouts | efficiency |", "|---|---|---|---|---|---|---|"]
        for r in res["errors"]:
            d = r["damaged"]
            result = "bit-exact" if r["exact"] else (r["error"] or "MISMATCH")[:80]
            out.append(f"| {r['rate']:g} | {d['flip']}/{d['drop']}/{d['garbage']} | {result} | "
                       f"{r['retransmitted']} | {r['naks_in']}/{r['naks_out']} | "
                       f"{r['timeouts']} | {_pct(r['efficiency'])} |")
        out.append("")
    if res.get("network"):
        out += ["## Digits MLP on each board preset (virtual board, board clock and baud)", "",
                "| preset | board | PE | array | clock | baud | images/s (virtual) | "
                "images/s (golden) | link share | link ms/image | compute ms/image | "
                "line bytes/image | at 115200 baud: images/s, link ms/image (golden) | "
                "accuracy (450, golden) | = reference | sim wall s/image | board top built |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["network"]:
            if "error" in r:
                out.append(f"| {r['preset']} | {r['board']} | {r['error'][:60]} ||||||||||||")
                continue
            v, g = r["verilator"], r["golden_all"]
            out.append(
                f"| {r['preset']} | {r['board']} | {r['pe']} | {r['array']} | "
                f"{r['clk_mhz']:g} MHz | {r['baud']} | {v['images_per_s']:.2f} | "
                f"{r['golden_same_images']['images_per_s']:.2f} | {_pct(v['link_share'])} | "
                f"{1e3 * v['link_s_per_image']:.2f} | "
                f"{1e3 * (1 / v['images_per_s'] - v['link_s_per_image']):.3f} | "
                f"{v['wire_bytes_per_image']:.0f} | {_before(r)} | "
                f"{_pct(g['accuracy'])} | {g['equal_to_reference']}/{g['images']} "
                f"(virtual: {v['equal_to_reference']}/{v['images']}) | "
                f"{r['verilator_wall_s'] / v['images']:.2f} | "
                f"{res.get('built', {}).get(r['preset']) or '-'} |")
        out.append("")
    return "\n".join(out)


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    effs = [r for r in res.get("efficiency", []) if r["spec"] == "sim:verilator"]
    kinds = ["write_large", "read_large", "status", "write_word", "read_word"]
    for i, r in enumerate(effs):
        ax.bar(np.arange(len(kinds)) + 0.4 * i, [100 * r[k]["efficiency"] for k in kinds],
               0.4, label=f"{r['board']} ({r['max_payload']} B frames)")
    ax.axhline(95, color="k", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(kinds)) + 0.2, ["WRITE\nlarge", "READ\nlarge", "STATUS",
                                                 "WRITE\n1 word", "READ\n1 word"])
    ax.set_ylabel("payload / line rate (%)")
    ax.set_title("link efficiency (virtual board, each preset's baud)")
    ax.legend(fontsize=8)
    ax = axes[1]
    rows = [r for r in res.get("network", []) if "error" not in r]
    if rows:
        names = [r["preset"] for r in rows]
        ips = [r["verilator"]["images_per_s"] for r in rows]
        share = [r["verilator"]["link_share"] for r in rows]
        ax.bar(names, ips, color="tab:blue")
        for i, (v, s) in enumerate(zip(ips, share)):
            ax.text(i, v, f"{100 * s:.0f} %\nlink", ha="center", va="bottom", fontsize=7)
        ax.set_ylim(0, 1.2 * max(ips))
        ax.set_ylabel("images / s (board time)")
        ax.set_title("digits MLP on the virtual board")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("efficiency", "errors", "network", "all", "table"),
                    default="all")
    ap.add_argument("--presets", default=",".join(p for p, _ in PRESETS))
    ap.add_argument("--images", type=int, default=50,
                    help="images on the virtual board per preset (accuracy: all 450, golden)")
    args = ap.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "link.json"
    res = json.loads(out.read_text()) if out.exists() else {}
    if args.part in ("efficiency", "all"):
        part_efficiency(res)
        out.write_text(json.dumps(res, indent=1))
    if args.part in ("errors", "all"):
        part_errors(res)
        out.write_text(json.dumps(res, indent=1))
    if args.part in ("network", "all"):
        part_network(res, args.presets.split(","), args.images)
        out.write_text(json.dumps(res, indent=1))
    part_builds(res)
    out.write_text(json.dumps(res, indent=1))
    (RESULTS / "link.md").write_text(table(res) + "\n")
    plot(res, RESULTS / "link.png")
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
