"""The `mmrec` command. ``main(argv)`` is callable in-process (tests) and returns the exit code.

Exit codes: 0 success, 2 bad input (file, row, option, config), 1 internal error.
Each command group lives in `mmrec/commands/<group>.py`, whose ``register`` adds its parsers
without importing heavy libraries; handlers import what they need when they run, so
`mmrec --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

from mmrec import __version__
from mmrec.errors import InputError

# Groups registered in this order; each module defines register(subparsers).
COMMAND_MODULES = ("catalog", "config", "demo", "embed", "index", "outfit", "serve", "sft", "tag", "bench", "rank", "feedback", "ab")


# Top-level modules of the optional extras (pyproject.toml): a command run without its extra
# says which one to install instead of failing with a bare ModuleNotFoundError.
EXTRA_OF_MODULE = {
    **dict.fromkeys(("torch", "torchvision", "transformers", "peft", "accelerate", "safetensors",
                     "open_clip", "faiss", "lightgbm", "sklearn", "scipy", "ray", "fastapi", "starlette",
                     "uvicorn", "multipart", "python_multipart", "prometheus_client", "httpx", "aiohttp"),
                    "serve"),
    **dict.fromkeys(("qwen_vl_utils", "imagehash", "tokenizers", "pandas", "fsspec"), "train"),
}


class ArgumentError(InputError):
    pass


def missing_extra_message(e: ModuleNotFoundError) -> str | None:
    """'pip install mmrec[<extra>]' advice when ``e`` is a module of an extra, else None."""
    extra = EXTRA_OF_MODULE.get((e.name or "").split(".")[0])
    if extra is None:
        return None
    if extra == "serve":  # train includes serve
        how = "pip install 'mmrec[serve]' to serve, 'mmrec[train]' to train as well"
    else:
        how = f"pip install 'mmrec[{extra}]'"
    return f"this command needs {e.name!r}, which mmrec's {extra!r} extra installs: {how} (a checkout: make setup)"


class _Parser(argparse.ArgumentParser):
    # argparse exits on its own; raise instead so main() controls the exit code (2) and tests
    # calling main() in-process are not killed by SystemExit.
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ArgumentError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(prog="mmrec", description="Multimodal fashion recommender.")
    parser.add_argument("--version", action="version", version=f"mmrec {__version__}")
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                        help="artifact root directory (default: ./artifacts)")
    parser.add_argument("--profile", default="mini", choices=("tiny", "mini", "standard"),
                        help="model profile (default: mini, offline CPU models)")
    parser.add_argument("--config-dir", type=Path, default=None,
                        help="folder with <stage>.yaml and profiles/ (default: the repo's configs/)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="print tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"mmrec.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.handler(args) or 0)
    except SystemExit as e:  # --help / --version
        return int(e.code or 0)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        if debug:
            traceback.print_exc()
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI boundary: report, never hide
        hint = missing_extra_message(e) if isinstance(e, ModuleNotFoundError) else None
        if hint:  # an install the user can complete, not a bug: exit 2 like bad input
            print(f"error: {hint}", file=sys.stderr)
            if debug:
                traceback.print_exc()
            return 2
        print(f"internal error: {type(e).__name__}: {e}", file=sys.stderr)
        if debug or os.environ.get("MMREC_DEBUG"):
            traceback.print_exc()
        else:
            print("(run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
