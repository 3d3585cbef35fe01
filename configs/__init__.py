"""Installed as the package ``mmrec.configs`` (pyproject.toml ``package-dir``) so that a wheel
carries the shipped configs; mmrec.config finds them with importlib.resources. Nothing to import."""
