"""Background sampling threads: one per meter stream, resilient to a flaky link.

:class:`Sampler` polls any :class:`~htfl.device.power.meter.Meter` in a daemon thread and keeps
running whatever happens:

* **link lost** (``OSError``, which includes ``serial.SerialException``): the meter is closed and
  reopened with exponential backoff (``backoff_initial`` doubling up to ``backoff_max``); each
  successful reopen after a loss increments the meter's ``reconnects`` and records a
  :class:`~htfl.device.power.energy.Gap` (``reason="disconnect"``) from the last good sample to the
  first one after the reconnect;
* **bad frame** (:class:`~htfl.device.power.meter.FrameError`): counted by the driver, skipped;
  a complete but invalid reply (:class:`~htfl.device.power.meter.BadFrame`) is asked for again
  at once (up to ``_IMMEDIATE_RETRIES`` times in a row), not after the next period;
* **anything else**: logged, counted in ``errors``, the meter is reopened after a backoff.

Samples go to a bounded buffer (:meth:`Sampler.drain`; when full the oldest are dropped and
counted in ``dropped``) and to an optional ``on_sample`` callback. The sampler also keeps a
running energy total (trapezoid rule) that, like
:func:`htfl.device.power.energy.attribute`, does not
integrate across gaps (disconnects, or spacing over ``gap_factor`` x the expected period)
nor next to charging samples. The expected period is known from the first sample on - the
configured ``interval`` or the meter's ``nominal_period``, whichever is longer - and is replaced
by the median of the recent spacings once there are enough of them, so a silence in the first
seconds is a gap, not a straight line drawn across it. These running figures feed the
Prometheus exporter.

:class:`SerialSampler` is the same loop with defaults for serial meters (no pacing: request
the next reading as soon as the previous reply is in).
"""

from __future__ import annotations

import collections
import logging
import statistics
import threading
import time
from collections.abc import Callable

from htfl.device.power.energy import DEFAULT_GAP_FACTOR, Gap
from htfl.device.power.meter import BadFrame, FrameError, Meter, PowerSample

log = logging.getLogger(__name__)

_PERIOD_WINDOW = 64
_IMMEDIATE_RETRIES = 3


