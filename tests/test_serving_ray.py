"""The Ray Serve application: deployments wired by handles (local testing mode, fast) and the
real thing on a local Ray bound to 127.0.0.1 (slow)."""

from __future__ import annotations

import os

import pytest

from outfit_fixtures import jpeg_bytes, write_items

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
KEY = "ray-test-key"
# Ray declares its configs with pydantic v1-style Field extras; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mmrec.artifacts import ArtifactStore

    root = tmp_path_factory.mktemp("ray")
    st = ArtifactStore(root / "artifacts")
    write_items(st, images_dir=root / "images")
    return st


def app_args(store, **kw):
    from mmrec.serving.settings import ServeSettings

    settings = ServeSettings(artifacts=str(store.root), reload_poll_s=0).with_key(KEY)
    return {"artifacts": str(store.root), "profile": "tiny",
            "settings": settings.model_dump(mode="json"), **kw}


def test_build_app_refuses_unknown_args(store):
    from mmrec.errors import ConfigError
    from mmrec.serving.ray_app import build_app

    with pytest.raises(ConfigError, match="unknown application args"):
        build_app({"artifact": "typo"})


def test_serve_config_binds_loopback(tmp_path):
    from mmrec.errors import ConfigError
    from mmrec.serving.settings import ServeSettings
    from mmrec.serving.local import DEFAULT_SERVE_CONFIG
    from mmrec.serving.ray_app import read_serve_config

    cfg = read_serve_config(DEFAULT_SERVE_CONFIG)
    assert cfg["http_options"]["host"] == "127.0.0.1"
    names = {d["name"]: d for d in cfg["applications"][0]["deployments"]}
    # on CPUs the photo models live in the Ingress replicas (no hop)
    assert set(names) == {"Ingress"} and cfg["applications"][0]["args"]["photo_deployment"] is False
    assert names["Ingress"]["ray_actor_options"]["num_cpus"] < 1
    assert "autoscaling_config" in names["Ingress"] and names["Ingress"]["max_ongoing_requests"] > 0
    # the GPU variant gives the photo models their own deployment with a GPU
    gpu = read_serve_config(DEFAULT_SERVE_CONFIG.with_name("serve_config.gpu.yaml"))
    gpu_names = {d["name"]: d for d in gpu["applications"][0]["deployments"]}
    assert gpu["applications"][0]["args"]["photo_deployment"] is True
    assert gpu_names["PhotoModels"]["ray_actor_options"]["num_gpus"] == 1
    assert gpu_names["PhotoModels"]["max_ongoing_requests"] >= ServeSettings().photo_batch_size
    bad = tmp_path / "public.yaml"
    bad.write_text(DEFAULT_SERVE_CONFIG.read_text().replace("host: 127.0.0.1", "host: 0.0.0.0"))
    with pytest.raises(ConfigError, match="loopback"):
        read_serve_config(bad)


@pytest.mark.parametrize("photo_deployment", [True, False])
def test_local_testing_mode_composes_the_deployments(store, photo_deployment):
    from ray import serve

    from mmrec.outfit.photo import ComponentMissing
    from mmrec.serving.ray_app import build_app

    handle = serve.run(build_app(app_args(store, photo_deployment=photo_deployment)), _local_testing_mode=True)
    out = handle.recommend_json.remote({"scene": "office", "k": 2, "filters": {"genders": ["men"]}}).result()
    assert [i["item_id"] for i in out["outfits"][0]["items"]] == ["t1", "b1", "s1", "a1"]
    assert out["versions"]["items"] == store.current_version("items")
    assert handle.versions.remote().result()["recall"].startswith("absent")
    # the photo route goes through the PhotoModels deployment or the replica's own batched
    # models: with no tagger or encoder artifact it refuses with the component named, rather
    # than inventing attributes
    with pytest.raises(ComponentMissing, match="tagger or an encoder"):
        handle.recommend_photo.remote(jpeg_bytes(), {"scene": "office"}).result()


@pytest.mark.slow
def test_real_local_ray_serves_http_on_loopback(store):
    import httpx

    from mmrec.serving.local import free_port, start_ray
    from mmrec.serving.settings import ServeSettings

    settings = ServeSettings(artifacts=str(store.root), port=free_port(), reload_poll_s=0).with_key(KEY)
    server = start_ray(settings, profile="tiny", num_cpus=2)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        h = {"X-API-Key": KEY}
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert httpx.post(f"{server.url}/v1/recommend", json={"scene": "office"}).status_code == 401
        r = httpx.post(f"{server.url}/v1/recommend", json={"scene": "office", "k": 2}, headers=h, timeout=30)
        assert r.status_code == 200 and r.json()["outfits"]
        r = httpx.post(f"{server.url}/v1/recommend/photo", headers=h, timeout=30,
                       files={"image": ("p.jpg", jpeg_bytes(), "image/jpeg")}, data={"scene": "office"})
        assert r.status_code == 503 and r.json()["error"] == "component_missing"
        r = httpx.post(f"{server.url}/v1/recommend/photo", headers=h, timeout=30,
                       files={"image": ("p.jpg", b"junk", "image/jpeg")}, data={"scene": "office"})
        assert r.status_code == 400
        assert httpx.get(f"{server.url}/kiosk/").status_code == 200

        def chunks():  # no Content-Length: refused while it streams
            for _ in range(20):
                yield b"x" * 1_000_000

        r = httpx.post(f"{server.url}/v1/recommend", content=chunks(), headers=h, timeout=30)
        assert r.status_code == 413
        assert "mmrec_http_requests_total" in httpx.get(f"{server.url}/metrics", headers=h).text
    finally:
        server.stop()
