"""CLI command groups; each module's ``register(subparsers)`` must stay import-light."""

from __future__ import annotations

import argparse


def add_config_args(p: argparse.ArgumentParser) -> None:
    """--config FILE and repeated --set key=value, shared by every stage command."""
    p.add_argument("--config", dest="config_file", default=None,
                   help="YAML file applied on top of configs/<stage>.yaml and the profile")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set max_error_rate=0.1 (repeatable)")


def stage_config(args: argparse.Namespace, stage: str, **extra_overrides):
    from mmrec.config import load_config

    overrides = list(args.overrides) + [f"{k}={v}" for k, v in extra_overrides.items() if v is not None]
    return load_config(stage, profile=args.profile, path=args.config_file, overrides=overrides,
                       config_dir=args.config_dir)


def served_feedback_store(args: argparse.Namespace, *, serve_overrides: bool = True):
    """The feedback store `mmrec serve` writes for ``args.artifacts``: serve.yaml's
    ``feedback.path``, else ``<artifacts>/feedback/feedback.sqlite``. ``serve_overrides``: the
    command's --config/--set are serve settings (False: they belong to another stage)."""
    from mmrec.config import load_config

    settings = stage_config(args, "serve") if serve_overrides else \
        load_config("serve", profile=args.profile, config_dir=args.config_dir)
    return settings.model_copy(update={"artifacts": str(args.artifacts)}).feedback_path()
