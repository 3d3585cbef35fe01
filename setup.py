"""Package list for setuptools; everything else is in pyproject.toml.

pyproject's ``packages.find`` cannot add a package mapped from a folder outside ``mmrec/``
(``package-dir``): the two top-level folders users read, ``configs/`` and ``serving/``, ship
as ``mmrec.configs`` and ``mmrec.serving_files`` (pyproject.toml ``[tool.setuptools.package-dir]``),
beside every package found under ``mmrec/``. Namespace discovery, as pyproject's find did:
mmrec/embed and mmrec/recall have no ``__init__.py``. New subpackages need no list to keep.
"""

from setuptools import find_namespace_packages, setup


def mapped(package: str, folder: str) -> list[str]:
    """``package`` and its subfolders (configs/profiles -> mmrec.configs.profiles, ...)."""
    return [package] + [f"{package}.{sub}" for sub in find_namespace_packages(where=folder)]


setup(packages=find_namespace_packages(include=["mmrec*"]) + mapped("mmrec.configs", "configs")
      + mapped("mmrec.serving_files", "serving"))
