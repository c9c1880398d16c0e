"""Deploying a core: open a board's port (a serial device, or a virtual board), then run a GEMM,
layers or a quantized network over the framed link, with accuracy, images per second and the
time the link takes. The logic of ``tessera run``.

Ports (:func:`open_port`):

* ``/dev/ttyUSB1`` (any serial device): a programmed board;
* ``sim:verilator``: the config's board top (`tessera.fpga.top.LinkTop`: UART, framed link,
  core) under Verilator at the board's clock and baud rate, behind a pseudo-terminal that the
  host opens exactly like a serial device (`tessera.sim.vsim.VerilatorPty` in board mode: the
  UART runs bit by bit in the C++ harness); the host's clock is the simulated one, so its
  timeouts are in board time;
* ``sim:golden``: the framer's golden twin in front of the golden core on a modelled line
  (`tessera.sim.framing.GoldenBoard`): instant, and its times are the line's.

The same host code runs on each: `tessera.sim.framing.FramedTransport` over a pipe, and the
driver (`tessera.sim.driver.TesseraDriver`) over that. Times: on a serial port, wall time; on
``sim:verilator``, the simulated cycles with activity divided by the core clock (what the board
takes with an instant host; the simulation's own speed is reported apart); on ``sim:golden``,
the modelled line time plus the RUN cycles.

Every failure a user can cause raises `DeployError` or a `tessera.sim.framing.LinkError`
(`LinkTimeout`, `LinkCorrupt`) with one line: a missing or busy port, a board that does not
answer (with what was sent), a core other than the config describes, a link that keeps
failing, a model that does not fit the core.
"""

import asyncio
import dataclasses
import time

import numpy as np

from tessera.sim.framing import FramedTransport, LinkError

from .boards import baud_problem, get_board
from .top import link_sizes, pll_plan

__all__ = ["DeployError", "Port", "parse_port", "open_port", "connect", "run_gemm",
           "run_layers", "run_network", "check_model", "check_shapes", "board_problem",
           "format_gemm", "format_layers", "format_network", "SIM_PORTS"]

#: The virtual boards `open_port` knows.
SIM_PORTS = ("sim:golden", "sim:verilator")

class DeployError(RuntimeError):
    """A deployment failure the user can fix; the message is one line."""


def parse_port(spec):
    """``("serial", path)``, ``("golden", None)`` or ``("verilator", None)`` for a port spec.

    Raises
    ------
    DeployError
        For an unknown ``sim:`` port or an empty spec.
    """
    if not isinstance(spec, str) or not spec or "\0" in spec:
        raise DeployError(f"port {spec!r} is not a serial device path; allowed: e.g. "
                          f"/dev/ttyUSB1, or {', '.join(SIM_PORTS)}")
    if spec.startswith("sim:"):
        if spec not in SIM_PORTS:
            raise DeployError(f"port {spec!r} is not a virtual board; allowed: "
                              f"{', '.join(SIM_PORTS)}")
        return spec[4:], None
    return "serial", spec


class _VirtualBoardPipe:
    """The pipe to ``sim:verilator``: its pseudo-terminal (a `SerialPipe`), with the board's
    *simulated* time as the clock. Waiting for bytes lets simulated time pass (the harness
    would otherwise stop while all is quiet), so timeouts, retransmissions and the board's own
    frame timeout happen in board time, whatever the simulation's speed."""

    base_timeout = 0.05

    def __init__(self, serial_pipe, sim, clk_hz):
        self._pipe, self._sim, self.clk_hz = serial_pipe, sim, clk_hz
        self.name = serial_pipe.name
        self.byte_time = serial_pipe.byte_time
        self._cycles = 0

    def now(self):
        self._cycles = self._sim.cycles()[0]
        return self._cycles / self.clk_hz

    async def write(self, data):
        await self._pipe.write(data)

    async def read(self, timeout):
        # The simulation runs on while it has something to do: bytes come in wall time.
        data = await self._pipe.read(0.02)
        if data or timeout <= 0:
            return data
        # Quiet: let board time pass, up to the timeout, a few byte times at a time.
        end = self._cycles + max(1, round(timeout * self.clk_hz))
        step = max(1, round(16 * self.byte_time * self.clk_hz))
        while True:
            total, _ = self._sim.idle(min(step, max(1, end - self._cycles)))
            self._cycles = total
            data = await self._pipe.read(0.002)
            if data or self._cycles >= end:
                return data

    async def idle(self, cycles):
        self._cycles = self._sim.idle(int(cycles))[0]

    def close(self):
        self._pipe.close()


