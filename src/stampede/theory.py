"""The closed forms the chapters hold their runs against, and the thresholds made from them.

Every check in a chapter compares a measured figure with a threshold; the thresholds come from
here, as pure functions of the run's parameters (rate, hot share, TTL, origin latency, pods,
beta), so a check follows the parameters a reader changes and fails only when the lesson does.

The models, all for one hot key under Poisson arrivals at ``lambda_hot = rate * hot_share``
and an origin read of ``L`` seconds:

- **naive**: at an expiry every request that arrives while the first re-read runs misses too,
  so one window costs ``1 + lambda_hot * L`` reads (:func:`naive_reads_per_window`);
- **a lock per pod**: each of ``pods`` pods lets its own first miss through; a pod reads when
  at least one of its requests arrives during the read (:func:`local_lock_reads_per_window`),
  never more than ``pods``;
- **waiters** (single-flight): the hot requests that arrive during the one re-read wait for
  it, a share ``L / (TTL + L)`` of them, so the hot-key p99 is about ``L * (1 - 0.01 / share)``
  (:func:`single_flight_hot_p99_ms`);
- **XFetch** (Vattani et al., VLDB 2015): a request ``x`` seconds before the expiry refreshes
  with probability ``exp(-x / (delta * beta))``. The first refresh comes about
  ``delta * beta * ln(lambda_hot * delta * beta)`` before the expiry (:func:`xfetch_head_start_s`,
  the mode; the median is ``delta * beta * ln ln 2`` earlier still), and while it runs,
  ``e^(1/beta) - 1`` more requests draw "refresh": ``e^(1/beta)`` in all
  (:func:`xfetch_attempts_per_refresh`).

What they leave out: the pods' own time (a read takes ``L`` plus a few milliseconds), the
cold keys, and a machine too busy to keep the schedule (``summary['machine']``). The
thresholds built on them keep a margin for the first two; the third is what
:mod:`stampede.checks` reports.
"""

from __future__ import annotations

import math

from stampede.errors import ConfigError

__all__ = [
    "PERCENTILE",
    "busiest_second_noise",
    "closed_loop_rate",
    "closed_loop_reads_per_window",
    "closed_loop_think_ms",
    "cold_reads_per_s",
    "herd",
    "hot_rate",
    "jitter_hill",
    "jitter_peak_ratio",
    "jitter_seconds_above",
    "local_lock_reads_per_window",
    "naive_hit_rate",
    "naive_hit_rate_floor",
    "naive_miss_share",
    "naive_origin_reads_per_s",
    "naive_reads_over_bound",
    "naive_reads_per_window",
    "overloading_limit",
    "per_process_lock_reads_per_window",
    "periodic_reads_per_window",
    "poisson_upper",
    "poll_extra_commands_per_request",
    "single_flight_hot_p99_ms",
    "stack_extra_reads",
    "waiting_share",
    "xfetch_attempts_per_refresh",
    "xfetch_attempts_sd",
    "xfetch_extra_reads",
    "xfetch_head_start_s",
    "xfetch_read_gap_s",
]

PERCENTILE = 0.99  # the p99 the chapters quote


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0 or math.isinf(value):
            raise ConfigError(f"{name}={value!r}: must be a finite number above 0")


def hot_rate(rate: float, hot_share: float) -> float:
    """``lambda_hot``: the hot key's arrival rate, requests/s."""
    _positive(rate=rate)
    if not 0 < hot_share <= 1:
        raise ConfigError(f"hot_share={hot_share!r}: must be in (0, 1]")
    return rate * hot_share


def herd(rate: float, hot_share: float, origin_latency_ms: float) -> float:
    """``lambda_hot * L``: hot-key requests expected to arrive during one origin read."""
    _positive(origin_latency_ms=origin_latency_ms)
    return hot_rate(rate, hot_share) * origin_latency_ms / 1000


def naive_reads_per_window(rate: float, hot_share: float, origin_latency_ms: float) -> float:
    """``1 + lambda_hot * L``: naive cache-aside's hot-key reads per TTL window."""
    return 1 + herd(rate, hot_share, origin_latency_ms)


def closed_loop_rate(clients: int, think_ms: float, answer_ms: float) -> float:
    """Requests/s of a closed loop: each client sends, waits ``answer_ms``, thinks ``think_ms``."""
    if clients < 1:
        raise ConfigError(f"clients={clients!r}: must be at least 1")
    _positive(cycle_ms=think_ms + answer_ms)
    return clients * 1000 / (think_ms + answer_ms)


