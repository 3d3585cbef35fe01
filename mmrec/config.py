"""Typed configuration: one pydantic model per stage, YAML files, profiles, dotted overrides.

Resolution order for a stage (later wins):
  1. the model's field defaults,
  2. ``configs/<stage>.yaml``,
  3. the ``<stage>:`` section of ``configs/profiles/<profile>.yaml`` (tiny | mini | standard),
  4. a user file given with ``--config``,
  5. ``key.sub=value`` overrides from the command line (values parsed as YAML scalars).
Unknown keys are errors that name the key and list the valid ones (``extra="forbid"``).
"""

from __future__ import annotations

import importlib
import importlib.resources
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mmrec.errors import ConfigError, InputError

PROFILES = ("tiny", "mini", "standard")
DEFAULT_PROFILE = "mini"
# the source checkout this module sits in, when it does (not in a wheel install)
REPO_CHECKOUT = Path(__file__).resolve().parent.parent


def resolve_path(path: str | Path) -> Path:
    """A relative path is looked up from the working directory, then from the repo checkout."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return REPO_CHECKOUT / p


def shipped_dir(package: str, folder: str) -> Path:
    """The repository's top-level ``folder``, installed as package data ``package``.

    ``configs/`` and ``serving/`` stay at the top of the repository, where users read them, and
    ship in the wheel as ``mmrec.configs`` / ``mmrec.serving_files`` (pyproject.toml
    ``package-dir``), so importlib.resources finds them from a wheel and from an editable
    install alike. An editable install made before they became package data (or a checkout on
    PYTHONPATH) has no such package: then the checkout's own folder is the one. Nothing is
    checked here (this runs at import); the readers raise a ConfigError naming a missing path.
    """
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        return REPO_CHECKOUT / folder
    return Path(str(root))  # a plain directory: pip installs packages unzipped


DEFAULT_CONFIG_DIR = shipped_dir("mmrec.configs", "configs")

# stage name -> "module:Class"; imported lazily so that loading a config never pulls in torch.
STAGES: dict[str, str] = {
    "ingest": "mmrec.catalog.config:IngestConfig",
    "embed": "mmrec.embed.config:EmbedConfig",
    "index": "mmrec.recall.config:IndexConfig",
    "recall": "mmrec.recall.config:RecallConfig",
    "recommend": "mmrec.recommend.config:RecommenderConfig",
    "serve": "mmrec.serving.settings:ServeSettings",
    "sft_data": "mmrec.attributes.dataset.config:SftDataConfig",
    "sft": "mmrec.attributes.config:SftConfig",
    "rank": "mmrec.rank.config:RankConfig",
}

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config and contract model: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def register_stage(name: str, target: str) -> None:
    """Register a stage's config model as ``"package.module:ClassName"`` (used by later stages)."""
    STAGES[name] = target


def stage_model(stage: str) -> type[BaseModel]:
    try:
        target = STAGES[stage]
    except KeyError:
        raise ConfigError(f"unknown config stage {stage!r}; known: {sorted(STAGES)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def read_yaml_model(path: str | Path, model: type[M], what: str) -> M:
    """A YAML file validated by ``model``; errors name ``what`` and the file (unreadable:
    InputError; bad YAML or a bad field: ConfigError)."""
    path = Path(path)
    try:
        return model.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e}") from e
    except (yaml.YAMLError, ValidationError) as e:
        raise ConfigError(f"{what} {path}: {e}") from e


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated recursively by ``update`` (mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``"a.b.c=3"`` into ``{"a": {"b": {"c": 3}}}``; the value is parsed as a YAML scalar."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {e}") from e
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _format_validation_error(stage: str, source: str, err: ValidationError) -> str:
    lines = [f"invalid {stage} config ({source}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{loc}'")
        else:
            lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def validate_config(model: type[M], data: dict[str, Any], *, stage: str, source: str) -> M:
    """Validate ``data`` against ``model``; raise a ConfigError that lists every bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        msg = _format_validation_error(stage, source, e)
        fields = sorted(model.model_fields)
        if any(x["type"] == "extra_forbidden" for x in e.errors()):
            msg += f"\n  valid top-level keys: {fields}"
        raise ConfigError(msg) from e


def config_folder(config_dir: str | Path | None = None, profile: str = DEFAULT_PROFILE) -> Path:
    """The folder ``load_config`` reads: ``config_dir`` when given, else the shipped one.

    A folder that is not there is an error, never an empty config: a typo in ``--config-dir``
    or an install without its package data would otherwise run every stage on field defaults
    (a different model, silently).
    """
    if config_dir is not None:
        cdir = Path(config_dir)
        if not cdir.is_dir():
            raise ConfigError(f"config folder {str(cdir)!r} (--config-dir) is not a folder; expected one holding "
                              f"<stage>.yaml files and profiles/<profile>.yaml (like the shipped "
                              f"{DEFAULT_CONFIG_DIR})")
        return cdir
    profile_file = DEFAULT_CONFIG_DIR / "profiles" / f"{profile}.yaml"
    if not profile_file.is_file():
        raise ConfigError(f"the shipped config folder is incomplete: {profile_file} is missing "
                          f"(expected {DEFAULT_CONFIG_DIR} with <stage>.yaml files and profiles/ "
                          "{tiny,mini,standard}.yaml, installed as package data mmrec.configs); "
                          "reinstall mmrec (`make setup`, or pip install the wheel), or pass --config-dir")
    return DEFAULT_CONFIG_DIR


def load_config(
    stage: str,
    *,
    profile: str = DEFAULT_PROFILE,
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    config_dir: str | Path | None = None,
) -> BaseModel:
    """Build the validated config of ``stage``.

    Args:
        stage: a registered stage name (``ingest``, ...).
        profile: ``tiny`` (tests), ``mini`` (offline CPU, default) or ``standard`` (pretrained, GPU).
        path: optional user YAML applied on top of the shipped files.
        overrides: dotted ``key=value`` strings applied last.
        config_dir: folder holding ``<stage>.yaml`` and ``profiles/``; defaults to the shipped
            ``configs/`` (:data:`DEFAULT_CONFIG_DIR`). The folder must exist; a stage or
            profile file missing from a folder given here contributes nothing (a folder may
            configure only some stages).
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    model = stage_model(stage)
    cdir = config_folder(config_dir, profile)
    data: dict[str, Any] = {}
    sources = ["defaults"]
    stage_file = cdir / f"{stage}.yaml"
    if stage_file.is_file():
        data = deep_merge(data, _read_yaml(stage_file))
        sources.append(str(stage_file))
    profile_file = cdir / "profiles" / f"{profile}.yaml"
    if profile_file.is_file():
        section = _read_yaml(profile_file).get(stage) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{profile_file}: section {stage!r} must be a mapping")
        data = deep_merge(data, section)
        sources.append(f"{profile_file}[{stage}]")
    if path is not None:
        data = deep_merge(data, _read_yaml(Path(path)))
        sources.append(str(path))
    for text in overrides:
        data = deep_merge(data, parse_override(text))
        sources.append(f"override {text}")
    return validate_config(model, data, stage=stage, source=" < ".join(sources))
