"""Weight-stationary systolic array composed from a PE kind's arithmetic parts."""

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.array.parts import compose_term, is_parts, mark_composed


__all__ = ["WSGemmArray"]


def _delay(m, sig, n, name, reset_less=True):
    """``sig`` delayed by ``n`` register stages (``n`` may be 0)."""
    cur = sig
    for i in range(n):
        nxt = Signal.like(sig, name=f"{name}_d{i + 1}", reset_less=reset_less)
        m.d.sync += nxt.eq(cur)
        cur = nxt
    return cur


class WSGemmArray(wiring.Component):
    """``rows`` x ``cols`` weight-stationary systolic array of any PE kind that offers parts
    (`tessera.hdl.array.parts`), emitting each vector's column results as one word.

    PE(r, c) holds the weight lane B[k = r][c] of the current tile in an *active* register and
    the next tile's in a *shadow* register, and composes the kind's product and term
    (`compose_term`) with one accumulate step (`Parts.accumulate` at ``row = r``): the partial
    sum of column c enters PE(r, c) from above and leaves it, with the term of (activation
    lane r, weight lane) accumulated, one row down one cycle later. Below the last row the
    kind's `Parts.finish` (``finish_latency`` registers) makes the result word: for the
    integer kinds the wrapping sum of the ``rows`` terms, for ``fpmac`` the sum of ``rows``
    pairs as its output-stationary PE forms it.

    **Vectors.** In every cycle the engine presents ``a`` (with the side-band members) and
    ``valid`` (which travels with them to parts that read it: `Parts.uses_valid`); ``swap`` makes the shadow weights active for this vector and all later ones. It
    travels with the activations' skew (row r is delayed r cycles inside), so PE(r, c) swaps
    in the clock edge at which it takes this vector's activation. A vector presented in cycle
    t shows its ``cols`` column sums on ``out_data`` in cycle t + `latency` with ``out_valid``
    (the columns are deskewed inside; lanes of the kind's ``acc_shape``, an integer result
    sign-extended).

    **Weights.** A tile is loaded in a burst of exactly ``rows`` cycles with ``w_valid``
    (bursts are counted modulo ``rows`` from reset), ``w_in`` giving lane row k = rows-1 first,
    down to k = 0 last; the shadows of column c shift down one row per ``w_valid``, c cycles
    after column 0's, and load cycle j shifts only rows 0..j. A burst whose tile the swap at
    cycle T' activates must start at or after the previous swap's cycle T and end by T' - 1:
    a tile of at least ``rows`` vectors follows the previous one with no bubble when its
    weights were loaded during the previous tile. (The same contract as
    `tessera.hdl.array.ws.WSArray`, whose edge accumulators this array leaves to the output
    stage.)

    Parameters
    ----------
    rows, cols : int
        Array shape, 1..64 each.
    parts : callable
        Called with no arguments, returns a new parts provider (`is_parts`); all must share
        one signature and ``front``.

    Members
    -------
    a : In(ArrayLayout(a_shape, rows))
    side_<name> : In(ArrayLayout(shape, rows)), for each side-band member
    mode : In(mode_shape), only for parts with a run-time mode (held for a whole RUN)
    valid, swap : In(1)
    w_in : In(ArrayLayout(b_shape, cols))
    w_valid : In(1)
    out_valid : Out(1)
    out_data : Out(ArrayLayout(acc_shape, cols))
    """

    def __init__(self, *, rows, cols, parts):
        for name, value in (("rows", rows), ("cols", cols)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
                raise ValueError(f"{name} must be an integer 1..64, not {value!r}")
        if not callable(parts):
            raise TypeError(f"parts must be a callable returning parts, not {parts!r}")
        self._rows, self._cols = rows, cols
        self._parts = [[parts() for _ in range(cols)] for _ in range(rows)]
        p0 = self._parts[0][0]
        for row in self._parts:
            for p in row:
                if not is_parts(p):
                    raise TypeError(f"parts must return parts providers (Parts), not {p!r}")
                if p.signature != p0.signature or p.front != p0.front \
                        or p.finish_latency != p0.finish_latency:
                    raise ValueError("parts must return providers of one signature, front and "
                                     "finish latency")
                mark_composed(p)                # its parts are elaborated here, not it
        sig = self._sig = p0.signature
        self._front = p0.front
        self._finish = p0.finish_latency
        members = {"a": In(data.ArrayLayout(sig.a_shape, rows))}
        for name, shape in sig.side:
            members[f"side_{name}"] = In(data.ArrayLayout(shape, rows))
        if sig.mode_shape is not None:
            members["mode"] = In(sig.mode_shape)
        members.update({
            "valid": In(1), "swap": In(1),
            "w_in": In(data.ArrayLayout(sig.b_shape, cols)), "w_valid": In(1),
            "out_valid": Out(1),
            "out_data": Out(data.ArrayLayout(sig.acc_shape, cols)),
        })
        super().__init__(members)

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    front = property(lambda self: self._front)
    finish_latency = property(lambda self: self._finish)

    @property
    def pe_signature(self):
        return self._sig

    @property
    def pe_parts_use_valid(self):
        """Whether the parts read the pair's valid (`Parts.uses_valid`)."""
        return self._parts[0][0].uses_valid

    @property
    def latency(self):
        """Cycles from a vector at the inputs to its word on ``out_data``."""
        return self._rows + self._cols + self._front + self._finish + 1

    @property
    def min_tile_vectors(self):
        """Fewest vectors per tile for back-to-back tiles (a weight burst of ``rows``)."""
        return self._rows

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        sig = self._sig
        side_names = [n for n, _ in sig.side]
        a_w = sig.a_shape.width
        side_ws = [s.width for _, s in sig.side]

        # -- input skew: row r's activation (with its side-band bits) and swap delayed r.
        a_skew, sw_skew = [], [self.swap]
        p0 = self._parts[0][0]
        for r in range(R):
            lane = Cat(self.a[r], *(getattr(self, f"side_{n}")[r] for n in side_names),
                       *([self.valid] if p0.uses_valid else []))
            a_skew.append(_delay(m, lane, r, f"a_sk{r}"))
        for i in range(1, R):
            nxt = Signal(name=f"sw_sk{i}")
            m.d.sync += nxt.eq(sw_skew[-1])
            sw_skew.append(nxt)

        # -- weight bursts (as WSArray): load cycle j shifts rows 0..j of column 0's shadows;
        # column c gets the same enables (and w_in[c]) c cycles later.
        wcnt = Signal(range(max(R, 2)), name="wcnt")
        with m.If(self.w_valid):
            m.d.sync += wcnt.eq(Mux(wcnt == R - 1, 0, wcnt + 1))
        en = [[self.w_valid & (wcnt >= r) if r else self.w_valid for r in range(R)]]
        for c in range(1, C):
            row = [Signal(name=f"wen{r}_{c}") for r in range(R)]
            m.d.sync += [row[r].eq(en[c - 1][r]) for r in range(R)]
            en.append(row)
        w_top = [_delay(m, self.w_in[c], c, f"w_sk{c}") for c in range(C)]

        # -- the PEs
        a_reg = [[None] * C for _ in range(R)]
        sw_reg = [[None] * C for _ in range(R)]
        shadow = [[None] * C for _ in range(R)]
        psum = [[None] * C for _ in range(R)]
        for r in range(R):
            for c in range(C):
                parts = self._parts[r][c]
                pm = Module()
                m.submodules[f"pe_{r}_{c}"] = pm
                a_in = a_skew[r] if c == 0 else a_reg[r][c - 1]
                sw_in = sw_skew[r] if c == 0 else sw_reg[r][c - 1]
                a = a_reg[r][c] = Signal.like(a_in, name=f"a_{r}_{c}", reset_less=True)
                m.d.sync += a.eq(a_in)
                if c < C - 1:
                    sw = sw_reg[r][c] = Signal(name=f"sw_{r}_{c}")
                    m.d.sync += sw.eq(sw_in)
                ws = shadow[r][c] = Signal(sig.b_shape, name=f"ws_{r}_{c}", reset_less=True)
                with m.If(en[c][r]):
                    m.d.sync += ws.eq(w_top[c] if r == 0 else shadow[r - 1][c])
                w = Signal(sig.b_shape, name=f"w_{r}_{c}", reset_less=True)
                with m.If(sw_in):
                    m.d.sync += w.eq(ws)
                pos = a_w
                m.d.comb += [parts.a.eq(a[:a_w]), parts.b.eq(w)]
                for n, wd in zip(side_names, side_ws):
                    m.d.comb += getattr(parts, n).eq(a[pos:pos + wd])
                    pos += wd
                if parts.uses_valid:                    # the pair's valid rides with it
                    m.d.comb += parts.valid.eq(a[pos])
                if sig.mode_shape is not None:
                    m.d.comb += parts.mode.eq(self.mode)
                term = compose_term(pm, parts)
                value = parts.accumulate(pm, None if r == 0 else psum[r - 1][c], term, r)
                value, shape = value if isinstance(value, tuple) else (value, None)
                value = Value.cast(value)
                p = psum[r][c] = Signal(value.shape() if shape is None else shape,
                                        name="psum", reset_less=True)
                pm.d.sync += p.eq(value)

        # -- the bottom: the kind's finish, column c deskewed by cols-1-c registers.
        for c in range(C):
            fm = Module()
            m.submodules[f"finish_{c}"] = fm
            res = self._parts[R - 1][c].finish(fm, psum[R - 1][c], R)
            out = _delay(m, Value.cast(res), C - 1 - c, f"deskew{c}")
            m.d.comb += self.out_data[c].eq(out)
        m.d.comb += self.out_valid.eq(_delay(m, self.valid, self.latency, "valid",
                                             reset_less=False))
        return m
