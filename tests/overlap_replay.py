"""Replaying a driver's real message sequence on the golden core as a timeline on a link: the
independent check of `tessera.sim.perf`'s overlap (ping-pong) schedules.

Expected values never come from `predict`: the bytes are what the driver sent and received on
the golden core, the time a timeline of the driver's own messages (each message's line time
from `Link`, each RUN's cycles from the golden core, a held RUN starting when the previous
one completes, the wait's one poll sent when the last RUN completes).
"""

import asyncio
import warnings

from tessera.hdl.ctrl.protocol import Op
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver


class Recorder:
    """Transport wrapper: every message as ``[opcode, command bytes, reply bytes, RUN cycles,
    sent by wait()]``."""

    def __init__(self, inner):
        self.inner, self.msgs, self.waiting = inner, [], False

    async def send(self, data):
        data = bytes(data)
        await self.inner.send(data)
        cycles = self.inner.core.cycles if data[0] == Op.RUN else 0
        self.msgs.append([data[0], len(data), 0, cycles, self.waiting])

    async def recv(self, n):
        out = await self.inner.recv(n)
        self.msgs[-1][2] += len(out)
        return out

    async def idle(self, cycles):
        return await self.inner.idle(cycles)


def recording_driver(cfg, *, overlap=True):
    """A driver on the golden core whose messages a `Recorder` keeps (those wait() sends
    marked): (recorder, driver)."""
    rec = Recorder(GoldenTransport(GoldenCore(cfg)))
    drv = TesseraDriver(rec, cfg, overlap=overlap)
    wait = drv.wait

    async def marked_wait():
        rec.waiting = True
        try:
            return await wait()
        finally:
            rec.waiting = False
    drv.wait = marked_wait
    return rec, drv


def drive(cfg, layer, shape, *, epilogue=None, overlap=True, seed=0, mode=None):
    """Run ``layer`` through the driver on the golden core: (messages, LayerStats)."""
    x, w = cfg.engine.layer_operands(layer, list(shape), kind="random", seed=seed, mode=mode)
    rec, drv = recording_driver(cfg, overlap=overlap)

    async def go():
        await drv.connect()
        rec.msgs.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = {"epilogue": epilogue} if epilogue else {}
            return (await drv.run_layer(layer, x, w, raw=True, mode=mode, **kw))[1]
    stats = asyncio.run(go())
    return rec.msgs, stats


def timeline(msgs, link, clk, *, answer_at_start=True):
    """Seconds of the recorded message sequence: the host sends one message after another; a
    command takes its line time (and the board top's cycles) to reach the core, its answer
    leaves when the core gives it; a RUN starts when it arrives or when the RUN before
    completes, whichever is later, and is answered then (``answer_at_start=False``: when it
    completes, the sequential figure's and the virtual board's convention); wait()'s poll is
    sent once the last RUN has completed (one poll)."""
    def q(n):
        return link.wire_bytes([n]) * 10 / link.baud + link.turnaround_cycles([n], [0]) / clk

    def r(n):
        return link.wire_bytes([n]) * 10 / link.baud + link.turnaround_cycles([0], [n]) / clk
    t = free = 0.0
    for op, cmd, reply, cycles, waiting in msgs:
        if op == Op.RUN:
            start = max(t + q(cmd), free)
            free = start + cycles / clk
            t = (start if answer_at_start else free) + r(reply)
        elif op == Op.STATUS and waiting:
            t = max(t, free) + q(cmd) + r(reply)
        else:
            t += q(cmd) + r(reply)
    return max(t, free)


def sent(msgs):
    return sum(m[1] for m in msgs), sum(m[2] for m in msgs)
