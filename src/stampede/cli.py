"""``stampede``: start the lab, run one experiment, print what it measured.

    stampede lab up [--strategy NAME] [params] [--json]   start the lab in the background
    stampede lab up --compose [--jupyter] | --swarm        ... as containers (lab_env/)
    stampede lab status [--json]                           is it up, where
    stampede lab down                                      stop exactly what ``lab up`` started
    stampede run --strategy NAME [params] [--json]         one run on a fresh lab
    stampede run --backend sim ...                         the same run, simulated
    stampede run --backend sim --origin-limit N ...        ... with N origin reads at once
    stampede sim calibrate | sim show | sim fleet ...      the simulator's constants, fleet runs
    stampede strategies                                    the registered strategy names

Every parameter of :mod:`stampede.config` is an option (``ttl_s`` is ``--ttl-s``); bad values
are rejected with one clear line before any process starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from stampede import auth, paths, procs
from stampede.compose import LAUNCHERS, ComposeLab, SwarmLab
from stampede.config import LabConfig, LoadConfig, StrategyConfig, validated
from stampede.errors import ConfigError, StampedeError
from stampede.lab import Lab, load_state, save_state
from stampede.registry import strategy_names

__all__ = ["main"]

STATE_FILE = "lab-up.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        parser.exit(2, f"stampede: bad parameter: {exc}\n")
    except StampedeError as exc:
        parser.exit(1, f"stampede: {exc}\n")
    except KeyboardInterrupt:
        parser.exit(130, "stampede: interrupted; every process this run started was stopped\n")


# ---- commands ----------------------------------------------------------------------------
def _lab_up(args: argparse.Namespace) -> int:
    state_path = paths.state_dir() / STATE_FILE
    state = load_state(state_path)
    if args.jupyter and not args.compose:
        raise ConfigError("--jupyter is a service of the compose lab: add --compose")
    if state and ("project" in state or _recorded_alive(state)):
        raise StampedeError(f"a lab is already up ({state['pods']}); `stampede lab down` first")
    config = validated(StrategyConfig, **_picked(args, StrategyConfig))
    lab_config = validated(LabConfig, **_picked(args, LabConfig))
    logs = paths.state_dir() / "logs-up"
    if args.compose or args.swarm:
        kind = ComposeLab if args.compose else SwarmLab
        lab: Lab = kind.up(lab_config, config=config, jupyter=args.jupyter)
    else:
        lab = Lab.embedded(lab_config, config=config, owned=False, log_dir=logs)
    lab.configure(config)
    save_state(lab, state_path)
    state_path.chmod(0o600)  # a container lab's state holds its secret
    lab.processes.clear()  # hand the PIDs over to `lab down`: leaving must not stop them
    # the secret is printed for `make lab` to export (STAMPEDE_LAB_SECRET); it is in the
    # Redis URL too, and in the state file, which only this user can read
    info = {"pods": lab.pods, "redis": lab.redis_url, "secret": lab.secret}
    if isinstance(lab, ComposeLab):
        lab.detach()  # the project stays up until `lab down`
        info["project"] = lab.project
        if args.jupyter:
            env = lab.env
            info["jupyter"] = (
                f"http://127.0.0.1:{env['JUPYTER_PORT']}/lab?token={env['JUPYTER_TOKEN']}"
            )
    print(json.dumps(info) if args.json else _lines(info))
    return 0


def _lab_down(args: argparse.Namespace) -> int:
    state_path = paths.state_dir() / STATE_FILE
    state = load_state(state_path)
    if not state:
        print("no lab is up")
        return 0
    if "project" in state:
        ComposeLab.from_state(state).stop()
        state_path.unlink(missing_ok=True)
        print(f"took {state['project']} down")
        return 0
    stopped, left = 0, []
    for entry in reversed(state.get("processes", [])):
        # only a PID whose start time still matches: a reused PID is someone else's process
        pid, ticks = entry["pid"], entry.get("start_ticks")
        if ticks is not None and procs.stop_pid(pid, ticks=ticks):
            stopped += 1
        elif procs.pid_alive(pid):
            left.append(pid)
    state_path.unlink(missing_ok=True)
    note = (
        f"; left PIDs {left} alone: not the processes `lab up` started (reused PIDs)"
        if left
        else ""
    )
    print(f"stopped {stopped} lab processes{note}")
    return 0


def _recorded_alive(state: dict[str, Any]) -> bool:
    """Whether a process ``lab up`` recorded still runs (same PID *and* start time)."""
    return any(
        procs.same_process(e["pid"], e.get("start_ticks")) for e in state.get("processes", [])
    )


def _lab_status(args: argparse.Namespace) -> int:
    state = load_state(paths.state_dir() / STATE_FILE)
    if not state:
        print(json.dumps({"up": False}) if args.json else "no lab is up")
        return 1
    lab = (
        ComposeLab.from_state(state)
        if "project" in state
        else Lab.attach(state["pods"], state["redis"], secret=state.get("secret"))
    )
    if isinstance(lab, ComposeLab):
        lab.detach()
    healthy = lab.health()
    lab.stop()
    shown = {k: v for k, v in state.items() if k != "secret"}  # in the state file, not printed
    shown["redis"] = auth.redacted(state["redis"])
    info = {"up": all(healthy), **shown, "healthy": healthy}
    print(json.dumps(info) if args.json else _lines(info))
    return 0 if all(healthy) else 1


def _run(args: argparse.Namespace) -> int:
    from stampede.runner import run  # pandas is slow to import: only when needed

    params = {**_picked(args, StrategyConfig), **_picked(args, LoadConfig)}
    params.update(_picked(args, LabConfig))
    lab: Lab | str | None = args.lab
    if args.attach:
        state = load_state(paths.state_dir() / STATE_FILE)
        if state and "project" in state:
            lab = ComposeLab.from_state(state)
            lab.detach()
        elif state:
            lab = Lab.attach(state["pods"], state["redis"], secret=state.get("secret"))
        else:
            lab = Lab.from_env()
    result = run(
        lab=lab,
        fresh=args.fresh or None,
        progress=not args.json,
        backend=args.backend,
        origin_limit=args.origin_limit,
        **params,
    )
    if args.json:
        print(json.dumps(_jsonable(result.to_json())))
    else:
        print(_table(result.to_json()))
    return 0


def _sim_calibrate(args: argparse.Namespace) -> int:
    from stampede.sim.calibrate import measure

    timing, path = measure(duration_s=args.duration_s)
    print(f"stored in {path}")
    print(_lines(dataclasses.asdict(timing)))
    return 0


def _sim_show(args: argparse.Namespace) -> int:
    from stampede.sim.timing import MEASURED, stored_path, stored_timing

    stored = stored_timing()
    print(f"built in (stampede.sim.MEASURED): {dataclasses.asdict(MEASURED)}")
    where = stored_path()
    print(f"stored ({where}): {dataclasses.asdict(stored) if stored else 'none: sim calibrate'}")
    return 0


def _sim_fleet(args: argparse.Namespace) -> int:
    from stampede.sim.fleet import fleet

    config = _picked(args, StrategyConfig)
    result = fleet(
        pods=args.pods,
        rate=args.rate,
        keys=args.keys,
        alpha=args.alpha,
        duration_s=args.duration_s,
        shards=args.shards,
        **config,
    )
    summary = result.summary() | {
        "requests_per_wall_s": round(result.requests_per_wall_s),
        "peak_rss_mib": round(result.peak_rss_mib),
    }
    print(json.dumps(_jsonable(summary)) if args.json else _lines(summary))
    return 0


def _strategies(args: argparse.Namespace) -> int:
    print("\n".join(strategy_names()))
    return 0


# ---- parser ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stampede", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    lab = sub.add_parser("lab", help="start, inspect or stop the embedded lab")
    lab_sub = lab.add_subparsers(required=True, metavar="ACTION")
    up = lab_sub.add_parser("up", help="start Redis and the pods in the background")
    _add_model_options(up, StrategyConfig)
    _add_model_options(up, LabConfig)
    up.add_argument(
        "--json", action="store_true", help='print {"pods": [...], "redis": "...", "secret": "..."}'
    )
    where = up.add_mutually_exclusive_group()
    where.add_argument("--compose", action="store_true", help="as lab_env/docker-compose.yml")
    where.add_argument("--swarm", action="store_true", help="as a Swarm stack (docker-stack.yml)")
    up.add_argument("--jupyter", action="store_true", help="with --compose: JupyterLab too")
    up.set_defaults(func=_lab_up)
    down = lab_sub.add_parser("down", help="stop the lab that `lab up` started")
    down.set_defaults(func=_lab_down)
    status = lab_sub.add_parser("status", help="is the lab up and healthy")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_lab_status)

    run = sub.add_parser("run", help="one run on a fresh lab; prints the summary")
    for model in (StrategyConfig, LoadConfig, LabConfig):
        _add_model_options(run, model)
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    run.add_argument("--fresh", action="store_true", help="ignore the cache of earlier runs")
    run.add_argument("--attach", action="store_true", help="use the lab `lab up` started")
    run.add_argument(
        "--backend",
        choices=("lab", "sim"),
        default="lab",
        help="lab: a live run; sim: the simulator (stampede.sim), same summary",
    )
    run.add_argument(
        "--origin-limit",
        type=int,
        metavar="N",
        help="with --backend sim: at most N origin reads at once, the rest queue FIFO "
        "(the lab's origin has no limit: refused without --backend sim)",
    )
    run.add_argument("--lab", choices=LAUNCHERS, help="the lab to start (default: STAMPEDE_LAB)")
    run.set_defaults(func=_run)

    sim = sub.add_parser("sim", help="the simulator: its constants, fleet-scale runs")
    sim_sub = sim.add_subparsers(required=True, metavar="ACTION")
    cal = sim_sub.add_parser("calibrate", help="measure this machine's constants (a live run)")
    cal.add_argument("--duration-s", type=float, default=20.0, help="the naive run's length, s")
    cal.set_defaults(func=_sim_calibrate)
    show = sim_sub.add_parser("show", help="the built-in and the stored constants")
    show.set_defaults(func=_sim_show)
    fl = sim_sub.add_parser("fleet", help="a fleet-scale simulation; prints its counts")
    _add_model_options(fl, StrategyConfig)
    for flag, kind, default in (
        ("--pods", int, 1000),
        ("--rate", float, 1e6),
        ("--keys", int, 1_000_000),
        ("--alpha", float, 1.0),
        ("--duration-s", float, 60.0),
        ("--shards", int, 1),
    ):
        fl.add_argument(flag, type=kind, default=default, help=f"default {default:g}")
    fl.add_argument("--json", action="store_true")
    fl.set_defaults(func=_sim_fleet)

    names = sub.add_parser("strategies", help="list the strategy names")
    names.set_defaults(func=_strategies)
    return parser


def _add_model_options(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    group = parser.add_argument_group(model.__name__)
    for name, field in model.model_fields.items():
        flags = ["--" + name.replace("_", "-")]
        if name.endswith("_s"):  # --duration 30 as well as --duration-s 30
            flags.append("--" + name.removesuffix("_s").replace("_", "-"))
        kind = _plain_type(field.annotation)
        help_text = f"{field.description} (default: {field.default})"
        options: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is typing.Literal:
            options["choices"] = typing.get_args(kind)
        else:
            options.update(type=kind, metavar=kind.__name__.upper())
        group.add_argument(*flags, **options)


def _plain_type(annotation: Any) -> Any:
    """``float | None`` -> ``float``; other annotations unchanged."""
    if isinstance(annotation, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _picked(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    return {k: v for k in model.model_fields if (v := getattr(args, k, None)) is not None}


# ---- output ------------------------------------------------------------------------------
def _lines(info: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in info.items())


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return value


def _table(summary: dict[str, Any]) -> str:
    """The metric table's CLI rows (:data:`stampede.metrics.CLI_ROWS`), label and value."""
    from stampede.metrics import CLI_ROWS, METRICS  # with pandas: only after a run

    rows: list[tuple[str, Any]] = [("strategy", summary["strategy"])]
    for name in CLI_ROWS:
        metric = METRICS[name]
        title = metric.label.format(pct="p50/p99/max")
        rows.append((title, metric.format(summary[name])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


if __name__ == "__main__":
    sys.exit(main())
