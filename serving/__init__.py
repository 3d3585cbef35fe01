"""Installed as the package ``mmrec.serving_files`` (pyproject.toml ``package-dir``) so that a
wheel carries the serve configs and the kiosk page `mmrec serve` uses. Nothing to import."""
