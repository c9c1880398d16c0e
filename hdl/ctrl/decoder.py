"""Command decoder: parses host command bytes, moves scratchpad data, answers every command."""

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.ctrl.protocol import COMMANDS, COUNTERS_BYTES, Err, Op, STATUS_BYTES, command
from tessera.hdl.engine.base import RunSignature, StorePortSignature


__all__ = ["CommandDecoder"]


class CommandDecoder(wiring.Component):
    """Byte-stream command decoder (command set `VERSION`, docs/commands.md), table-driven.

    Opcodes, argument lengths and field offsets come from `protocol.COMMANDS`; the stores,
    their word sizes and depths from the `Geometry`; RUN's engine arguments from the engine's
    `ArgLayout`. Every command gets exactly one response that starts with a status byte. A
    malformed command never stalls the decoder: an unknown opcode is answered at once, a WRITE
    to a bad region still consumes (and drops) its data bytes, and STATUS is answered in every
    state in which the decoder waits for a command, including while a RUN executes.

    Parameters
    ----------
    geometry : Geometry
        The stores (`tessera.hdl.ctrl.memmap`).
    info : bytes
        The INFO payload (`protocol.CoreInfo.pack()`), of any length: it is sent from a
        constant table indexed by a byte counter, so its length costs table logic, not a
        shift register.
    engine_args : ArgLayout
        The engine's RUN argument layout.
    engine_code : int
        The engine id RUN must name.
    counters : bool
        Answer COUNTERS from ``run.counters`` (otherwise its opcode is unknown).
    read_register : bool
        Register each store's read data as it leaves the store (nothing between the block
        RAM and the register) and load the READ word from there, one cycle later: the block
        RAM's slow clock-to-output then drives no logic.

    Members
    -------
    i : In(stream.Signature(8))
        Command bytes from the host.
    o : Out(stream.Signature(8))
        Response bytes to the host.
    error : Out(1)
        An error was reported and not yet read by STATUS.
    run : Out(RunSignature(8 * engine_args.nbytes))
        RUN start and arguments to the RUN front end; busy, check result and cycles back.
    port_<store> : Out(StorePortSignature(depth, word_bits)), one per store
        Host reads and writes (the core gives them the store while no RUN executes).
    """

    def __init__(self, *, geometry, info, engine_args, engine_code, counters=False,
                 read_register=False):
        self._read_register = bool(read_register)
        self._geometry = geometry
        self._info = bytes(info)
        self._engine_args = engine_args
        self._engine_code = engine_code
        self._counters = bool(counters)
        self._run_bytes = command(Op.RUN).args.nbytes + engine_args.nbytes
        members = {
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
            "error": Out(1),
            "run": Out(RunSignature(8 * engine_args.nbytes, counters=counters)),
        }
        for s in geometry.stores:
            members[f"port_{s.name}"] = Out(StorePortSignature(depth=s.words, width=s.word_bits))
        super().__init__(members)

    def _nargs(self, c):
        return c.args.nbytes + (self._engine_args.nbytes if c.engine_args else 0)

    def elaborate(self, platform):
        m = Module()
        stores = self._geometry.stores
        wbytes = [s.word_bytes for s in stores]
        max_args = max(self._nargs(c) for c in COMMANDS)
        # The longest response held in `resp` (INFO has its own table).
        resp_max = max(STATUS_BYTES, COUNTERS_BYTES if self._counters else 0)
        # INFO (status byte first) from a block RAM ROM: its synchronous read port is
        # addressed with the index of the byte sent next, so the byte is there when needed;
        # the index is back at 0 whenever INFO is not being sent.
        info_bytes = bytes([Err.OK]) + self._info
        # (yosys would otherwise build a ROM this small from logic cells)
        m.submodules.info_rom = info_rom = memory.Memory(
            shape=8, depth=len(info_bytes), init=list(info_bytes),
            attrs={"ram_style": "block", "rom_style": "block"})
        info_rd = info_rom.read_port()
        info_idx = Signal(range(len(info_bytes)))
        info_next = Signal.like(info_idx)
        m.d.comb += [info_next.eq(info_idx), info_rd.addr.eq(info_next)]
        m.d.sync += info_idx.eq(info_next)
        # One register holds, in turn, a command's argument bytes, a WRITE's incoming word and
        # the response: they are never needed at the same time (the engine and the output stage
        # latch a RUN's arguments when it starts; EXEC latches a region's fields; a WRITE's
        # last word goes to its store in the cycle the response is loaded, WEND). A READ's
        # outgoing word has its own register, loaded straight from the store's read port
        # (the core's critical path: block RAM, then the store select).
        buf = Signal(8 * max(max_args, resp_max, max(wbytes)))
        args = resp = word = buf
        obuf = Signal(8 * max(wbytes))
        arg_idx = Signal(range(max_args + 1))
        nargs = Signal(range(max_args + 1))
        opcode = Signal(8)
        spad = Signal(8)
        addr = Signal(17)
        count = Signal(16)
        byte_idx = Signal(range(max(wbytes) + 1))
        rsel = Signal(len(stores))     # one-hot: the store a READ reads (set by EXEC)
        wr_pending = Signal()
        discard = Signal()
        pend_err = Signal(8)
        resp_len = Signal(range(resp_max + 1))
        then_read = Signal()
        last_error = Signal(8)

        region = command(Op.WRITE).args
        assert region == command(Op.READ).args

        def fld(layout, name, base=0):
            lo, hi = layout.bit_slice(name)
            return args[base + lo:base + hi]

        f_spad, f_addr, f_count = (fld(region, n) for n in ("spad", "addr", "count"))
        run_head = command(Op.RUN).args
        f_engine = fld(run_head, "engine")
        f_banks = fld(run_head, "banks")
        f_chain = fld(run_head, "chain")
        run_banks = Signal(8)      # the banks of the RUN the decoder started last
        run_chain = Signal(8)      # and its chain target (id + 1; 0: none)
        m.d.comb += [
            self.run.args.eq(args[8 * run_head.nbytes:8 * self._run_bytes]),
            self.run.banks.eq(f_banks),
            self.run.chain.eq(f_chain),
            self.error.eq(last_error != 0),
        ]
        with m.If(self.run.start):
            m.d.sync += [run_banks.eq(f_banks), run_chain.eq(f_chain)]
        targets = [s.id + 1 for s in self._geometry.chain_targets]
        banked_mask = sum(1 << s.id for s in stores if s.banks > 1)
        # A RUN header byte this core has no use for (no store of two banks, no chain
        # target) must be 0; it is checked as it arrives, so its bits need no register.
        hdr_bad = Signal()
        hdr_checks = []
        if banked_mask:
            # RUN bank bits a store of one bank (or no store) may not set.
            bad_banks = (f_banks & ~banked_mask & 0xFF) != 0
        else:
            bad_banks = Const(0, 1)
            hdr_checks.append(run_head.offset("banks"))
        if targets:
            bad_chain = f_chain != 0
            for t in targets:
                bad_chain = bad_chain & (f_chain != t)
        else:
            bad_chain = Const(0, 1)
            hdr_checks.append(run_head.offset("chain"))

        def of_store(sel, values):
            """``values[i]`` for the store whose id is ``sel`` (the last one otherwise)."""
            out = values[-1]
            for i in reversed(range(len(values) - 1)):
                out = Mux(sel == i, values[i], out)
            return out

        def respond(code, *, payload=None, length=1, read_after=False):
            """Load the response buffer with status ``code`` (+ ``payload``) and send it."""
            value = Cat(Const(code, 8), payload) if payload is not None else code
            stmts = [resp.eq(value),
                     resp_len.eq(length), then_read.eq(read_after)]
            if isinstance(code, int):
                if code != Err.OK:
                    stmts.append(last_error.eq(code))
            else:
                with m.If(code != 0):
                    m.d.sync += last_error.eq(code)
            m.d.sync += stmts
            m.next = "RESP"

        # Store writes happen the cycle after a word's last byte arrives.
        m.d.sync += wr_pending.eq(0)
        for s in stores:
            port = getattr(self, f"port_{s.name}")
            m.d.comb += [port.w_addr.eq(addr), port.w_data.eq(word[:s.word_bits]),
                         port.w_en.eq(wr_pending & (spad == s.id)), port.r_addr.eq(addr)]
        with m.If(wr_pending):
            m.d.sync += addr.eq(addr + 1)


        # Each store's read data as the READ word's source: the port itself, or a register
        # loaded every cycle straight from it (`read_register`).
        rq = {}
        for s in stores:
            data = getattr(self, f"port_{s.name}").r_data
            if self._read_register:
                rq[s.name] = Signal.like(data, name=f"rq_{s.name}")
                m.d.sync += rq[s.name].eq(data)
            else:
                rq[s.name] = data

        with m.FSM():
            with m.State("OP"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [opcode.eq(self.i.payload), arg_idx.eq(0), hdr_bad.eq(0)]
                    with m.Switch(self.i.payload):
                        for c in COMMANDS:
                            if c.response == "counters" and not self._counters:
                                continue            # not built: an unknown opcode
                            with m.Case(c.op):
                                if self._nargs(c):
                                    m.d.sync += nargs.eq(self._nargs(c))
                                    m.next = "ARGS"
                                elif c.response == "info":
                                    m.next = "INFO"      # info_idx is 0: byte 0 is read
                                elif c.response == "status":
                                    m.d.sync += [
                                        resp.eq(Cat(Const(Err.OK, 8), self.run.busy,
                                                    last_error != 0, Const(0, 6), last_error,
                                                    self.run.cycles, self.run.prev_cycles)),
                                        resp_len.eq(STATUS_BYTES), then_read.eq(0),
                                        last_error.eq(0),
                                    ]
                                    m.next = "RESP"
                                elif c.response == "counters":
                                    # A snapshot: the counters run on while it is sent.
                                    m.d.sync += [
                                        resp.eq(Cat(Const(Err.OK, 8), self.run.counters)),
                                        resp_len.eq(COUNTERS_BYTES), then_read.eq(0),
                                    ]
                                    m.next = "RESP"
                                else:  # pragma: no cover - the table has no such command
                                    raise ValueError(f"command {c.name} has no behaviour")
                        with m.Default():
                            respond(Err.OPCODE)
            with m.State("ARGS"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    for off in hdr_checks:
                        with m.If((opcode == Op.RUN) & (arg_idx == off)
                                  & (self.i.payload != 0)):
                            m.d.sync += hdr_bad.eq(1)
                    m.d.sync += [args.word_select(arg_idx, 8).eq(self.i.payload),
                                 arg_idx.eq(arg_idx + 1)]
                    with m.If(arg_idx == nargs - 1):
                        m.next = "EXEC"
            with m.State("EXEC"):
                m.d.sync += [spad.eq(f_spad), addr.eq(f_addr), count.eq(f_count),
                             byte_idx.eq(0), discard.eq(0), pend_err.eq(Err.OK),
                             rsel.eq(Cat(f_spad == s.id for s in stores))]
                bad_spad = f_spad >= len(stores)
                bad_range = (f_addr + f_count) > of_store(f_spad, [s.words for s in stores])
                is_result = of_store(f_spad, [int(s.result) for s in stores])
                # While a RUN executes the host may touch a result store only in a bank that
                # RUN does not use (a banked store, the whole region in the other bank).
                depth = of_store(f_spad, [s.depth for s in stores])
                first_hi, last_hi = f_addr >= depth, (f_addr + f_count - 1) >= depth
                run_bank = of_store(f_spad, [run_banks[s.id] for s in stores])
                banked = of_store(f_spad, [int(s.banks > 1) for s in stores])
                other_bank = banked & (first_hi == last_hi) & (first_hi != run_bank)
                blocked = self.run.busy & ~other_bank
                # A chaining RUN writes its target's bank (the one it does not read, or the
                # only one): the host may not write there until it completes.
                if targets:
                    in_run_bank = banked & (first_hi == last_hi) & (first_hi == run_bank)
                    chained = self.run.busy & (run_chain == f_spad + 1) & ~in_run_bank
                else:
                    chained = Const(0, 1)
                with m.Switch(opcode):
                    with m.Case(Op.WRITE):
                        with m.If(bad_spad):
                            respond(Err.SPAD)
                        with m.Elif(f_count == 0):
                            respond(Err.ARG)
                        with m.Else():
                            with m.If(bad_range):
                                m.d.sync += [discard.eq(1), pend_err.eq(Err.RANGE)]
                            with m.Elif((blocked & is_result) | chained):
                                m.d.sync += [discard.eq(1), pend_err.eq(Err.BUSY)]
                            m.next = "WDATA"
                    with m.Case(Op.READ):
                        with m.If(bad_spad):
                            respond(Err.SPAD)
                        with m.Elif(f_count == 0):
                            respond(Err.ARG)
                        with m.Elif(bad_range):
                            respond(Err.RANGE)
                        with m.Elif(blocked):
                            respond(Err.BUSY)
                        with m.Else():
                            respond(Err.OK, read_after=True)
                    with m.Case(Op.RUN):
                        with m.If(f_engine != self._engine_code):
                            respond(Err.ENGINE)
                        with m.Elif(bad_banks | bad_chain | hdr_bad):
                            respond(Err.ARG)
                        with m.Elif(self.run.busy):
                            m.next = "RUN_HOLD"
                        with m.Else():
                            m.d.comb += self.run.start.eq(1)
                            m.next = "RUN_CHECK"
            with m.State("RUN_HOLD"):
                # Held until the running RUN completes, then started in that very cycle.
                with m.If(self.run.free | ~self.run.busy):
                    m.d.comb += self.run.start.eq(1)
                    m.next = "RUN_CHECK"
            with m.State("RUN_CHECK"):
                with m.If(self.run.check_done):
                    respond(self.run.check_err)
            with m.State("WDATA"):
                m.d.comb += self.i.ready.eq(1)
                if self._counters:
                    m.d.comb += self.run.writing.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [word.word_select(byte_idx, 8).eq(self.i.payload),
                                 byte_idx.eq(byte_idx + 1)]
                    with m.If(byte_idx == of_store(spad, wbytes) - 1):
                        m.d.sync += [byte_idx.eq(0), count.eq(count - 1),
                                     wr_pending.eq(~discard)]
                        with m.If(count == 1):
                            m.next = "WEND"
            with m.State("WEND"):
                # The last word is written to its store this cycle (wr_pending), from `word`.
                respond(pend_err)
            with m.State("RD_ADDR"):
                for s in stores:
                    m.d.comb += getattr(self, f"port_{s.name}").r_en.eq(rsel[s.id])
                m.next = "RD_WAIT" if self._read_register else "RD_LOAD"
            if self._read_register:
                with m.State("RD_WAIT"):
                    m.next = "RD_LOAD"      # the read data is in its register next cycle
            with m.State("RD_LOAD"):
                # The word is loaded and then sent byte by byte from where it sits (no shift).
                # The path into obuf has only the store select: a one-hot AND-OR, one or two
                # LUT levels, not a mux chain; with `read_register` it starts at a register,
                # not at a block RAM's output.
                rdata = 0
                for s in stores:
                    data = rq[s.name]
                    rdata = rdata | (data & rsel[s.id].replicate(len(data)))
                m.d.sync += [obuf.eq(rdata), byte_idx.eq(0)]
                m.next = "RD_SEND"
            with m.State("RD_SEND"):
                m.d.comb += [self.o.valid.eq(1),
                             self.o.payload.eq(obuf.word_select(byte_idx, 8))]
                with m.If(self.o.ready):
                    m.d.sync += byte_idx.eq(byte_idx + 1)
                    with m.If(byte_idx == of_store(spad, wbytes) - 1):
                        m.d.sync += [addr.eq(addr + 1), count.eq(count - 1)]
                        with m.If(count == 1):
                            m.next = "OP"
                        with m.Else():
                            m.next = "RD_ADDR"
            with m.State("INFO"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(info_rd.data)]
                with m.If(self.o.ready):
                    m.d.comb += info_next.eq(info_idx + 1)
                    with m.If(info_idx == len(info_bytes) - 1):
                        m.d.comb += info_next.eq(0)
                        m.next = "OP"
            with m.State("RESP"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(resp[0:8])]
                with m.If(self.o.ready):
                    m.d.sync += [resp.eq(resp >> 8), resp_len.eq(resp_len - 1)]
                    with m.If(resp_len == 1):
                        with m.If(then_read):
                            m.next = "RD_ADDR"
                        with m.Else():
                            m.next = "OP"
        return m