def board_problem(cfg, board):
    """Why the core of ``cfg`` cannot go on ``board`` (one phrase), or None: it certainly does
    not fit (`tessera.fpga.boards.fit_problem`), the board's PLL cannot make its
    ``core.clock_mhz``, or ``host.baud`` cannot be made from that clock. ``host.interface`` does
    not matter: every board top has the framed UART link.

    Returns
    -------
    str or None
    """
    from .boards import fit_problem
    board = get_board(board)
    why = fit_problem(cfg, board)
    if why:
        return f"{cfg.core.name} cannot fit the {board.name}: it {why}"
    try:
        plan = pll_plan(board, cfg.core.clock_mhz * 1e6)
    except ValueError as e:
        return str(e)
    clk_hz = plan.out_hz if plan else board.clk_hz
    why = baud_problem(cfg.host.baud, board, clk_hz)
    if why:
        return f"host.baud: {cfg.host.baud} cannot link the {board.name}: {why}"
    return None


def _clock(cfg, board):
    """The core clock on ``board`` (the PLL's exact output when the config asks for another
    clock than the board's)."""
    hz = cfg.core.clock_mhz * 1e6
    try:
        plan = pll_plan(board, hz)
    except ValueError as e:
        raise DeployError(str(e)) from None
    return plan.out_hz if plan else board.clk_hz


@dataclasses.dataclass
class Port:
    """An open port with the framed link set up (HELLO answered).

    Attributes
    ----------
    spec, kind : str
        As given; ``"serial"``, ``"golden"`` or ``"verilator"``.
    board : fpga.boards.Board
    baud : int
    clk_hz : float
        The core clock.
    transport : FramedTransport
    pipe
        Under the transport.
    sim : object or None
        The `VerilatorPty` of ``sim:verilator``.
    """
    spec: str
    kind: str
    board: object
    baud: int
    clk_hz: float
    transport: FramedTransport
    pipe: object
    sim: object = None

    def board_time(self):
        """Seconds the board has taken so far (see the module docstring for what that is on
        each kind of port).

        Returns
        -------
        float
        """
        if self.kind == "verilator":
            return self.sim.cycles()[1] / self.clk_hz
        return self.pipe.now()

    def close(self):
        try:
            self.transport.close()
        finally:
            if self.sim is not None:
                self.sim.close()


async def open_port(spec, cfg, board, *, baud=None, retries=8, progress=None,
                    build_root="build/vsim"):
    """Open a port and set up the framed link (HELLO); the core is reset by it.

    Parameters
    ----------
    spec : str
        A serial device, ``sim:golden`` or ``sim:verilator``.
    cfg : CoreConfig
        The core's config (duck-typed: ``core``, ``host``, ``engine``, ...).
    board : str or fpga.boards.Board
    baud : int, optional
        Default ``cfg.host.baud``.
    retries : int
        Of the transport.
    progress : callable, optional
        One-line messages (building the virtual board).
    build_root : str
        Cache of virtual-board builds.

    Returns
    -------
    Port

    Raises
    ------
    DeployError
        Bad port spec, a baud rate or clock the board cannot make.
    LinkError
        The port is missing, busy or forbidden; the board does not answer HELLO.
    """
    board = get_board(board)
    kind, path = parse_port(spec)
    baud = cfg.host.baud if baud is None else baud
    clk_hz = _clock(cfg, board)
    why = baud_problem(baud, board, clk_hz)
    if why:
        raise DeployError(f"host.baud: {baud} cannot link the {board.name}: {why}")
    divisor = round(clk_hz / baud)
    say = progress or (lambda line: None)
    sizes = link_sizes(board)
    sim = None
    hint = f"baud {baud}, board {board.name}"
    if kind == "golden":
        from tessera.sim.core import GoldenCore
        from tessera.sim.framing import GoldenBoard, GoldenPipe
        gb = GoldenBoard(GoldenCore(cfg), core_factory=lambda: GoldenCore(cfg), **sizes)
        pipe = GoldenPipe(gb, baud=baud, clk_hz=clk_hz, name=spec)
    elif kind == "verilator":
        from tessera.sim.vsim import VerilatorPty
        from .link import SerialPipe
        from .top import link_top_verilog
        say(f"[deploy] virtual {board.name}: {cfg.core.name} behind its framed UART link at "
            f"{clk_hz / 1e6:g} MHz, {baud} baud ({divisor} cycles per bit)")
        top, text = link_top_verilog(cfg, divisor=divisor, clk_hz=int(clk_hz), **sizes)
        sim = VerilatorPty(cfg, verilog=text, top=top, build_root=build_root, progress=say,
                           uart=divisor, quiet_cycles=4 * 10 * divisor)
        try:
            pipe = _VirtualBoardPipe(SerialPipe(sim.port, baud, clk_hz=clk_hz), sim, clk_hz)
        except BaseException:
            sim.close()
            raise
        pipe.name = f"{spec} ({sim.port})"
    else:
        from .link import SerialPipe
        pipe = SerialPipe(path, baud, clk_hz=clk_hz)
    transport = FramedTransport(pipe, retries=retries, hint=hint)
    try:
        await transport.open()
    except BaseException:
        pipe.close()
        if sim is not None:
            sim.close()
        raise
    return Port(spec=spec, kind=kind, board=board, baud=baud, clk_hz=clk_hz,
                transport=transport, pipe=pipe, sim=sim)


