"""`mmrec ab report`: an A/B experiment's click, add-to-cart and purchase rates per variant.

Reads the feedback store the server writes (default: serve.yaml's ``feedback.path``) or a
`mmrec feedback export` folder; the statistics are explained in `mmrec.ab.report`.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from mmrec.commands import add_config_args, served_feedback_store


def _when(text: str) -> dt.datetime:
    """A UTC day (2026-12-01) or time (2026-12-01T12:00, offset allowed; naive means UTC)."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError as e:
        from mmrec.cli import ArgumentError

        raise ArgumentError(f"expected a date or time like 2026-12-01 or 2026-12-01T12:00, got {text!r}") from e
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def register(sub) -> None:
    p = sub.add_parser("ab", help="A/B experiments declared in serve.yaml (ab:): the report")
    s = p.add_subparsers(dest="ab_command", metavar="SUBCOMMAND")
    s.required = True
    r = s.add_parser("report", help="CTR, add-to-cart and purchase rate per variant, 95%% intervals, "
                                    "difference to control")
    src = r.add_mutually_exclusive_group()
    src.add_argument("--store", type=Path, default=None, help="the SQLite feedback store (default: from serve.yaml)")
    src.add_argument("--export", type=Path, default=None, help="a `mmrec feedback export` folder instead")
    r.add_argument("--since", type=_when, default=None, help="first answer time counted (UTC date or ISO time)")
    r.add_argument("--until", type=_when, default=None, help="answers before this time (UTC date or ISO time)")
    r.add_argument("--attribution-window-hours", type=float, default=24.0,
                   help="an event counts for an answer up to this long after it (default 24)")
    r.add_argument("--experiment", default=None, help="which experiment (needed when the data holds several)")
    r.add_argument("--control", default=None, help="baseline variant (default: 'control', else the first by name)")
    r.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of users (default 2000)")
    r.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    r.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")
    add_config_args(r)
    r.set_defaults(handler=_report)


def _report(args) -> int:
    from mmrec.ab.report import load, report, table
    from mmrec.artifacts import atomic_write_text
    from mmrec.cli import ArgumentError

    if not 0 < args.attribution_window_hours <= 24 * 90:
        raise ArgumentError(f"--attribution-window-hours must be in (0, 2160], got {args.attribution_window_hours}")
    if not 100 <= args.resamples <= 100_000:
        raise ArgumentError(f"--resamples must be 100..100000, got {args.resamples}")
    if args.since and args.until and args.since >= args.until:
        raise ArgumentError(f"--since ({args.since.isoformat()}) must be before --until ({args.until.isoformat()})")
    store = args.store
    if store is None and args.export is None:
        store = served_feedback_store(args)
    impressions, events = load(store=store, export=args.export)
    rep = report(impressions, events, experiment=args.experiment, since=args.since, until=args.until,
                 window=dt.timedelta(hours=args.attribution_window_hours), control=args.control,
                 resamples=args.resamples, seed=args.seed)
    print(table(rep))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(rep, indent=1))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