def closed_loop_think_ms(clients: int, rate: float, answer_ms: float) -> float:
    """The think time at which ``clients`` closed-loop clients offer ``rate`` requests/s, ms.

    The inverse of :func:`closed_loop_rate`: ``clients * 1000 / rate - answer_ms``. A closed
    loop set up this way sends what the open loop sends while answers are fast, so the two
    differ only during a stall. Raises when ``rate`` is more than the clients can send with
    no think time at all (more clients are needed, not a negative pause).
    """
    if clients < 1:
        raise ConfigError(f"clients={clients!r}: must be at least 1")
    _positive(rate=rate, answer_ms=answer_ms)
    think = clients * 1000 / rate - answer_ms
    if think < 0:
        raise ConfigError(
            f"rate={rate!r}: {clients} clients answered in {answer_ms} ms cannot send that many"
        )
    return think


def closed_loop_reads_per_window(
    rate: float, hot_share: float, origin_latency_ms: float, clients: int
) -> float:
    """Naive's hot reads per window when the load is a closed loop of ``clients`` clients.

    A client that missed waits for its read and sends nothing else, so at most ``clients``
    requests can miss together: ``1 + min(clients - 1, lambda_hot * L)``. An open loop has no
    such cap (coordinated omission: the closed loop never sends the requests that would have
    arrived during the stall).
    """
    if clients < 1:
        raise ConfigError(f"clients={clients!r}: must be at least 1")
    return 1 + min(clients - 1, herd(rate, hot_share, origin_latency_ms))


def local_lock_reads_per_window(
    rate: float, hot_share: float, origin_latency_ms: float, pods: int
) -> float:
    """Expected hot-key reads per window with a lock inside each of ``pods`` pods.

    The first miss reads; each other pod reads when at least one of its share of the herd
    (``lambda_hot * L / pods``, Poisson) arrives during that read: ``1 + (pods - 1) * (1 -
    exp(-lambda_hot * L / pods))``, never more than ``pods``.
    """
    if pods < 1:
        raise ConfigError(f"pods={pods!r}: must be at least 1")
    per_pod = herd(rate, hot_share, origin_latency_ms) / pods
    return 1 + (pods - 1) * (1 - math.exp(-per_pod))


def jitter_peak_ratio(ttl_s: float, spread: float) -> float:
    """How much TTL jitter lowers a bulk warm's busiest second: ``1 / max(1, TTL * spread)``.

    Keys written in the same second expire over ``TTL * spread`` seconds instead of one (TTL x
    (1 + U(0, spread))), so each second's share of the cliff shrinks by that much; a spread
    whose stretch is under one second leaves the 1-s peak as it was.
    """
    _positive(ttl_s=ttl_s)
    return 1 / _stretch_s(ttl_s, spread)


def _stretch_s(ttl_s: float, spread: float) -> float:
    """Seconds over which keys written together expire, never under one 1-s bucket."""
    if spread < 0:
        raise ConfigError(f"spread={spread!r}: must be at least 0")
    return max(1.0, ttl_s * spread)


def jitter_hill(
    items: int, rate: float, ttl_s: float, spread: float, origin_latency_ms: float
) -> tuple[float, float]:
    """Mean and standard deviation of origin reads per second on a bulk warm's first hill.

    After a bulk warm of ``items`` keys sharing ``rate`` evenly, the first expiries fall
    uniformly over ``max(1, TTL * spread)`` seconds, the tallest hill of the run (later cycles
    spread further, as each rewrite draws a new TTL). One second holds about Poisson(n)
    expiries, ``n = items / max(1, TTL * spread)``, and each costs ``X = 1 + Poisson(λ L)``
    reads with ``λ = rate / items``: a compound Poisson with mean ``n E[X]`` and variance
    ``n E[X²]``. The mean alone is the wrong yardstick for the busiest second: at the
    defaults (100 keys, 380 req/s, 5 s, 1.0, 200 ms) it is 35 reads/s with a standard deviation
    of 9, so a second over 50 is a two-sigma burst, not a failed spread.
    """
    _positive(items=items, rate=rate, ttl_s=ttl_s, origin_latency_ms=origin_latency_ms)
    expiries = items / _stretch_s(ttl_s, spread)
    per_key = rate / items * origin_latency_ms / 1000  # requests during one re-read
    mean_reads, second_moment = 1 + per_key, per_key + (1 + per_key) ** 2
    return expiries * mean_reads, math.sqrt(expiries * second_moment)


