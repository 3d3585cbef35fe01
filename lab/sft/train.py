"""`mmrec` with the lab's extra-loss plug-ins registered: how a lab/sft/configs/*.yaml is run.

    .venv/bin/python -m lab.sft.train sft train --stage lora --config lab/sft/configs/label_smoothing.yaml

Importing `lab.sft.losses` registers its losses with the product's trainer
(`mmrec.attributes.losses`); every argument is then the product's own CLI, in-process.
"""

from __future__ import annotations

import sys

import lab.sft.losses  # noqa: F401  registers label_smoothing, value_smoothing, colour_family, ...
from mmrec.cli import main as mmrec_main


def main(argv: list[str] | None = None) -> int:
    return mmrec_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
