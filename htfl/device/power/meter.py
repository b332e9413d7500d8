"""Common base for power meters.

A *meter* is a source of timestamped power samples for one device. Every driver in
:mod:`htfl.device.power.drivers` subclasses :class:`Meter` and returns :class:`PowerSample` objects
whose ``t`` is wall-clock seconds (``time.time()`` on the machine that reads the meter).

Error contract for drivers (the :class:`~htfl.device.power.sampler.Sampler` relies on it):

* :class:`FrameError` - one reading was unusable (garbage, short frame, timeout, bad value).
  The driver has already incremented ``frame_errors``; the link is still usable.
* :class:`OSError` (which includes ``serial.SerialException`` and :class:`MeterDisconnected`)
  - the link is gone (port vanished, sysfs file disappeared). The caller should ``close()``
  and ``open()`` again later; the sampler does so with exponential backoff and counts
  ``reconnects``.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator
from typing import ClassVar, NamedTuple

Clock = Callable[[], float]


class PowerSample(NamedTuple):
    """One power reading (an immutable named tuple: cheap to build at kS/s rates).

    ``t`` is wall-clock seconds; ``watts`` is the power drawn by the device (positive =
    consumption). ``charging=True`` marks samples taken while a battery-powered device was
    on a charger: ``watts`` is then the battery-side power and *not* the device's consumption.
    """

    t: float
    watts: float
    volts: float | None
    amps: float | None
    source: str
    charging: bool = False


class MeterError(Exception):
    """Base class for meter problems that are not link failures."""


class FrameError(MeterError):
    """A single reading could not be decoded; the link is still usable."""


class BadFrame(FrameError):
    """A complete reply arrived and was invalid (checksum, end marker, contradictory fields).

    Unlike a timeout, the meter is there and answering: the sampler asks again at once.
    """


class MeterConfigError(MeterError, ValueError):
    """A meter is misconfigured (bad path, unknown rail, missing option)."""


class MeterDisconnected(OSError):
    """The link to the meter is gone (raised by drivers that detect it themselves)."""


class Meter(abc.ABC):
    """A source of :class:`PowerSample` for one device.

    Subclasses implement :meth:`open`, :meth:`read` and :meth:`close`. ``read`` blocks for at
    most the driver's timeout and returns one sample. Iterating a meter yields samples
    forever (``for s in meter: ...``); :meth:`take` returns a list of ``n`` samples.
    """

    #: Driver name, also the default ``source`` label.
    driver: ClassVar[str] = "meter"

    @property
    def nominal_period(self) -> float | None:
        """Shortest spacing of samples the meter can give (None: not known in advance).

        The sampler uses it, with its configured interval, to recognise a gap from the very
        first samples on.
        """
        return None

    def __init__(self, *, device: str = "", source: str | None = None, clock: Clock = time.time):
        self.device = device
        self.source = source or self.driver
        self.frame_errors = 0
        self.reconnects = 0
        #: Fault counters a driver keeps where they apply (all are also in ``frame_errors``):
        #: replies that never came, complete replies that were invalid, and input nobody asked
        #: for (a reply later than the driver waits, or unsolicited bytes).
        self.timeouts = 0
        self.bad_frames = 0
        self.stray_replies = 0
        self._clock = clock
        self._is_open = False

    @property
    def is_open(self) -> bool:
        return self._is_open

    @abc.abstractmethod
    def open(self) -> None:
        """Acquire the link (port, files). Raises ``OSError`` when it is not available."""

    @abc.abstractmethod
    def read(self) -> PowerSample:
        """Return one sample (raises :class:`FrameError` or ``OSError``)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the link. Never raises; safe to call twice."""

    #: True when each sample is the meter's *mean* power since its previous sample (a model
    #: computed from counters, like the simulated meter's CPU time), not a reading at one
    #: instant. Its energy over a window is then exactly mean x window whatever the spacing,
    #: so it can sample coarsely and add a sample where an interval ends
    #: (:meth:`~htfl.device.power.sampler.Sampler.sample_now`), and it is recorded as steps
    #: (each mean at both ends of its window) so that the trapezoid rule gives that energy.
    window_means: ClassVar[bool] = False

    #: True when :meth:`request` / :meth:`collect` are implemented as two phases, so that a
    #: paced sampler can send a request, sleep, and pick up the (already arrived) reply with a
    #: single wake-up per sample.
    supports_split: ClassVar[bool] = False

    def request(self) -> None:  # noqa: B027 - deliberately optional, not abstract
        """Start one reading (split-phase meters send their query here; default: nothing)."""

    def collect(self) -> PowerSample:
        """Finish the reading started by :meth:`request` (default: a whole :meth:`read`)."""
        return self.read()

    def take(self, n: int, *, max_errors: int = 10) -> list[PowerSample]:
        """Read ``n`` samples, skipping frame errors (which are counted).

        Raises the last :class:`FrameError` once ``max_errors`` errors in a row occurred.
        """
        out: list[PowerSample] = []
        errors_in_a_row = 0
        while len(out) < n:
            try:
                out.append(self.read())
                errors_in_a_row = 0
            except FrameError:
                errors_in_a_row += 1
                if errors_in_a_row >= max_errors:
                    raise
        return out

    def __iter__(self) -> Iterator[PowerSample]:
        while True:
            yield self.read()

    def __enter__(self) -> Meter:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} device={self.device!r} source={self.source!r}>"