def jitter_seconds_above(
    limit: float,
    items: int,
    rate: float,
    ttl_s: float,
    spread: float,
    origin_latency_ms: float,
    duration_s: float,
) -> float:
    """Expected steady 1-s buckets with more than ``limit`` origin reads after a bulk warm.

    The first hill (:func:`jitter_hill`) lasts ``max(1, TTL * spread)`` seconds; the later
    ones, over the rest of the run from ``ceil(TTL)`` on, carry ``items`` expiries per mean
    cycle ``TTL (1 + spread / 2) + L``. Each bucket's count is taken as normal with the compound
    Poisson's mean and variance (a continuity correction for "more than"). A count is a sum of
    rare events, so allow it ``E + 3√E + 1`` before calling a run wrong.
    """
    _positive(limit=limit, duration_s=duration_s)
    mean1, sd1 = jitter_hill(items, rate, ttl_s, spread, origin_latency_ms)
    first = _stretch_s(ttl_s, spread)
    cycle = ttl_s * (1 + spread / 2) + origin_latency_ms / 1000
    scale = first / cycle  # later hills: items / cycle expiries a second against items / first
    mean2, sd2 = mean1 * scale, sd1 * math.sqrt(scale)
    steady_s = max(0.0, duration_s - math.ceil(ttl_s))
    rest = max(0.0, steady_s - first)

    def above(mean: float, sd: float) -> float:
        return 0.5 * math.erfc((limit + 0.5 - mean) / (sd * math.sqrt(2)))

    return min(first, steady_s) * above(mean1, sd1) + rest * above(mean2, sd2)


def naive_reads_over_bound(
    rate: float,
    hot_share: float,
    ttl_s: float,
    origin_latency_ms: float,
    duration_s: float,
    lower_bound: int,
) -> float:
    """Naive's expected origin reads over the lower bound, given the run's measured bound.

    The bound holds one read per hot window (``duration / (TTL + L)`` of them) and one per
    cold window (the rest); naive reads the cold keys as the bound does and each hot window
    ``1 + lambda_hot * L`` times.
    """
    _positive(ttl_s=ttl_s, duration_s=duration_s)
    if lower_bound < 1:
        raise ConfigError(f"lower_bound={lower_bound!r}: must be at least 1")
    hot_windows = min(lower_bound, duration_s / (ttl_s + origin_latency_ms / 1000))
    cold = lower_bound - hot_windows
    per_window = naive_reads_per_window(rate, hot_share, origin_latency_ms)
    return (hot_windows * per_window + cold) / lower_bound


def per_process_lock_reads_per_window(
    rate: float, hot_share: float, origin_latency_ms: float, pods: int
) -> float:
    """A lock in Redis whose waiters wait only in the holder's process (aiocache's RedLock).

    The holder's pod reads once and its own share of the herd waits; every request of the
    herd that lands on another pod reads too: ``1 + (pods - 1) / pods * lambda_hot * L``.
    """
    if pods < 1:
        raise ConfigError(f"pods={pods!r}: must be at least 1")
    return 1 + (pods - 1) / pods * herd(rate, hot_share, origin_latency_ms)


def periodic_reads_per_window(ttl_s: float, period_s: float, origin_latency_ms: float) -> float:
    """Reads per TTL window of a refresh that comes every ``period_s`` (cashews' early_ttl).

    Each refresh starts one period after the last value landed, so one read per
    ``period + L`` seconds, over a window of ``TTL + L``.
    """
    _positive(ttl_s=ttl_s, period_s=period_s)
    latency_s = origin_latency_ms / 1000
    return (ttl_s + latency_s) / (min(period_s, ttl_s) + latency_s)


