"""The serve configs (serving/serve_config*.yaml) as Ray Serve reads them on a cluster, and as
`mmrec serve` reads them locally (which must never install packages at run time)."""

from __future__ import annotations

import os
import tomllib
import typing
from pathlib import Path

import pytest
import yaml

from mmrec.serving.settings import DEFAULT_SERVE_CONFIG, SERVING_DIR

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["serve_config.yaml", "serve_config.gpu.yaml"]
# Ray declares its configs with pydantic v1-style Field extras; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def _model_in(annotation):
    """The pydantic model class inside a (Union/Optional) annotation, if any."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for a in typing.get_args(annotation) if (m := _model_in(a))), None)


def unknown_keys(model, raw, where: str = "") -> list[str]:
    """Keys of ``raw`` that the validated pydantic ``model`` has no field for.

    Ray's Serve schemas accept unknown keys on purpose (a newer config on an older Ray), so a
    misspelt option (``max_ongoing_request``) would be dropped without a word; this walks the
    validated models beside the YAML and names every key they did not take.
    """
    from pydantic import BaseModel

    fields = type(model).model_fields
    names = {n: n for n in fields} | {f.alias: n for n, f in fields.items() if f.alias}
    out = []
    for key, value in raw.items():
        if key not in names:
            out.append(f"{where}{key}")
            continue
        sub = getattr(model, names[key])
        if isinstance(sub, dict) and isinstance(value, dict):
            # typed Optional[Union[Dict, Model]] (autoscaling_config): Ray makes the model later
            cls = _model_in(fields[names[key]].annotation)
            sub = cls.model_validate(value) if cls else sub
        if isinstance(sub, BaseModel) and isinstance(value, dict):
            out += unknown_keys(sub, value, f"{where}{key}.")
        elif isinstance(sub, list) and isinstance(value, list):
            for i, (m, r) in enumerate(zip(sub, value)):
                if isinstance(m, BaseModel) and isinstance(r, dict):
                    out += unknown_keys(m, r, f"{where}{key}[{i}].")
    return out


@pytest.mark.parametrize("name", CONFIGS)
def test_serve_config_passes_ray_serves_own_schema(name):
    """What `serve deploy` (KubeRay's RayService) validates, so that a typo fails here, not on
    the cluster; and each application installs mmrec's serving extra at this version."""
    from ray.serve.schema import ServeDeploySchema

    data = yaml.safe_load((SERVING_DIR / name).read_text())
    schema = ServeDeploySchema.model_validate(data)
    assert unknown_keys(schema, data) == []
    assert len(schema.applications) == 1
    app = schema.applications[0]
    assert app.import_path == "mmrec.serving.ray_app:build_app"
    assert app.runtime_env == {"pip": [f"mmrec[serve]=={version()}"]}, (
        f"{name}: runtime_env must install mmrec[serve]=={version()} (pyproject's version)")
    assert {d.name for d in app.deployments} <= {"Ingress", "PhotoModels"}


def test_a_misspelt_key_is_found():
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    data = yaml.safe_load(DEFAULT_SERVE_CONFIG.read_text())
    data["applications"][0]["deployments"][0]["max_ongoing_request"] = 8
    data["applications"][0]["deployments"][0]["autoscaling_config"]["max_replica"] = 3
    data["http_options"]["prot"] = 1
    assert unknown_keys(ServeDeploySchema.model_validate(data), data) == [
        "http_options.prot", "applications[0].deployments[0].autoscaling_config.max_replica",
        "applications[0].deployments[0].max_ongoing_request"]
    # a bad value is Ray's own error
    data["applications"][0]["deployments"][0]["max_ongoing_requests"] = -1
    with pytest.raises(ValidationError, match="max_ongoing_requests"):
        ServeDeploySchema.model_validate(data)


def test_default_serve_config_is_the_shipped_one():
    # from a wheel this is site-packages/mmrec/serving_files; from a checkout, serving/
    assert DEFAULT_SERVE_CONFIG == SERVING_DIR / "serve_config.yaml" and DEFAULT_SERVE_CONFIG.is_file()
    assert (SERVING_DIR / "kiosk" / "index.html").is_file()


@pytest.mark.parametrize("name", CONFIGS)
def test_local_serve_installs_nothing(name, tmp_path, monkeypatch):
    """`mmrec serve` deploys the config's application in-process on local Ray: the runtime_env
    (pip) is not passed to Ray, which would otherwise build a virtualenv and pip install mmrec."""
    import ray
    from ray import serve

    import mmrec.serving.local as local
    from mmrec.serving.settings import ServeSettings

    calls: dict[str, dict] = {}
    # start_ray sets these for the Ray it starts; restore them afterwards
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", os.environ.get("RAY_SERVE_ENABLE_HA_PROXY", ""))
    monkeypatch.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "disabled"))
    monkeypatch.setattr(ray, "init", lambda *a, **kw: calls.setdefault("init", kw))
    monkeypatch.setattr(serve, "start", lambda *a, **kw: calls.setdefault("start", kw))
    monkeypatch.setattr(serve, "run", lambda app, **kw: calls.setdefault("run", {"app": app, **kw}))
    monkeypatch.setattr(local, "wait_ready", lambda url, timeout_s=120.0: None)
    settings = ServeSettings(artifacts=str(tmp_path), port=8765, reload_poll_s=0)
    server = local.start_ray(settings, serve_config=SERVING_DIR / name, profile="tiny", num_cpus=2)
    assert server.url == "http://127.0.0.1:8765"
    assert "runtime_env" not in calls["init"] and "runtime_env" not in calls["run"]