async def connect(port, cfg, *, resident=True):
    """A driver on ``port`` that has checked (INFO) that the core is the one ``cfg`` describes.

    ``resident``: the driver sends only the operand and parameter words that differ from what
    it already wrote in this session (`TesseraDriver` ``resident``), so weights stay on chip
    across batches where no other layer overwrote them.

    Raises
    ------
    DeployError
        Another core answered (one short line naming the fields that differ).
    """
    from tessera.sim.driver import TesseraDriver, VersionError
    # The core's COUNTERS around every layer (not on the golden port: it has no clock).
    drv = TesseraDriver(port.transport, cfg, poll_cycles=1000,
                        count_causes=cfg.core.counters and port.kind != "golden",
                        resident=resident)
    try:
        await drv.connect()
    except VersionError as e:
        if drv.info is None or drv.info.version != cfg.core_info().version:
            raise DeployError(str(e)) from None
        raise DeployError(_mismatch(cfg, drv.info, port.spec)) from None
    return drv


def _mismatch(cfg, info, spec):
    want = cfg.core_info()
    fields = []
    for d in info.differences(want):
        name = d.split(":", 1)[0].split(".", 1)[0]        # "store b.lanes" -> "store b"
        if name not in fields:
            fields.append(name)
    shown = ", ".join(fields[:5]) + (f" and {len(fields) - 5} more" if len(fields) > 5 else "")
    return (f"the core on {spec} is not the one the config {cfg.core.name} describes (differs "
            f"in {shown}); program the bitstream built from this config, or run with the "
            f"config the bitstream was built from")


def _link_figures(port, t0, wire0, payload0, n, cycles):
    """Timing and link figures since (board time ``t0``, wire bytes, payload bytes), per ``n``
    items, of which ``cycles`` were RUN cycles: the rest of the board time is the link's
    (frames on the line, the board's turnaround, the host's polls)."""
    st = port.transport.stats
    seconds = port.board_time() - t0
    wire = st.wire_out + st.wire_in - wire0
    payload = st.payload_out + st.payload_in - payload0
    compute_s = cycles / port.clk_hz
    link_s = max(seconds - compute_s, 0.0)
    return {"board_s": seconds, "compute_s": compute_s, "link_s": link_s,
            "link_share": link_s / seconds if seconds else None,
            "wire_bytes": wire, "payload_bytes": payload,
            "link_efficiency": payload / wire if wire else None,
            "line_s": wire * 10.0 / port.baud,
            "per_item_link_s": link_s / n if n else None,
            "retransmitted": st.retransmitted, "naks_in": st.naks_in,
            "naks_out": st.naks_out, "timeouts": st.timeouts}


def _run(coro_fn, spec, cfg, board, *, baud=None, retries=8, progress=None,
         build_root="build/vsim", resident=True):
    async def go():
        port = await open_port(spec, cfg, board, baud=baud, retries=retries, progress=progress,
                               build_root=build_root)
        try:
            drv = await connect(port, cfg, resident=resident)
            return await coro_fn(port, drv)
        finally:
            port.close()
    return asyncio.run(go())