def naive_miss_share(key_rate_per_s: float, ttl_s: float, origin_latency_ms: float) -> float:
    """Share of one key's requests that miss under naive cache-aside, Poisson at ``key_rate``.

    A key's cycle: a miss starts a read of ``L`` (every request in it misses too), the value
    lives ``TTL``, then the key waits ``1 / lambda`` on average for its next request, the next
    miss. So ``(1 + lambda L)`` misses per ``1 + lambda (TTL + L)`` requests: ``L / (TTL + L)``
    for a hot key, the rate no longer in it; nearer 1 for a key asked less than once a TTL.
    """
    _positive(key_rate_per_s=key_rate_per_s, ttl_s=ttl_s)
    latency_s = origin_latency_ms / 1000
    return (1 + key_rate_per_s * latency_s) / (1 + key_rate_per_s * (ttl_s + latency_s))


def naive_hit_rate(
    rate: float, hot_share: float, ttl_s: float, origin_latency_ms: float, items: int = 100
) -> float:
    """Naive cache-aside's expected hit rate: the hot key's and the ``items - 1`` cold keys'.

    Each key misses :func:`naive_miss_share` of its requests. Why the hit rate hides a herd:
    the hot key's share hardly depends on the rate, so only the cold keys move it.
    """
    hot = hot_share * naive_miss_share(hot_rate(rate, hot_share), ttl_s, origin_latency_ms)
    if items < 2 or hot_share >= 1:
        return 1 - hot
    per_cold_key = rate * (1 - hot_share) / (items - 1)
    cold = (1 - hot_share) * naive_miss_share(per_cold_key, ttl_s, origin_latency_ms)
    return 1 - hot - cold


def naive_origin_reads_per_s(
    rate: float, hot_share: float, ttl_s: float, origin_latency_ms: float, items: int = 100
) -> float:
    """Naive cache-aside's origin reads/s: the hot key's ``1 + lambda_hot * L`` per window of
    ``TTL + L``, plus the cold keys' (:func:`cold_reads_per_s`). What an origin limit must serve.
    """
    _positive(ttl_s=ttl_s)
    window_s = ttl_s + origin_latency_ms / 1000
    hot = naive_reads_per_window(rate, hot_share, origin_latency_ms) / window_s
    return hot + cold_reads_per_s(rate, hot_share, ttl_s, origin_latency_ms, items)


def overloading_limit(
    rate: float,
    hot_share: float,
    ttl_s: float,
    origin_latency_ms: float,
    items: int = 100,
    margin: float = 0.85,
) -> int:
    """The most reads at once an origin may run while naive's demand still overloads it; 0: none.

    A limit of ``n`` serves ``n / L`` reads/s; naive asks :func:`naive_origin_reads_per_s`. The
    largest ``n`` whose capacity stays under ``margin`` times the demand, so the queue grows
    for the whole run; 0 when even one read at a time keeps up (a fast origin, a low rate),
    and no limit can show an overload.
    """
    _positive(origin_latency_ms=origin_latency_ms)
    demand = naive_origin_reads_per_s(rate, hot_share, ttl_s, origin_latency_ms, items)
    return math.floor(margin * demand * origin_latency_ms / 1000)


def naive_hit_rate_floor(
    rate: float, hot_share: float, ttl_s: float, origin_latency_ms: float, margin: float = 2.0
) -> float:
    """The lowest hit rate naive cache-aside should show: hot hits only, cold keys all missing.

    Per window of ``TTL + L`` seconds the hot key misses ``1 + lambda_hot * L`` times
    (``margin`` times that, for the pods' own time); every cold request is counted as a miss.
    """
    _positive(ttl_s=ttl_s)
    window_s = ttl_s + origin_latency_ms / 1000
    hot_misses_per_s = (
        margin * naive_reads_per_window(rate, hot_share, origin_latency_ms) / window_s
    )
    return hot_share - hot_misses_per_s / rate


def poll_extra_commands_per_request(
    waiters: int, refreshes: int, requests: int, origin_latency_ms: float, poll_ms: float
) -> float:
    """Redis commands per request that single-flight's polling costs over its notification.

    A waiter arrives somewhere in a read of ``L`` and polls every ``poll_ms``: about
    ``p = L / (2 poll) + 1/2`` ``GET``s, and after each that misses it claims the lock again
    (an ``EVALSHA`` and the ``SET`` it runs): ``p + 2 (p - 1)`` commands. A notified waiter
    sends none of them, but notification costs one ``PUBLISH`` per refresh of any key, waited
    for or not. So polling costs more only while its waiters outnumber the refreshes enough:
    ``(waiters * (3p - 2) - refreshes) / requests``, negative for a quiet key.
    """
    _positive(origin_latency_ms=origin_latency_ms, poll_ms=poll_ms)
    if requests < 1:
        raise ConfigError(f"requests={requests!r}: must be at least 1")
    polls = origin_latency_ms / (2 * poll_ms) + 0.5
    return (waiters * (3 * polls - 2) - refreshes) / requests