class Sampler(threading.Thread):
    """Poll ``meter`` every ``interval`` seconds (0 = back to back) until :meth:`stop`."""

    def __init__(
        self,
        meter: Meter,
        *,
        interval: float = 0.1,
        buffer_size: int = 100_000,
        on_sample: Callable[[PowerSample], None] | None = None,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        backoff_factor: float = 2.0,
        gap_factor: float = DEFAULT_GAP_FACTOR,
        max_gaps: int = 1000,
        name: str | None = None,
        scope: str = "",
    ):
        super().__init__(name=name or f"sampler:{meter.device or meter.source}", daemon=True)
        self.meter = meter
        #: What the meter measures (``wall``, ``board``, ...; see ``htfl.device.power.config``).
        self.scope = scope
        self.interval = float(interval)
        self.on_sample = on_sample
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_factor = backoff_factor
        self.gap_factor = gap_factor
        #: How far the schedule may fall behind (a slow reply, the thread not being scheduled)
        #: and still be caught up by sampling back to back; beyond that it restarts from now.
        self.max_lag = max(0.05, 2 * self.interval)
        self.latest: PowerSample | None = None
        self.samples_total = 0
        self.energy_joules = 0.0
        self.gap_count = 0
        self.gaps: collections.deque[Gap] = collections.deque(maxlen=max_gaps)
        self.dropped = 0
        self.errors = 0
        self.open_failures = 0
        self.last_error: BaseException | None = None
        self.backoff_delays: list[float] = []  # waits of the latest (re)connection attempt
        self._buffer: collections.deque[PowerSample] = collections.deque(maxlen=buffer_size)
        self._stop_event = threading.Event()
        #: Set to end the current wait early: by :meth:`stop`, or :meth:`sample_now`.
        self._wake = threading.Event()
        self._poked = False
        self._lost_since: float | None = None
        self._sampled_since_connect = True
        self._loss_streak = 0
        self._ever_opened = False
        self._periods: collections.deque[float] = collections.deque(maxlen=_PERIOD_WINDOW)
        expected = max(self.interval, meter.nominal_period or 0.0)
        self._period_limit = gap_factor * expected if expected > 0 else float("inf")
        self._bad_in_a_row = 0
        self._since_limit_update = 0

    # -- public -----------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return self.meter.device

    @property
    def source(self) -> str:
        return self.meter.source

    @property
    def frame_errors(self) -> int:
        return self.meter.frame_errors

    @property
    def reconnects(self) -> int:
        return self.meter.reconnects

    @property
    def timeouts(self) -> int:
        return self.meter.timeouts

    @property
    def bad_frames(self) -> int:
        return self.meter.bad_frames

    @property
    def stray_replies(self) -> int:
        return self.meter.stray_replies

    @property
    def connected(self) -> bool:
        return self.meter.is_open

    def drain(self) -> list[PowerSample]:
        """Remove and return every buffered sample, oldest first."""
        out: list[PowerSample] = []
        pop = self._buffer.popleft
        try:
            while True:
                out.append(pop())
        except IndexError:
            return out

    def sample_now(self) -> None:
        """Take the next sample now rather than at its tick (the schedule restarts from it).

        For a meter whose samples are window means (:attr:`Meter.window_means`): a sample at
        the moment an interval ends closes the interval exactly, however coarse the interval
        between samples, and without waiting for the next tick.
        """
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to finish, wait for it, and close the meter."""
        self._stop_event.set()
        self._wake.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
        self.meter.close()

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    # -- loop -------------------------------------------------------------------------------
    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if asked to stop meanwhile."""
        if seconds <= 0:
            return self._stop_event.is_set()
        if seconds < 0.02 and not self._wake.is_set():
            time.sleep(seconds)
            return self._stop_event.is_set()
        if self._wake.wait(seconds):
            self._wake.clear()
            self._poked = True
        return self._stop_event.is_set()

    def _connect(self) -> bool:
        """Open the meter, retrying with backoff; False if asked to stop first."""
        delay = self.backoff_initial
        self.backoff_delays = []
        while not self._stop_event.is_set():
            try:
                self.meter.open()
            except Exception as err:  # OSError = not there (yet); others are logged too
                self.open_failures += 1
                self.last_error = err
                if not isinstance(err, OSError):
                    log.warning("%s: cannot open meter: %s", self.name, err)
                self.meter.close()
                self.backoff_delays.append(delay)
                if self._wait(delay):
                    return False
                delay = min(delay * self.backoff_factor, self.backoff_max)
                continue
            if self._ever_opened:
                self.meter.reconnects += 1
                log.info("%s: reconnected to %r", self.name, self.meter)
            self._ever_opened = True
            return True
        return False

    def _loss_delay(self) -> float:
        """Wait after losing the link: grows while reconnects keep failing before a sample."""
        delay = self.backoff_initial * self.backoff_factor**self._loss_streak
        return min(delay, self.backoff_max)

    def _lose_link(self, err: BaseException) -> None:
        if self._sampled_since_connect:
            self._loss_streak = 0
        else:
            self._loss_streak = min(self._loss_streak + 1, 32)
        self._sampled_since_connect = False
        self.last_error = err
        if self._lost_since is None:
            self._lost_since = self.latest.t if self.latest is not None else time.time()
        log.info("%s: link lost: %s", self.name, err)
        self.meter.close()

    def run(self) -> None:
        meter = self.meter
        interval = self.interval
        # Split-phase: request, sleep until the next sample is due, collect the reply that has
        # arrived meanwhile, request again - one wake-up per sample instead of two.
        split = interval > 0 and meter.supports_split
        next_due: float | None = None
        retry_now = False
        while not self._stop_event.is_set():
            if not meter.is_open:
                if not self._connect():
                    break
                next_due = None
            if interval > 0:
                now = time.monotonic()
                if next_due is None or now - next_due > self.max_lag or self._poked:
                    next_due = now  # (re)start the schedule instead of bursting to catch up
                self._poked = False
            stopping = False
            try:
                if retry_now:
                    retry_now = False
                    sample = meter.read()  # the re-request after a bad frame: wait for it now
                elif split:
                    meter.request()
                    next_due += interval  # type: ignore[operator]
                    # If asked to stop while waiting, still collect the reading in flight.
                    stopping = self._wait(next_due - time.monotonic())
                    sample = meter.collect()
                else:
                    sample = meter.read()
            except BadFrame:
                # The meter answered, but garbled: ask again now rather than a period later.
                self._bad_in_a_row += 1
                if self._bad_in_a_row <= _IMMEDIATE_RETRIES:
                    retry_now = True
                    continue
                self._bad_in_a_row = 0
                if self._wait(interval if interval > 0 else 0.001):
                    break
                continue
            except FrameError:
                # The driver counted it. Pause briefly so a meter that fails instantly and
                # repeatedly cannot spin a core.
                if self._wait(interval if interval > 0 else 0.001):
                    break
                continue
            except OSError as err:
                self._lose_link(err)
                if self._wait(self._loss_delay()):
                    break
                continue
            except Exception as err:  # a driver bug must not kill the stream
                self.errors += 1
                log.exception("%s: unexpected error reading %r", self.name, meter)
                self._lose_link(err)
                if self._wait(self._loss_delay()):
                    break
                continue
            self._bad_in_a_row = 0
            self._accept(sample)
            if stopping:
                break
            if interval > 0 and not split:
                next_due += interval  # type: ignore[operator]
                if self._wait(next_due - time.monotonic()):
                    break

    def _accept(self, sample: PowerSample) -> None:
        prev = self.latest
        if prev is not None:
            dt = sample.t - prev.t
            if self._lost_since is not None:
                self._record_gap(Gap(self._lost_since, sample.t, "disconnect"))
            elif self.meter.window_means:  # a mean covers its window, however long
                self.energy_joules += sample.watts * max(dt, 0.0)
            elif dt > self._period_limit:
                self._record_gap(Gap(prev.t, sample.t, "gap"))
                self._note_period(dt)  # the median shrugs off a few; a wrong limit does not stick
            else:
                if dt > 0:
                    self._note_period(dt)
                if not (sample.charging or prev.charging):
                    self.energy_joules += (prev.watts + sample.watts) * 0.5 * dt
        elif self._lost_since is not None:
            self._record_gap(Gap(self._lost_since, sample.t, "disconnect"))
        self._lost_since = None
        self._sampled_since_connect = True
        self.latest = sample
        self.samples_total += 1
        buf = self._buffer
        if len(buf) == buf.maxlen:
            self.dropped += 1
        buf.append(sample)
        if self.on_sample is not None:
            try:
                self.on_sample(sample)
            except Exception:
                self.errors += 1
                log.exception("%s: on_sample callback failed", self.name)

    def _record_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)
        self.gap_count += 1

    def _note_period(self, dt: float) -> None:
        self._periods.append(dt)
        self._since_limit_update += 1
        # Recompute the median now and then, not per sample (it sorts the window).
        if self._since_limit_update >= 16 and len(self._periods) >= 8:
            self._since_limit_update = 0
            self._period_limit = self.gap_factor * statistics.median(self._periods)


class SerialSampler(Sampler):
    """A :class:`Sampler` for serial meters: back-to-back request/response by default.

    Pass ``interval`` to pace the requests (e.g. ``0.001`` for 1 kS/s); the meter's own
    ``timeout`` bounds how long one unanswered request can stall the stream.
    """

    def __init__(self, meter: Meter, *, interval: float = 0.0, **kwargs: object):
        super().__init__(meter, interval=interval, **kwargs)  # type: ignore[arg-type]
