"""The simulator beside the live lab: one table per setting, issue 13's tolerances.

For each case (naive, local_lock, single_flight poll and notify, swr, xfetch, bulk warm with
jitter 0 and 1.0; naive and single_flight with 50 closed-loop clients thinking 130 ms) one
live run and one simulated run of the same parameters, seed included (the simulator replays
the load generator's own schedule, so both see the same requests; a closed loop's clients ask
for the same items, sent as the answers come), then per figure the two values, the tolerance
and whether they agree; a closed loop adds req/s, origin reads and the mean answer. The
tolerances and why each is what it is: :mod:`stampede.sim.versus`. Settings: ``default`` (the
lab defaults: 3 pods, 380 req/s, 95% on one key, 200 ms origin, 5 s TTL), ``rate200`` (200
req/s) and ``origin100`` (a 100 ms origin). The simulator uses the constants ``stampede sim
calibrate`` stored on this machine (else the built-in ones; the notes say which).

Live runs are load tests: run this under the machine's heavy lock. A full invocation (three
settings x ten cases x 60 s) is about 35 minutes; one setting is about eleven minutes, so a
hold of the heavy lock can take one setting (or ``--cases`` a few), and ``--cached`` then
prints every table from one invocation from the live runs already measured (the run cache,
``data/runs``; a case not in it runs live). ``--exit-code`` exits 1 when any figure disagrees.

    flock /tmp/stampede-heavy.lock python bench/sim_vs_lab.py --settings default
    python bench/sim_vs_lab.py --settings default,rate200,origin100 --cached
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from _common import duration_of, emit, machine_facts, one_lab, parser

from stampede import run, sim
from stampede.sim import agreement

# the reference experiment's closed loop: 50 clients, each thinking 130 ms after an answer
CLOSED: dict[str, Any] = {"pacing": "closed", "clients": 50, "think_ms": 130.0}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "naive": ("naive", {}),
    "local_lock": ("local_lock", {}),
    "single_flight poll": ("single_flight", {"wait": "poll"}),
    "single_flight notify": ("single_flight", {"wait": "notify"}),
    "swr": ("swr", {}),
    "xfetch": ("xfetch", {}),
    "bulk warm, jitter 0": ("naive", {"scenario": "bulk_warm", "jitter": 0.0}),
    "bulk warm, jitter 1.0": ("naive", {"scenario": "bulk_warm", "jitter": 1.0}),
    "closed loop naive": ("naive", CLOSED),
    "closed loop single_flight": ("single_flight", CLOSED),
}
SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "rate200": {"rate": 200.0},
    "origin100": {"origin_latency_ms": 100.0},
}


def main() -> None:
    p = parser(__doc__, duration=60.0, quick=8.0)
    p.add_argument("--settings", default="default", help=f"comma list of {', '.join(SETTINGS)}")
    p.add_argument("--cases", default="", help="comma list of case names (default: all)")
    p.add_argument("--cached", action="store_true", help="reuse live runs in the run cache")
    p.add_argument("--exit-code", action="store_true", help="exit 1 when a figure disagrees")
    args = p.parse_args()
    duration = duration_of(args)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()] or list(CASES)
    unknown = [s for s in settings if s not in SETTINGS] + [c for c in wanted if c not in CASES]
    if unknown:
        p.error(f"unknown setting or case {unknown}")
    stored = sim.stored_timing()
    timing = stored or sim.MEASURED
    where = "stored by `stampede sim calibrate`" if stored else "built in (not calibrated here)"
    failed = 0
    # --cached: no lab of our own; a case missing from the cache starts one for its run
    with contextlib.nullcontext(None) if args.cached else one_lab() as lab:
        for setting in settings:
            rows: list[dict[str, Any]] = []
            for name in wanted:
                strategy, params = CASES[name]
                params = {**params, **SETTINGS[setting], "duration_s": duration}
                print(f"[bench] {setting} / {name}: {strategy} {params}", file=sys.stderr)
                live = run(strategy, lab=lab, fresh=not args.cached, progress=False, **params)
                simulated = sim.simulate(strategy, timing=timing, **params)
                rows.extend(a.row() for a in agreement(name, live, simulated))
            agree = sum(r["agree"] for r in rows)
            failed += len(rows) - agree
            notes = [
                f"{agree} of {len(rows)} figures agree; {duration:g} s per run; live runs "
                f"{'from the run cache (measured earlier)' if args.cached else 'measured now'}; "
                f"sim constants ({where}): {timing}",
                machine_facts(),
            ]
            title = f"simulator (sim) vs live lab (lab), setting {setting} {SETTINGS[setting]}"
            emit(title, rows, args, notes)
    sys.exit(1 if failed and args.exit_code else 0)


if __name__ == "__main__":
    main()
