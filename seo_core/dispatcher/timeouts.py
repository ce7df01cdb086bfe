"""Bounding the time a synchronous sink may take.

An ``async def`` sink is bounded with :func:`asyncio.timeout`. A plain function cannot be
interrupted from outside its thread, and handing every call to a worker thread would cost far more
than the call itself. So, on the main thread (where ``seo serve`` runs its event loop), a
heartbeat interval timer (``SIGALRM``, every :data:`HEARTBEAT` seconds) watches the sink that is
running and raises :class:`SinkTimeout` inside it once it has run past its binding's Timeout: a
sink sleeping or looping in Python is stopped within one heartbeat of its deadline.

The firing loops pay for this with a local naming the call in progress (``call``) and a number
drawn per event (``token``), no clock reads: the heartbeat counts its own ticks while the same
call of the same event stays current.

Elsewhere (a dispatcher driven from another thread) an overrun is detected when the call
returns: it is logged and counted as a timeout and its verdict is ignored, but the call was not
cut short.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from seo_core.errors import SeoError

HEARTBEAT = 0.1
"""Seconds between deadline checks on the main thread."""


class SinkTimeout(SeoError):
    """Raised inside a synchronous sink whose binding's Timeout has passed."""


RUNNER = "_run"
"""The name of the firing loops whose frames the heartbeat looks for: the dispatcher's general
loop, and the functions its fast path generates (see ``fastpath``)."""


class SyncDeadline:
    """Watches the synchronous sink running now on the main thread, at no cost per call.

    On each heartbeat the handler walks up from the interrupted frame to the innermost
    dispatcher loop (:data:`RUNNER`) and reads which call it is in (its ``token`` and ``call``
    locals). While the same call stays current from tick to tick,
    ticks are counted; once they add up to the call's timeout, :class:`SinkTimeout` is raised
    in the sink. When the interrupted frame is the loop itself, no sink is running.
    """

    __slots__ = ("_key", "_ticks", "_users", "preemptive", "token")

    def __init__(self) -> None:
        self.token = 0
        self.preemptive = False
        self._users = 0
        self._key: tuple[int, int] | None = None
        self._ticks = 0

    def start(self) -> None:
        """Start the heartbeat if this is the main thread and nobody else owns SIGALRM."""
        if threading.current_thread() is not threading.main_thread():
            return
        if not hasattr(signal, "setitimer"):
            return
        if self._users == 0:
            current = signal.getsignal(signal.SIGALRM)
            if current not in (signal.SIG_DFL, signal.SIG_IGN, None):
                return
            signal.signal(signal.SIGALRM, self._on_alarm)
            signal.siginterrupt(signal.SIGALRM, False)
            signal.setitimer(signal.ITIMER_REAL, HEARTBEAT, HEARTBEAT)
            self.preemptive = True
        self._users += 1

    def stop(self) -> None:
        """Stop the heartbeat when its last user stops."""
        if self._users == 0:
            return
        self._users -= 1
        if self._users == 0 and self.preemptive:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            self.preemptive = False

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        runner = frame
        while runner is not None and runner.f_code.co_name != RUNNER:
            runner = runner.f_back
        if runner is None or runner is frame:
            self._key = None
            return
        variables = runner.f_locals
        key = (variables.get("token", -1), id(variables.get("call")))
        if key != self._key:
            self._key, self._ticks = key, 0
            return
        self._ticks += 1
        timeout = getattr(variables.get("call"), "timeout", None)
        if timeout is not None and self._ticks * HEARTBEAT >= timeout:
            self._key = None
            raise SinkTimeout


DEADLINE = SyncDeadline()
"""The process-wide slot: there is one main thread and one SIGALRM."""