def _stats0(port):
    st = port.transport.stats
    return port.board_time(), st.wire_out + st.wire_in, st.payload_out + st.payload_in


def run_gemm(spec, cfg, board, m, n, k, *, seed=0, **kw):
    """One M x N x K GEMM of seeded random operands on the core behind ``spec``, checked
    against the reference.

    Returns
    -------
    dict
        ``mismatches``, ``cycles`` (engine), ``runs``, ``wall_s``, and the link figures
        (``board_s``, ``link_s``, ``link_share``, ``wire_bytes``, ``payload_bytes``,
        ``link_efficiency``, retransmission counters).
    """
    from tessera.sim.workloads import gemm_operands, reference_gemm
    check_shapes(cfg, [(m, n, k)])

    async def body(port, drv):
        a, b = gemm_operands(cfg, m, n, k, seed=seed)
        t0, w0, p0 = _stats0(port)
        wall = time.perf_counter()
        got, st = await drv.gemm(a, b)
        wall = time.perf_counter() - wall
        ref = reference_gemm(cfg, a, b, k_split=st.k_split)
        out = {"m": m, "n": n, "k": k, "mismatches": int(np.count_nonzero(got != ref)),
               "cycles": st.cycles, "runs": st.runs, "wall_s": wall}
        out.update(_link_figures(port, t0, w0, p0, 1, st.cycles))
        return out
    return _run(body, spec, cfg, board, **kw)


def run_layers(spec, cfg, board, cases, *, seed=0, **kw):
    """Layer cases (``[{"name", "layer", "input", "mode"?}]``, as `tessera report --layers`
    gives) with seeded operands, each checked against the engine's layer reference.

    Returns
    -------
    list of dict
        Per case: ``name``, ``mismatches``, ``stats`` (`LayerStats`); plus the link figures of
        the whole run in the last element's ``link``.
    """
    from tessera.sim.layers import layer_from_dict
    from tessera.sim.lowering import run_layer

    async def body(port, drv):
        t0, w0, p0 = _stats0(port)
        out = []
        for i, case in enumerate(cases):
            layer = layer_from_dict(case["layer"])
            x, w = cfg.engine.layer_operands(layer, case["input"], seed=seed + i,
                                             mode=case.get("mode"))
            got, st = await run_layer(drv, layer, x, w, raw=True, mode=case.get("mode"))
            want = cfg.engine.layer_reference(layer, x, w, k_split=st.k_split,
                                              mode=case.get("mode"))
            bad = int(np.count_nonzero(np.asarray(got, np.uint64) != np.asarray(want, np.uint64)))
            out.append({"name": case.get("name", f"layer{i}"), "layer": case["layer"],
                        "mismatches": bad, "stats": st})
        if out:
            out[-1]["link"] = _link_figures(port, t0, w0, p0, len(cases),
                                            sum(o["stats"].cycles for o in out))
        return out
    return _run(body, spec, cfg, board, **kw)