def single_flight_hot_p99_ms(ttl_s: float, origin_latency_ms: float) -> float:
    """The hot-key p99 when every request during a re-read waits for it, ms (0: it does not show).

    A share ``L / (TTL + L)`` of the hot requests wait, spread evenly over the read; the p99
    falls among them when that share is above 1%, at ``L * (1 - 0.01 / share)``.
    """
    _positive(ttl_s=ttl_s, origin_latency_ms=origin_latency_ms)
    latency_s = origin_latency_ms / 1000
    share = latency_s / (ttl_s + latency_s)
    tail = 1 - PERCENTILE
    return 0.0 if share <= tail else origin_latency_ms * (1 - tail / share)


def xfetch_head_start_s(delta_s: float, beta: float, hot_rate_per_s: float) -> float:
    """How long before the expiry XFetch's first refresh most likely starts, s.

    Refreshes are drawn at rate ``lambda_hot * exp(-x / (delta * beta))`` at ``x`` seconds
    before the expiry; the first one is most likely where the rate still to come is 1:
    ``delta * beta * ln(lambda_hot * delta * beta)`` (0 when that is negative or beta is 0).
    """
    _positive(delta_s=delta_s, hot_rate_per_s=hot_rate_per_s)
    scale = delta_s * beta
    if scale <= 0 or hot_rate_per_s * scale <= 1:
        return 0.0
    return scale * math.log(hot_rate_per_s * scale)


def xfetch_read_gap_s(ttl_s: float, delta_s: float, beta: float, hot_rate_per_s: float) -> float:
    """The median gap between two XFetch reads of the hot key, s.

    A value written ``delta`` after its read lives one TTL; the next read starts a head start
    before that (median: the mode plus ``delta * beta * -ln ln 2``), never before the last
    value landed.
    """
    median_head = xfetch_head_start_s(delta_s, beta, hot_rate_per_s)
    if median_head > 0:
        median_head -= delta_s * beta * math.log(math.log(2))
    return max(delta_s, ttl_s + delta_s - median_head)


def xfetch_extra_reads(
    duration_s: float, ttl_s: float, delta_s: float, beta: float, hot_rate_per_s: float
) -> float:
    """How many more hot-key reads XFetch makes than SWR in ``duration_s``, expected.

    SWR re-reads once a value is TTL old (a read every ``TTL + delta``); XFetch a head start
    earlier (:func:`xfetch_read_gap_s`). The difference is small when the head start is (a fast
    origin: 0.8 more reads a minute at 100 ms, 2.5 at 200 ms), so a check that XFetch reads more
    can only ask for as many more as this says.
    """
    _positive(duration_s=duration_s, ttl_s=ttl_s)
    gap = xfetch_read_gap_s(ttl_s, delta_s, beta, hot_rate_per_s)
    return duration_s / gap - duration_s / (ttl_s + delta_s)


def stack_extra_reads(
    duration_s: float,
    ttl_s: float,
    delta_s: float,
    beta: float,
    hot_rate_per_s: float,
    spread: float,
) -> float:
    """How many more hot-key reads the stack makes than plain SWR in ``duration_s``, expected.

    The stack is XFetch on TTLs jittered by ``TTL x (1 + U(0, spread))``: a read every
    :func:`xfetch_read_gap_s` of the mean TTL ``TTL x (1 + spread / 2)``; SWR reads every
    ``TTL + delta``. XFetch's head start adds reads, jitter's longer TTLs take some away, so
    this is negative when the head start is shorter than a tenth of a TTL (a fast origin at a
    modest rate: -0.9 a minute at 50 ms and 95 hot requests/s, spread 0.2). With ``spread``
    0 it is :func:`xfetch_extra_reads`.
    """
    _positive(duration_s=duration_s, ttl_s=ttl_s)
    if spread < 0:
        raise ConfigError(f"spread={spread!r}: must be at least 0")
    gap = xfetch_read_gap_s(ttl_s * (1 + spread / 2), delta_s, beta, hot_rate_per_s)
    return duration_s / gap - duration_s / (ttl_s + delta_s)


