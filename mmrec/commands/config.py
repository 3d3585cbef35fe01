"""`mmrec config show STAGE`: print the resolved config (defaults < files < profile < overrides)."""

from __future__ import annotations

import argparse

from mmrec.commands import add_config_args, stage_config


def register(sub) -> None:
    p = sub.add_parser("config", help="inspect configuration")
    s = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    s.required = True
    show = s.add_parser("show", help="print a stage's resolved config as YAML")
    show.add_argument("stage")
    add_config_args(show)
    show.set_defaults(handler=_show)


def _show(args: argparse.Namespace) -> int:
    import yaml

    cfg = stage_config(args, args.stage)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    return 0
