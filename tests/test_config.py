"""Config loading: layering, profiles, dotted overrides, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmrec.config import load_config, parse_override
from mmrec.errors import ConfigError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_layers_apply_in_order(tmp_path):
    cdir = tmp_path / "configs"
    write(cdir / "ingest.yaml", "max_error_rate: 0.2\nworkers: 3\n")
    write(cdir / "profiles" / "tiny.yaml", "ingest:\n  workers: 1\n")
    user = write(tmp_path / "user.yaml", "year_min: 2000\n")
    cfg = load_config("ingest", profile="tiny", config_dir=cdir, path=user,
                      overrides=["images.min_side=10"])
    assert cfg.max_error_rate == 0.2      # stage file
    assert cfg.workers == 1               # profile beats stage file
    assert cfg.year_min == 2000           # user file
    assert cfg.images.min_side == 10      # override, nested
    assert cfg.images.max_pixels == 40_000_000  # untouched nested default survives the merge


def test_unknown_key_is_named(tmp_path):
    cdir = tmp_path / "configs"
    write(cdir / "ingest.yaml", "max_eror_rate: 0.2\n")
    with pytest.raises(ConfigError, match="unknown key 'max_eror_rate'"):
        load_config("ingest", config_dir=cdir)


def test_unknown_nested_override_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'images.min_sid'"):
        load_config("ingest", config_dir=tmp_path, overrides=["images.min_sid=3"])


def test_bad_value_names_field_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"max_error_rate.*1\.5"):
        load_config("ingest", config_dir=tmp_path, overrides=["max_error_rate=1.5"])


def test_bad_yaml_and_bad_profile(tmp_path):
    bad = write(tmp_path / "bad.yaml", "a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("ingest", config_dir=tmp_path, path=bad)
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_config("ingest", profile="huge", config_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown config stage"):
        load_config("nope", config_dir=tmp_path)


def test_parse_override_types():
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("flag=true") == {"flag": True}
    assert parse_override("name=hello world") == {"name": "hello world"}
    with pytest.raises(ConfigError):
        parse_override("novalue")
    with pytest.raises(ConfigError):
        parse_override("a..b=1")


def test_shipped_configs_are_valid():
    for profile in ("tiny", "mini", "standard"):
        cfg = load_config("ingest", profile=profile)
        assert cfg.format == "myntra"


def test_missing_config_dir_is_an_error_not_an_empty_config(tmp_path, capsys):
    from mmrec.cli import main

    missing = tmp_path / "confgis"  # a typo: must not run the stage on field defaults
    with pytest.raises(ConfigError, match=r"config folder '.*confgis' \(--config-dir\) is not a folder"):
        load_config("ingest", config_dir=missing)
    assert main(["--config-dir", str(missing), "config", "show", "ingest"]) == 2
    assert "confgis" in capsys.readouterr().err
    # an existing folder may configure only some stages: a missing stage file adds nothing
    assert load_config("ingest", config_dir=tmp_path).format == "myntra"  # the field default


def test_missing_shipped_config_folder_is_an_error(tmp_path, monkeypatch):
    import mmrec.config as config

    monkeypatch.setattr(config, "DEFAULT_CONFIG_DIR", tmp_path / "site-packages" / "mmrec" / "configs")
    with pytest.raises(ConfigError, match=r"shipped config folder is incomplete: .*profiles/mini\.yaml "
                                          r"is missing.*package data mmrec\.configs"):
        load_config("ingest")


def test_shipped_config_folder_is_complete():
    """Every stage and profile has its file where the package data says (wheel or checkout)."""
    from mmrec.config import DEFAULT_CONFIG_DIR, PROFILES, STAGES

    for stage in STAGES:
        assert (DEFAULT_CONFIG_DIR / f"{stage}.yaml").is_file(), stage
    for profile in PROFILES:
        assert (DEFAULT_CONFIG_DIR / "profiles" / f"{profile}.yaml").is_file(), profile
    assert (DEFAULT_CONFIG_DIR / "scenes.yaml").is_file()


def test_shipped_dir_finds_package_data_or_the_checkout():
    import importlib.util

    from mmrec.config import REPO_CHECKOUT, shipped_dir

    # installed (wheel, or an editable install made since configs/ became package data)
    if importlib.util.find_spec("mmrec.configs") is not None:
        import mmrec.configs

        assert shipped_dir("mmrec.configs", "configs") == Path(mmrec.configs.__file__).parent
    # an older editable install or a bare checkout: the checkout's folder
    assert shipped_dir("mmrec.no_such_package", "configs") == REPO_CHECKOUT / "configs"