def xfetch_attempts_per_refresh(beta: float) -> float:
    """``e^(1/beta)``: requests whose draw says "refresh" per refresh (the first one included).

    From the head start on, while the first refresh runs for ``delta``, the draws still to come
    add ``e^(1/beta) - 1`` more; the lock lets one read the origin, the rest only try it.
    """
    _positive(beta=beta)
    return math.exp(1 / beta)


def xfetch_attempts_sd(beta: float) -> float:
    """The standard deviation of one refresh's attempts: ``sqrt(m + m^2)``, ``m = e^(1/beta) - 1``.

    Why so wide: the draws still to come when the first one says "refresh" are an ``Exp(1)``
    amount of XFetch's intensity (the first success of a Poisson process), and the extra
    attempts during ``delta`` are Poisson with ``m`` times that mean: a geometric count, whose
    variance is ``m + m^2``. At beta 1, 2.2 around a mean of 2.7, so a check of the mean over
    ``n`` refreshes needs ``n`` in the tens, or a margin of a few times ``sd / sqrt(n)``.
    """
    extra = xfetch_attempts_per_refresh(beta) - 1
    return math.sqrt(extra + extra**2)


# ---- cold keys and Poisson noise (the thresholds for "as low as", not for a herd) -----------
def poisson_upper(mean: float, quantile: float) -> int:
    """The smallest ``k`` with ``P(Poisson(mean) <= k) >= quantile``: an upper quantile.

    Summed in log space term by term (no SciPy), so it holds for a mean of thousands.
    """
    if mean < 0 or math.isinf(mean):
        raise ConfigError(f"mean={mean!r}: must be a finite number of at least 0")
    if not 0 < quantile < 1:
        raise ConfigError(f"quantile={quantile!r}: must be in (0, 1)")
    if mean == 0:
        return 0
    k, log_term = 0, -mean
    total = math.exp(log_term)
    while total < quantile:
        k += 1
        log_term += math.log(mean) - math.log(k)
        total += math.exp(log_term)
    return k


def cold_reads_per_s(
    rate: float, hot_share: float, ttl_s: float, origin_latency_ms: float, items: int = 100
) -> float:
    """Origin reads/s of the ``items - 1`` cold keys, for any cache that reads a key once a window.

    A cold key's value lives ``TTL + L`` from the read; the next read waits for the key's next
    request, ``1 / lambda_key`` on average (``lambda_key = rate (1 - hot_share) / (items - 1)``):
    one read per ``TTL + L + 1 / lambda_key`` per key. Every strategy here reads the cold keys
    so (a lock only matters when requests overlap a read), so this is the floor of everyone's
    busiest second once the hot key's herd is gone.
    """
    _positive(rate=rate, ttl_s=ttl_s)
    if items < 2 or hot_share >= 1:
        return 0.0
    cold = items - 1
    per_key = rate * (1 - hot_share) / cold
    window_s = ttl_s + origin_latency_ms / 1000
    return cold / (window_s + 1 / per_key)


def busiest_second_noise(mean_per_s: float, seconds: float, alpha: float = 0.05) -> float:
    """How much higher one run's busiest second may come out than another's by chance, reads.

    Both count reads at ``mean_per_s`` (Poisson) over ``seconds`` buckets; the busiest of them
    exceeds ``poisson_upper(mean, 1 - alpha / seconds)`` with probability at most ``alpha``, and
    the other run's busiest is at least its mean, so two strategies that read alike differ by
    at most this much (a Poisson count is more spread than the cold keys' renewal reads, so it
    errs on the loose side).
    """
    _positive(seconds=seconds)
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha={alpha!r}: must be in (0, 1)")
    quantile = 1 - alpha / max(1.0, seconds)
    return float(poisson_upper(mean_per_s, quantile) - mean_per_s)


def waiting_share(hot_share: float, ttl_s: float, origin_latency_ms: float) -> float:
    """The share of all requests that arrive while the hot key is being re-read.

    ``hot_share * L / (TTL + L)``: the hot requests during one read of ``L`` per window of
    ``TTL + L``. Under a lock each of them waits, so whatever a waiter sends at least once (a
    poll, a spin's ``PING``) comes at least this often per request.
    """
    _positive(ttl_s=ttl_s, origin_latency_ms=origin_latency_ms)
    latency_s = origin_latency_ms / 1000
    return hot_share * latency_s / (ttl_s + latency_s)
