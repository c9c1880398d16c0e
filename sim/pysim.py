"""Run the host driver against a core in Amaranth's own simulator (the fast unit-test tier)."""


from amaranth.sim import Simulator


__all__ = ["AmaranthTransport", "run_with_driver"]


class AmaranthTransport:
    """Byte transport over a core's ``i``/``o`` streams inside an Amaranth async testbench."""

    def __init__(self, ctx, dut, *, timeout_cycles=200_000):
        self.ctx, self.dut = ctx, dut
        self.timeout_cycles = timeout_cycles

    async def send(self, data):
        ctx, i = self.ctx, self.dut.i
        for byte in data:
            ctx.set(i.payload, int(byte))
            ctx.set(i.valid, 1)
            for _ in range(self.timeout_cycles):
                _, _, ready = await ctx.tick().sample(i.ready)
                if ready:
                    break
            else:
                raise TimeoutError("core did not accept a command byte")
        ctx.set(i.valid, 0)

    async def recv(self, n):
        ctx, o = self.ctx, self.dut.o
        ctx.set(o.ready, 1)
        out = bytearray()
        waited = 0
        while len(out) < n:
            _, _, valid, payload = await ctx.tick().sample(o.valid, o.payload)
            if valid:
                out.append(payload)
                waited = 0
            else:
                waited += 1
                if waited > self.timeout_cycles:
                    raise TimeoutError(f"core answered {len(out)} of {n} expected bytes")
        ctx.set(o.ready, 0)
        return bytes(out)

    async def idle(self, cycles):
        await self.ctx.tick().repeat(cycles)


def run_with_driver(dut, body, *, vcd=None):
    """Simulate ``dut`` and run ``await body(transport)`` as its testbench; return its result."""
    result = {}

    async def bench(ctx):
        result["value"] = await body(AmaranthTransport(ctx, dut))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return result.get("value")


