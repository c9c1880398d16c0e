"""Host side of the board link: a USB serial port as a pipe for the framed link
(:class:`SerialPipe`, what `tessera run` uses), and the raw byte-stream transport of bare cores
(:class:`UartTransport`)."""

import asyncio
import errno
import os
import select
import time

from tessera.sim.framing import LinkCorrupt, LinkError, LinkTimeout

__all__ = ["LinkError", "LinkTimeout", "LinkCorrupt", "SerialPipe", "UartTransport",
           "serial_ports"]


def _serial():
    try:
        import serial
    except ImportError:
        raise LinkError("pyserial is required for the UART link; install it with "
                        "`python -m pip install pyserial`") from None
    return serial


def serial_ports():
    """The serial ports pyserial finds on this machine (device paths).

    Returns
    -------
    list of str
    """
    try:
        from serial.tools import list_ports
    except ImportError:
        return []
    return sorted(p.device for p in list_ports.comports())


def _open_error(port, error):
    """A one-line `LinkError` for a port that cannot be opened: missing, busy or forbidden."""
    text = str(error)
    code = getattr(error, "errno", None)
    if code is None and isinstance(getattr(error, "args", None), tuple):
        code = next((a for a in error.args if isinstance(a, int)), None)
    if "exclusively lock" in text or code in (errno.EBUSY, errno.EAGAIN):
        return LinkError(f"serial port {port} is busy: another program has it open (a "
                         f"terminal, another `tessera run`); close it and try again")
    if code == errno.EACCES or "Permission denied" in text:
        return LinkError(f"no permission to open serial port {port}; add your user to the "
                         f"group that owns it (`ls -l {port}`; usually dialout) and log in "
                         f"again")
    if code == errno.ENOENT or "No such file" in text or not os.path.exists(port):
        here = serial_ports()
        return LinkError(f"no serial port {port}: is the board plugged in? (serial ports "
                         f"here: {', '.join(here) if here else 'none'})")
    return LinkError(f"cannot open serial port {port}: {text}")


