"""Host side of the board link: the core's byte stream over a USB serial port."""

import asyncio
import time

__all__ = ["LinkError", "LinkTimeout", "UartTransport"]


class LinkError(RuntimeError):
    """The serial port cannot be opened or used."""


class LinkTimeout(LinkError, TimeoutError):
    """The board did not send the expected bytes in time."""


def _serial():
    try:
        import serial
    except ImportError:
        raise LinkError("pyserial is required for the UART link; install it with "
                        "`python -m pip install pyserial`") from None
    return serial


class UartTransport:
    """Byte transport to a core behind :class:`tessera.fpga.top.BoardTop`, over a serial port.

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
