"""Ray Serve application: the FastAPI ingress (holding the recommender) and, where the photo
models need another resource (a GPU), a photo-model deployment wired with a `DeploymentHandle`.

Deployments are split only where resources differ: every path is proxy -> ingress (the
recommender lives in the ingress replica: each extra hop costs ~10 ms on 2 cores). On CPUs the
tagger/encoder live there too (``photo_deployment: false`` in ``serving/serve_config.yaml``);
``serving/serve_config.gpu.yaml`` puts them in their own GPU deployment that the photo routes
call. ``build_app`` is the application builder both configs name (``serve deploy`` on a
cluster, ``mmrec serve`` locally).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml
from ray import serve
from ray.serve.handle import DeploymentHandle

from mmrec.ab.router import load_recommender
from mmrec.artifacts import ArtifactStore
from mmrec.config import load_config
from mmrec.errors import ConfigError
from mmrec.outfit.photo import PhotoAnalysis, PhotoModels
from mmrec.recommend import RecommenderConfig
from mmrec.serving.app import LocalPhotoBackend, create_app
from mmrec.serving.batching import BatchedPhotos
from mmrec.serving.holder import RecommenderHolder
from mmrec.serving.settings import ServeSettings

log = logging.getLogger(__name__)


class HandlePhotoBackend:
    """Photo analysis on the PhotoModels deployment (the ingress decodes and shrinks first)."""

    def __init__(self, handle: DeploymentHandle):
        self.handle = handle

    async def analyze(self, image: Any) -> PhotoAnalysis:
        return await self.handle.analyze.remote(image)


@serve.deployment(name="PhotoModels")
class PhotoModelsDeployment:
    """Tagger + encoder; reloads when their artifacts' CURRENT pointers move.

    Concurrent photos are tagged together by a `GreedyBatcher`: a pass takes every photo that
    queued while the previous one ran (Ray's ``@serve.batch`` timer formed batches of ~3 photos
    at concurrency 8 and left the model idle between timers; docs/serving.md "Where the time goes").
    """

    def __init__(self, artifacts: str, device: str = "cpu", reload_poll_s: float = 10.0,
                 use_tagger: bool = True, batch_size: int = 8, batch_wait_ms: float = 5.0,
                 mirror_view: bool = False):
        from mmrec.serving.threads import limit_threads

        limit_threads()
        store = ArtifactStore(artifacts)
        self.holder = RecommenderHolder(
            lambda: PhotoModels.from_store(store, device=device, with_tagger=use_tagger,
                                           tagger_mirror=mirror_view)[0],
            store, reload_poll_s, freeze_heap=True)
        # the pass runs in a worker thread: the event loop keeps taking photos meanwhile
        self.photos = BatchedPhotos(lambda: self.holder.current, max_batch=batch_size, gather_ms=batch_wait_ms)
        self.holder.load()
        self.holder.start()

    async def analyze(self, image: Any) -> PhotoAnalysis:
        return await self.photos.analyze(image)

    def versions(self) -> dict[str, str]:
        return self.holder.current.versions


@serve.deployment(name="Ingress")
@serve.ingress()
class Ingress:
    """FastAPI ingress holding the recommender; photos go to the PhotoModels deployment when
    there is one, else to this replica's own tagger/encoder."""

    def __init__(self, settings: dict[str, Any], recommend_config: dict[str, Any] | None = None,
                 photo: DeploymentHandle | None = None):
        from mmrec.serving.threads import limit_threads

        limit_threads()
        self.settings = ServeSettings.model_validate(settings)
        store = ArtifactStore(self.settings.artifacts)
        cfg = RecommenderConfig.model_validate(recommend_config or {})
        local_photo = photo is None
        self.holder = RecommenderHolder(
            lambda: load_recommender(store, self.settings.ab, config=cfg, with_photo_models=local_photo,
                                     profile=self.settings.profile,
                                     photo_tagger=self.settings.photo_tagger,
                                     photo_mirror=self.settings.photo_mirror_view),
            store, self.settings.reload_poll_s, freeze_heap=True)
        self.holder.load()
        self.holder.start()
        # one photo path for the HTTP routes and the handle calls below: a PhotoModels deployment,
        # or this replica's own models behind the same greedy batching
        self.photo = (HandlePhotoBackend(photo) if photo is not None else
                      LocalPhotoBackend(self.holder, self.settings.photo_batch_size,
                                        self.settings.photo_batch_wait_ms))

    def __serve_build_asgi_app__(self):

        return create_app(self.holder, self.settings, photo=self.photo)

    # Handle-callable methods (used by Ray's local testing mode and by other deployments).
    async def recommend_json(self, payload: dict[str, Any]) -> dict[str, Any]:
        from starlette.concurrency import run_in_threadpool

        from mmrec.api_models import RecommendRequest

        req = RecommendRequest.model_validate(payload)
        resp = await run_in_threadpool(self.holder.current.recommend, req)
        return resp.model_dump(mode="json")

    async def recommend_photo(self, image_bytes: bytes, payload: dict[str, Any],
                              slot: str | None = None, category: str | None = None) -> dict[str, Any]:
        """``slot``/``category``: the shopper's hint of what the item is (as the HTTP form's)."""
        from starlette.concurrency import run_in_threadpool

        from mmrec.api_models import RecommendRequest
        from mmrec.images import load_image
        from mmrec.recommend.slot_confidence import parse_slot_hint

        req = RecommendRequest.model_validate(payload)
        img = load_image(image_bytes, self.settings.image)
        img.thumbnail((self.settings.photo_max_side, self.settings.photo_max_side))
        rec = self.holder.current
        analysis = await self.photo.analyze(img)
        resp = await run_in_threadpool(rec.recommend, req, photo=analysis,
                                       slot_hint=parse_slot_hint(slot, category, rec.tax))
        return resp.model_dump(mode="json")

    def versions(self) -> dict[str, str]:
        return self.holder.status()["versions"]


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder (``import_path: mmrec.serving.ray_app:build_app``).

    Args (from the serve config's ``args``):
        artifacts: artifact root (default ./artifacts).
        profile: config profile for the ``serve`` and ``recommend`` stages (default mini).
        settings_file: a YAML applied over ``configs/serve.yaml`` (keys, limits).
        settings: inline settings overrides (mapping), applied last.
        photo_deployment: tagger/encoder in their own deployment (a GPU one); false keeps them
            in each Ingress replica (serving/serve_config.yaml: on CPUs the hop costs more than
            it saves). Default true, as for a cluster.
        deployment_options: per-deployment Ray options (``mmrec serve`` passes the config's
            ``deployments`` here; ``serve deploy`` applies them itself).
    """
    args = dict(args or {})
    unknown = set(args) - {"artifacts", "profile", "settings_file", "settings", "photo_deployment",
                           "deployment_options"}
    if unknown:
        raise ConfigError(f"unknown application args {sorted(unknown)}; valid: artifacts, profile, "
                          "settings_file, settings, photo_deployment, deployment_options")
    profile = args.get("profile", "mini")
    st = load_config("serve", profile=profile, path=args.get("settings_file"))
    data = st.model_dump(mode="json")
    data.update(args.get("settings") or {})
    if args.get("artifacts"):
        data["artifacts"] = str(Path(args["artifacts"]).resolve())
    settings = ServeSettings.model_validate(data)
    rec_cfg = load_config("recommend", profile=profile).model_dump(mode="json")
    opts = args.get("deployment_options") or {}
    photo = None
    if args.get("photo_deployment", True):
        photo = PhotoModelsDeployment.options(**opts.get("PhotoModels", {})).bind(
            settings.artifacts, settings.photo_device, settings.reload_poll_s, settings.photo_tagger,
            settings.photo_batch_size, settings.photo_batch_wait_ms, settings.photo_mirror_view)
    return Ingress.options(**opts.get("Ingress", {})).bind(
        settings.model_dump(mode="json"), rec_cfg, photo)


def read_serve_config(path: str | Path) -> dict[str, Any]:
    """The serve config YAML (``serving/serve_config.yaml``) as a mapping, with checks."""
    p = Path(path)
    try:
        cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read serve config {p}: {e}") from e
    apps = (cfg or {}).get("applications") or []
    if len(apps) != 1:
        raise ConfigError(f"{p}: expected exactly one application, found {len(apps)}")
    host = (cfg.get("http_options") or {}).get("host", "127.0.0.1")
    if host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get("MMREC_ALLOW_PUBLIC_BIND"):
        raise ConfigError(f"{p}: http_options.host is {host!r}; mmrec serve binds loopback only "
                          "(set MMREC_ALLOW_PUBLIC_BIND=1 behind a proxy that terminates TLS)")
    return cfg