class SerialPipe:
    """A serial port as a pipe for `tessera.sim.framing.FramedTransport` (8N1 at ``baud``, no
    flow control), opened exclusively so that two programs cannot share a board.

    I/O is synchronous inside the coroutines (``select`` on the port's descriptor): the event
    loop has nothing else to do meanwhile. Also serves a virtual board's pseudo-terminal
    (`tessera.sim.vsim.VerilatorPty`), whose line runs slower than real time: pass a larger
    ``byte_time`` and ``base_timeout`` then.

    Parameters
    ----------
    port : str
        Device path, e.g. ``/dev/ttyUSB1`` (iCEBreaker: the FTDI's second interface) or
        ``/dev/ttyUSB0`` (ULX3S).
    baud : int
    clk_hz : float
        Core clock, for :meth:`idle`.
    byte_time : float, optional
        Seconds per line byte for the retransmission timer (default ``10 / baud``).
    base_timeout : float
        Seconds of slack on top of the line time (USB latency, host scheduling).

    Raises
    ------
    LinkError
        The port does not exist, is busy (open elsewhere), cannot be opened for lack of
        permission, or pyserial is missing; one line each.
    """

    def __init__(self, port, baud=115200, *, clk_hz=12e6, byte_time=None, base_timeout=0.5):
        if not isinstance(port, str) or not port:
            raise ValueError(f"port must be a serial device path, not {port!r}")
        if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
            raise ValueError(f"baud must be a positive integer, not {baud!r}")
        serial = _serial()
        self.name = port
        self.baud, self.clk_hz = baud, clk_hz
        self.byte_time = 10.0 / baud if byte_time is None else byte_time
        self.base_timeout = base_timeout
        try:
            self._port = serial.Serial(port, baudrate=baud, bytesize=8, parity="N", stopbits=1,
                                       timeout=0, write_timeout=None, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as error:
            raise _open_error(port, error) from None
        self._fd = self._port.fileno()
        self._port.reset_input_buffer()

    def now(self):
        return time.monotonic()

    async def write(self, data):
        view = memoryview(bytes(data))
        try:
            while view:
                _, w, _ = select.select([], [self._fd], [], 5.0)
                if not w:
                    raise LinkTimeout(f"writing to {self.name} blocked for 5 s (is the "
                                      f"device stuck?)")
                n = os.write(self._fd, view)
                view = view[n:]
        except LinkError:
            raise
        except OSError as error:
            raise LinkError(f"writing to {self.name} failed: {error.strerror or error} (was "
                            f"the board unplugged?)") from None

    async def read(self, timeout):
        try:
            r, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
            if not r:
                return b""
            return os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return b""
        except OSError as error:
            if error.errno == errno.EIO:          # a pty whose other side went away
                raise LinkError(f"reading from {self.name} failed: the other side closed "
                                f"it") from None
            raise LinkError(f"reading from {self.name} failed: {error.strerror or error} (was "
                            f"the board unplugged?)") from None

    async def idle(self, cycles):
        await asyncio.sleep(cycles / self.clk_hz)

    def close(self):
        if self._port.is_open:
            self._port.close()


class UartTransport:
    """Raw byte transport to a core over a serial port, without framing (the bare core's byte
    stream; a `tessera.fpga.top.BoardTop` speaks the framed link: use `SerialPipe` with
    `tessera.sim.framing.FramedTransport` for it, as `tessera.fpga.deploy` does).

    The host driver talks to the simulated core and to the board through the same three
    coroutines: :meth:`send`, :meth:`recv` and :meth:`idle`. The blocking pyserial calls run in
    a worker thread, so the event loop stays responsive. Use as an async context manager, or
    call :meth:`close`.

    Parameters
    ----------
    port : str
        Serial device, e.g. ``/dev/ttyUSB1`` (iCEBreaker: the second FTDI interface) or
        ``/dev/ttyUSB0`` (ULX3S).
    baud : int
        Bit rate; must match the ``baud`` the bitstream was built with (default 115200).
    timeout : float
        Seconds :meth:`recv` waits for all requested bytes before raising :class:`LinkTimeout`.
    clk_hz : int
        Core clock, to turn :meth:`idle` cycles into time (12 MHz iCEBreaker, 25 MHz ULX3S).
    """

    def __init__(self, port, baud=115200, *, timeout=1.0, clk_hz=12_000_000):
        if not isinstance(port, str) or not port:
            raise ValueError(f"port must be a serial device path, not {port!r}")
        if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
            raise ValueError(f"baud must be a positive integer, not {baud!r}")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if not isinstance(clk_hz, (int, float)) or isinstance(clk_hz, bool) or clk_hz <= 0:
            raise ValueError(f"clk_hz must be a positive number, not {clk_hz!r}")
        serial = _serial()
        self._port_name, self._baud, self._timeout, self._clk_hz = port, baud, timeout, clk_hz
        try:
            self._port = serial.Serial(port, baudrate=baud, bytesize=8, parity="N", stopbits=1,
                                       timeout=0.05, write_timeout=timeout)
        except (serial.SerialException, OSError, ValueError) as error:
            raise LinkError(f"cannot open serial port {port}: {error}") from None
        self._port.reset_input_buffer()

    @classmethod
    def for_board(cls, port, board, *, baud=115200, timeout=1.0):
        """A transport for ``board`` (its clock sets the :meth:`idle` time scale).

        Parameters
        ----------
        port : str
        board : str or fpga.boards.Board
        baud : int
        timeout : float

        Returns
        -------
        UartTransport
        """
        from .boards import get_board
        return cls(port, baud, timeout=timeout, clk_hz=get_board(board).clk_hz)

    @property
    def port(self):
        """Serial device path.

        Returns
        -------
        str
        """
        return self._port_name

    async def send(self, data):
        """Send bytes to the core's ``i`` stream.

        Parameters
        ----------
        data : bytes-like
        """
        data = bytes(data)
        serial = _serial()

        def write():
            try:
                self._port.write(data)
                self._port.flush()
            except LinkError:
                raise
            except serial.SerialTimeoutException:
                raise LinkTimeout(f"writing {len(data)} bytes to {self._port_name} did not "
                                  f"finish within {self._timeout} s") from None
            except (serial.SerialException, OSError) as error:
                raise LinkError(f"writing to {self._port_name} failed: {error}") from None

        await asyncio.to_thread(write)

    async def recv(self, n):
        """Receive exactly ``n`` bytes from the core's ``o`` stream.

        Parameters
        ----------
        n : int

        Returns
        -------
        bytes

        Raises
        ------
        LinkTimeout
            If fewer than ``n`` bytes arrive within ``timeout`` seconds; names the port and
            how many bytes did arrive.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n must be a non-negative integer, not {n!r}")
        serial = _serial()

        def read():
            data = bytearray()
            deadline = time.monotonic() + self._timeout
            try:
                while len(data) < n:
                    data += self._port.read(n - len(data))
                    if len(data) < n and time.monotonic() >= deadline:
                        raise LinkTimeout(
                            f"no reply from {self._port_name}: got {len(data)} of {n} bytes "
                            f"within {self._timeout} s (is the bitstream loaded and the baud "
                            f"rate {self._baud}?)")
            except LinkError:
                raise
            except (serial.SerialException, OSError) as error:
                raise LinkError(f"reading from {self._port_name} failed: {error}") from None
            return bytes(data)

        return await asyncio.to_thread(read)

    async def idle(self, cycles):
        """Let the core run for ``cycles`` clock cycles (a sleep of ``cycles / clk_hz``).

        Parameters
        ----------
        cycles : int
        """
        if not isinstance(cycles, int) or isinstance(cycles, bool) or cycles < 0:
            raise ValueError(f"cycles must be a non-negative integer, not {cycles!r}")
        await asyncio.sleep(cycles / self._clk_hz)

    def close(self):
        """Close the serial port (idempotent)."""
        if self._port.is_open:
            self._port.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