def check_shapes(cfg, shapes, mode=None):
    """Every (M, N, K) GEMM must map onto the scratchpads.

    Raises
    ------
    DeployError
        Naming the GEMM and why.
    """
    mapper = cfg.engine.mapper()
    if not hasattr(mapper, "plan"):
        return
    for m, n, k in shapes:
        kw = -(-k // cfg.pe.layout(mode).k_per_word)
        try:
            mapper.plan(m, n, kw)
        except ValueError as e:
            raise DeployError(f"a {m}x{n}x{k} GEMM does not fit the core {cfg.core.name}: "
                              f"{e}") from None


def check_model(cfg, qnet, batch=1):
    """Refuse a quantized network the core cannot run: another PE kind or formats, a layer
    type the engine lacks, a layer whose GEMM does not map onto the scratchpads.

    Raises
    ------
    DeployError
        One line naming the network, the core and the reason.
    """
    from tessera.sim.layers import LayerError
    try:
        qnet.check_core(cfg)
    except LayerError as e:
        raise DeployError(f"model {qnet.name!r} does not fit the core {cfg.core.name}: "
                          f"{e}") from None
    shape = (batch, *qnet.input_shape)
    for i, ql in enumerate(qnet.layers):
        out = ql.layer.out_shape(shape)
        if ql.on_chip and ql.layer.type == "dense":
            m, n, k = shape[0], out[-1], int(np.prod(shape[1:]))
            try:
                check_shapes(cfg, [(m, n, k)], ql.mode)
            except DeployError as e:
                raise DeployError(f"model {qnet.name!r} does not fit the core "
                                  f"{cfg.core.name}: layer {i} (dense): "
                                  f"{str(e).split(': ', 1)[1]}") from None
        shape = out


def run_network(spec, cfg, board, qnet, x, y=None, *, batch=50, images=None, progress=None,
                on_images=None, **kw):
    """Run a quantized network on images ``x`` on the core behind ``spec``.

    Each image's outputs are compared with the independent reference
    (`tessera.sim.qnet.reference_network`, which the golden core equals bit for bit).

    Parameters
    ----------
    qnet : tessera.sim.qnet.QNet
    x : array
        Float images, N x input shape.
    y : array, optional
        Labels, for the accuracy.
    batch : int
        Images per pass (weights cross the link once per pass).
    images : int, optional
        Only the first ``images``.
    progress : callable, optional
        One-line messages (building the virtual board).
    on_images : callable, optional
        ``on_images(done, total)`` after each batch.

    Returns
    -------
    dict
        ``images``, ``accuracy`` (None without labels), ``reference_accuracy``,
        ``equal_to_reference`` (images), ``images_per_s`` (board time), ``board_s``,
        ``link_s_per_image``, ``link_share``, ``compute_s_per_image`` (RUN cycles / clock),
        ``cycles_per_image``, ``wire_bytes_per_image``, ``payload_bytes_per_image``,
        ``link_efficiency``, ``wall_s`` and ``wall_images_per_s`` (the host's own time, the
        simulation's on a virtual board), retransmission counters, ``port``, ``board``,
        ``clk_hz``, ``baud``.

    Raises
    ------
    DeployError
        The model does not fit the core (checked before the port is opened).
    """
    from tessera.sim.layers import LayerError, describe
    from tessera.sim.qnet import k_splits_of, reference_network
    from tessera.sim.qnet import run_network as qrun
    n = len(x) if images is None else min(images, len(x))
    x = np.asarray(x[:n])
    y = None if y is None else np.asarray(y[:n])
    batch = min(batch, n)
    check_model(cfg, qnet, batch)

    async def body(port, drv):
        t0, w0, p0 = _stats0(port)
        wall = time.perf_counter()
        try:
            res = await qrun(drv, qnet, x, batch=batch, progress=on_images)
        except LayerError as e:
            raise DeployError(f"model {qnet.name!r} does not fit the core {cfg.core.name}: "
                              f"{e}") from None
        wall = time.perf_counter() - wall
        cycles = sum(r.total("cycles") for r in res.records if r.stats)
        out = _link_figures(port, t0, w0, p0, n, cycles)
        return res, wall, out, port

    res, wall, link, port = _run(body, spec, cfg, board, progress=progress, **kw)
    ref = reference_network(qnet, cfg.pe, x, k_splits=k_splits_of(res))
    same = sum(np.array_equal(a, b) for a, b in zip(res.outputs, ref.outputs))
    cycles = sum(r.total("cycles") for r in res.records if r.stats)
    board_s = link["board_s"]
    return {
        "port": spec, "board": port.board.name, "core": cfg.core.name, "model": qnet.name,
        "clk_hz": port.clk_hz, "baud": port.baud, "images": int(n), "batch": int(batch),
        "accuracy": None if y is None else float(np.mean(res.classes == y)),
        "reference_accuracy": None if y is None else float(np.mean(ref.classes == y)),
        "equal_to_reference": int(same),
        "images_per_s": n / board_s if board_s else None,
        "board_s": board_s,
        "link_s_per_image": link["link_s"] / n,
        "link_share": link["link_share"],
        "compute_s_per_image": cycles / port.clk_hz / n,
        "cycles_per_image": cycles / n,
        "wire_bytes_per_image": link["wire_bytes"] / n,
        "payload_bytes_per_image": link["payload_bytes"] / n,
        "link_efficiency": link["link_efficiency"],
        "wall_s": wall, "wall_images_per_s": n / wall if wall else None,
        "retransmitted": link["retransmitted"], "naks_in": link["naks_in"],
        "naks_out": link["naks_out"], "timeouts": link["timeouts"],
        "classes": res.classes.tolist(),
        "layers": [{"index": r.index, "layer": describe(r.layer),
                    "counters": _sum_counters(r.stats)} for r in res.records if r.stats],
    }


def _sum_counters(stats):
    """A layer's COUNTERS over all its batches (a dict), or None if they were not read."""
    if not stats or stats[0].counters is None:
        return None
    c = stats[0].counters
    for s in stats[1:]:
        c = c + s.counters
    return c.as_dict()


# -- what `tessera run` prints ----------------------------------------------------------------

def _ms(seconds):
    return f"{seconds * 1e3:.1f} ms"


def _time_note(port_kind):
    return {"golden": "modelled line + RUN cycles",
            "verilator": "simulated board time"}.get(port_kind, "wall time")


def format_gemm(r, *, port, board):
    """The lines `tessera run --gemm` prints for a `run_gemm` result."""
    kind = parse_port(port)[0]
    ok = "bit-exact" if r["mismatches"] == 0 else f"{r['mismatches']} mismatches"
    return "\n".join([
        f"{r['m']}x{r['n']}x{r['k']} GEMM on {board} ({port}): {r['cycles']} cycles in "
        f"{r['runs']} runs, {ok}",
        f"  {_ms(r['board_s'])} ({_time_note(kind)}): {_ms(r['link_s'])} on the link "
        f"({100 * r['link_share']:.1f} %), {r['payload_bytes']} payload bytes in "
        f"{r['wire_bytes']} line bytes, {r['retransmitted']} resent"])


def format_layers(rows, *, port, board):
    """The table `tessera run --layers` prints for a `run_layers` result."""
    from tessera.sim.layers import describe, layer_from_dict
    kind = parse_port(port)[0]
    lines = [f"{'layer':<16} {'':<30} {'runs':>5} {'cycles':>9} {'util':>7} {'to core':>8} "
             f"{'from core':>9}  result"]
    for row in rows:
        st = row["stats"]
        util = f"{100 * st.utilization:6.1f}%" if st.utilization else "      -"
        layer = row.get("layer")
        what = describe(layer_from_dict(layer)) if layer else ""
        ok = "bit-exact" if row["mismatches"] == 0 else f"{row['mismatches']} mismatches"
        lines.append(f"{row['name']:<16} {what:<30} {st.runs:>5} {st.cycles:>9} {util} "
                     f"{st.bytes_out:>8} {st.bytes_in:>9}  {ok}")
    link = rows[-1]["link"] if rows else None
    if link:
        lines.append(f"on {board} ({port}): {_ms(link['board_s'])} ({_time_note(kind)}), "
                     f"{100 * link['link_share']:.1f} % on the link")
    return "\n".join(lines)


def format_network(r):
    """The lines `tessera run MODEL` prints for a `run_network` result."""
    from tessera.sim.driver import Counters, breakdown_lines
    kind = parse_port(r["port"])[0]
    acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f} %"
    return "\n".join([
        f"{r['model']} on {r['core']} ({r['board']}, {r['port']}): {r['images']} images, "
        f"accuracy {acc}, {r['equal_to_reference']}/{r['images']} equal to the reference",
        f"  {r['images_per_s']:.2f} images/s ({_time_note(kind)} at {r['clk_hz'] / 1e6:g} MHz, "
        f"{r['baud']} baud); per image: link {_ms(r['link_s_per_image'])} "
        f"({100 * r['link_share']:.1f} %), compute {_ms(r['compute_s_per_image'])}, "
        f"{r['wire_bytes_per_image']:.0f} line bytes",
        f"  link efficiency {100 * r['link_efficiency']:.1f} % (payload / line bytes); "
        f"{r['retransmitted']} bytes resent, {r['naks_in']} NAKs in, {r['timeouts']} timeouts; "
        f"host wall time {r['wall_s']:.1f} s ({r['wall_images_per_s']:.1f} images/s)",
        *breakdown_lines([(x["index"], x["layer"], Counters(**x["counters"]))
                          for x in r.get("layers", []) if x.get("counters")], r["images"])])
