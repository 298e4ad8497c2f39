"""Client-side limiters, all time from an injected ``Clock`` (``etl.clock``).

``TokenBucket``: the ``/events`` budget, a *fixed* window per key on the server: ``capacity``
requests per window of ``capacity / rate_per_s`` seconds (10 per 60 s), the window opened by
the first request. Modelled as such, not as a continuously refilled bucket (which would
allow 10 + 10 requests in the first minute and earn a 429): ``capacity`` tokens, all back at
the window's end. The window opens when its first request is *sent* (``sent()``), not when
its first token is granted: a fetcher may wait for a shard between the two, and a window
counted from the grant would roll before the server's. ``sync()`` adopts the server's own
count from the ``X-RateLimit-*`` headers, counted from when the request was sent (the server
stamps its count when the request arrives, not when the page is answered seconds later).

``AdaptiveRate`` (``etl.feedrate``, re-exported here): the feed's hidden throttle (a sliding
window of about 200 requests per 300 s, 429s without any header).

Both are cancellation-safe: the only ``await`` is the clock's sleep, and a token is taken
after it, without awaiting, so a cancelled waiter takes nothing. Waiters re-check after every
wake-up, so a pause set meanwhile (``pause_until``) holds every one of them at once.
"""

from __future__ import annotations

from etl.feedrate import AdaptiveRate
from etl.models import Clock

__all__ = ["AdaptiveRate", "TokenBucket"]

_EPS = 1e-9
# of the window, added to a window end counted from a request's send time: its way to the
# server's counter (1.2 s of a 60 s window, 0.12 s of a time-scaled 6 s one); doubled, up to
# MAX_SENT_ALLOWANCE, whenever the server shows we rolled a window before it did (a loaded
# machine: the server's loop reads requests late)
SENT_ALLOWANCE = 0.02
MAX_SENT_ALLOWANCE = 0.1


