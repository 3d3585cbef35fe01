"""Package list for setuptools; everything else is in pyproject.toml.

pyproject's ``packages.find`` cannot add a package mapped from a folder outside ``mmrec/``
(``package-dir``): the two top-level folders users read, ``configs/`` and ``serving/``, ship
as ``mmrec.configs`` and ``mmrec.serving_files`` (pyproject.toml ``[tool.setuptools.package-dir]``),
beside every package found under ``mmrec/`` (new subpackages are picked up without a list to keep).
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["mmrec", "mmrec.*"]) + ["mmrec.configs", "mmrec.serving_files"])
