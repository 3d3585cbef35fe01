"""`mmrec` with the lab's encoder architectures registered: how a lab/embed/model_configs/*.json is trained.

    .venv/bin/python -m lab.embed.train embed train --set model.name=mmrec-clip-mini96 ...

The product registers `mmrec/embed/model_configs/` (mmrec-clip-tiny, mmrec-clip-mini); this adds
`lab/embed/model_configs/` to open_clip's registry, then runs the product's own CLI in-process.
A trained encoder artifact carries its architecture (open_clip_config.json), so it loads anywhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mmrec.cli import main as mmrec_main

CONFIGS = Path(__file__).resolve().parent / "model_configs"


def register() -> None:
    import open_clip

    from mmrec.embed.encoder import register_model_configs

    register_model_configs()
    open_clip.add_model_config(CONFIGS)


def main(argv: list[str] | None = None) -> int:
    register()
    return mmrec_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