class TokenBucket:
    """Fixed-window budget: ``capacity`` requests per ``capacity / rate_per_s`` seconds.

    The window length is a prior (60 s for ``/events``): the first ``X-RateLimit-*`` answer
    of each window sets where it really ends, so a server with another window (or a
    sandbox running faster than real time) is followed, not fought.
    """

    def __init__(
        self,
        rate_per_s: float,
        capacity: float,
        clock: Clock,
        *,
        margin_s: float | None = None,
    ) -> None:
        if rate_per_s <= 0 or capacity < 1:
            raise ValueError("rate_per_s must be > 0 and capacity >= 1")
        self._clock = clock
        self.limit = int(capacity)
        self.window_s = capacity / rate_per_s
        # added to every window end (the server's clock is elsewhere); None: 0.4 % of the
        # window (0.25 s of a 60 s one), so a time-scaled server is not over-padded
        self._margin_s = margin_s
        self.tokens = self.limit
        self.window_end: float | None = None  # None: the window opens with the next request
        # when our first request of the window went (or the window rolled): a request sent
        # before it was counted in a window gone by
        self.window_start: float | None = None
        self.confirmed = False  # window_end comes from the server, not from our prior
        self.learned_window_s: float | None = None  # the longest Reset the server has sent
        self.paused_until = float("-inf")
        self.generation = 0  # windows rolled so far: a grant's ticket (``ticket``)
        self.first_sent: float | None = None  # the current window's first send (``sent``)
        self.allowance = SENT_ALLOWANCE  # of the window: a request's way to the counter
        self.early_rolls = 0  # windows the server showed we rolled before it did
        self._early_in = -1  # the window an early roll was last found in
        # the earliest the server's window can end by its answers (send + Reset - 1; and
        # our first send + the window's length): a request sent after it may count in the next
        self.earliest_end: float | None = None
        self.carried = 0  # such requests: the next window has that many tokens fewer

    async def acquire(self) -> None:
        """Wait for a token and take it."""
        while True:
            now = self._clock.now()
            if self.window_end is not None and now >= self.window_end:
                # the server's window rolled
                # a request sent when the server's window may already have rolled was
                # counted in the new one: it is one of the new window's requests
                self.tokens = max(0, self.limit - self.carried)
                self.window_end, self.confirmed = None, False
                self.window_start = now  # what was sent before counts in a window gone by
                self.generation += 1
                self.first_sent = self.earliest_end = None
                self.carried = 0
            if now >= self.paused_until:
                if self.tokens >= 1:
                    self.tokens -= 1
                    if self.window_end is None:
                        # provisional: the first send (``sent``) moves it to where the
                        # server's window ends
                        self.window_end = now + self.window_length_s + self.margin_s
                        self.window_start = now
                    return
                assert self.window_end is not None  # tokens < limit => a window is open
                wait = self.window_end - now
            else:
                wait = self.paused_until - now
            await self._clock.sleep(wait)

    def ticket(self) -> float | None:
        """The ticket of the token ``acquire()`` just granted: its window (for ``sent``);
        None from a bucket whose grants come from elsewhere (``etl.sharedrate``)."""
        return float(self.generation)

    def current(self, ticket: float | None) -> bool:
        """Whether a token granted with ``ticket`` still belongs to the window in force (a
        token granted in a window that has rolled since was never sent in it: sending it now
        would spend one of the new window's requests without counting it)."""
        if ticket is None:
            return True
        rolled = self.window_end is not None and self._clock.now() >= self.window_end
        return ticket == self.generation and not rolled

    def sent(self, at: float, ticket: float | None) -> None:
        """The request granted ``ticket`` went at clock time ``at``.

        The server opens its window when the window's first request arrives: the first send
        of ours, not the first grant (a fetcher may wait for a shard in between). Until an
        answer confirms the window's end (``sync``), it is counted from that send, plus the
        allowance for the request's way to the server's counter.
        """
        if ticket is None or ticket != self.generation:
            return
        if self.first_sent is None:
            self.first_sent = at
            if self.window_end is not None and not self.confirmed:
                opened = at + self.window_length_s + self.margin_s + self.sent_allowance_s
                self.window_end = max(self.window_end, opened)
            return
        earliest = self.first_sent + self.window_length_s
        if self.earliest_end is not None:
            earliest = max(earliest, self.earliest_end)
        if at >= earliest:
            # our window's end is padded (margin, allowance, Resets rounded up): the
            # server's may have rolled already, and counted this one in the next
            self.carried += 1

    def _may_end(self, at: float) -> None:
        self.earliest_end = at if self.earliest_end is None else max(self.earliest_end, at)

    def ready(self) -> bool:
        """Whether ``acquire()`` would grant a token right now."""
        now = self._clock.now()
        if now < self.paused_until:
            return False
        return self.tokens >= 1 or (self.window_end is not None and now >= self.window_end)

    def sync(
        self, limit: int, remaining: int, reset_s: float, *, sent_at: float | None = None
    ) -> None:
        """Adopt the server's view: ``remaining`` requests now, ``limit`` again in ``reset_s``.

        ``sent_at`` (clock time the request went; None: now) is when the server counted it,
        give or take the request's way there: its window ends ``reset_s`` after that, not
        after the answer, which comes a page's latency later (3.5-6 s of a 60 s window; more
        than the whole window of a time-scaled sandbox). ``SENT_ALLOWANCE`` of the window is
        added for the way there; the answer's time plus ``reset_s`` stays the latest end.
        An answer to a request sent before this window's first one is the previous window's:
        it teaches the limit and the window's length, nothing else.

        The first answer in a window fixes its end (and teaches the window's length). After
        that, headers are stale by the requests sent while this one was in flight, so within
        the window the budget only ever goes *down*; a reset well before the known end is a
        late answer from the previous window and is ignored; one well after it means the
        server opened a window we did not know about.
        """
        now = self._clock.now()
        reset_s = max(0.0, reset_s)
        self.limit = max(0, limit)
        self.learned_window_s = max(self.learned_window_s or 0.0, reset_s)
        reset_at = now + reset_s + self.margin_s
        if sent_at is not None:
            if self.window_start is not None and sent_at < self.window_start - _EPS:
                return  # counted in a window that has rolled since
            self._check_early_roll(now, reset_s)
            early = min(sent_at, now) + reset_s + self.margin_s + self.sent_allowance_s
            reset_at = min(reset_at, early)
            self._may_end(sent_at + reset_s - 1.0)  # Reset is rounded up to a second
        if not self.confirmed or self.window_end is None:
            self.window_end, self.confirmed = reset_at, True
            self.tokens = min(self.tokens, max(0, remaining))
            return
        tolerance = self.window_length_s / 2
        if reset_at < self.window_end - tolerance:
            return  # a late answer from the previous window
        self.tokens = min(self.tokens, max(0, remaining))
        if reset_at > self.window_end + tolerance:
            self.window_end = reset_at  # a window we did not know about
        elif sent_at is None:
            self.window_end = max(self.window_end, reset_at)
        else:  # counted from its send: the least rounded-up reset is the nearest the end
            self.window_end = min(self.window_end, reset_at)

    def _check_early_roll(self, now: float, reset_s: float) -> None:
        """An answer to a request sent in this window whose server window ends before any
        window this one could be (``now + reset_s`` is the latest it ends): the server
        counted it in the previous one, so we rolled before the server did (it reads
        requests later than the allowance). The allowance doubles, up to its maximum. One
        second of slack: the window's length is learnt from Resets rounded up."""
        if self.window_start is None or self.window_end is None:
            return
        if self._early_in == self.generation:
            return  # once per window: its other answers tell the same
        if now + reset_s < self.window_start + self.window_length_s - 1.0:
            self._early_in = self.generation
            self.early_rolls += 1
            self.allowance = min(MAX_SENT_ALLOWANCE, self.allowance * 2)

    @property
    def sent_allowance_s(self) -> float:
        """Time allowed for a request's way to the server's counter (``sync``, ``sent``)."""
        return self.allowance * self.window_length_s

    @property
    def margin_s(self) -> float:
        if self._margin_s is not None:
            return self._margin_s
        return max(0.01, 0.004 * self.window_length_s)

    @property
    def window_length_s(self) -> float:
        """The server's window as learned from its headers, else the prior."""
        return max(1.0, self.learned_window_s or self.window_s)

    def pause_until(self, t: float) -> None:
        """No token before clock time ``t`` for anyone (e.g. a 429's Retry-After)."""
        self.paused_until = max(self.paused_until, t)

    def pause_for(self, seconds: float) -> None:
        self.pause_until(self._clock.now() + max(0.0, seconds))
