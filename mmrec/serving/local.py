"""Start the service on this machine: on local Ray Serve, or with uvicorn in-process (no Ray).

Both bind 127.0.0.1 and return a handle with the base URL and a ``stop()``; ``mmrec serve``,
``mmrec serve loadtest``, the notebook and the slow tests use them.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from mmrec import kinds
from mmrec.artifacts import ArtifactStore
from mmrec.serving.settings import DEFAULT_SERVE_CONFIG, ServeSettings


@dataclass
class LocalServer:
    url: str
    kind: str  # "ray" | "uvicorn"
    _stop: Callable[[], None] = field(repr=False)
    startup_s: float = 0.0
    pid: int | None = None  # the serving process, when it is not this one (start_subprocess)

    def stop(self) -> None:
        self._stop()

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout_s: float = 120.0) -> None:
    """Poll GET /readyz until 200 (raises TimeoutError with the last answer)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/readyz", timeout=2.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout_s:g}s: {last}")


def start_uvicorn(app: Any, host: str = "127.0.0.1", port: int | None = None) -> LocalServer:
    """Serve an ASGI app from a background thread of this process."""
    import uvicorn

    port = port or free_port(host)
    t0 = time.perf_counter()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, name="mmrec-uvicorn", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"uvicorn failed to start on {host}:{port}")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return LocalServer(f"http://{host}:{port}", "uvicorn", stop, time.perf_counter() - t0)


def start_ray(settings: ServeSettings, *, serve_config: str | Path | None = None,
              profile: str = "mini", photo_deployment: bool | None = None,
              num_cpus: int | None = None, app_name: str = "mmrec") -> LocalServer:
    """Start local Ray + Serve on settings.host:settings.port and deploy the application.

    The serve config's ``deployments`` options (replicas, max_ongoing_requests, autoscaling,
    num_cpus) are applied here; its host must be loopback.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Read by Serve's controller when it starts (it inherits this environment locally).
    os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1" if settings.ray_proxy == "haproxy" else "0"
    import ray
    from ray import serve

    from mmrec.serving.ray_app import build_app, read_serve_config

    cfg = read_serve_config(serve_config or DEFAULT_SERVE_CONFIG)
    app_cfg = cfg["applications"][0]
    # The application's runtime_env (pip: mmrec[serve]) is for `serve deploy` on a cluster: it is
    # not passed on here, so a local run uses this interpreter's packages and installs nothing.
    options = {d["name"]: {k: v for k, v in d.items() if k != "name"}
               for d in app_cfg.get("deployments") or []}
    args = dict(app_cfg.get("args") or {})
    args.update(artifacts=settings.artifacts, profile=profile, deployment_options=options,
                settings=settings.model_dump(mode="json"))
    if photo_deployment is not None:
        args["photo_deployment"] = photo_deployment
    t0 = time.perf_counter()
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
             ignore_reinit_error=True, logging_level="WARNING", log_to_driver=False)
    try:
        http = dict(cfg.get("http_options") or {})
        http.update(host=settings.host, port=settings.port)
        serve.start(http_options=http, proxy_location=cfg.get("proxy_location", "HeadOnly"))
        serve.run(build_app(args), name=app_name, route_prefix=app_cfg.get("route_prefix", "/"))
    except BaseException:
        _shutdown_ray()
        raise
    url = f"http://{settings.host}:{settings.port}"
    wait_ready(url)
    return LocalServer(url, "ray", _shutdown_ray, time.perf_counter() - t0)


def serve_cmd(port: int, *, artifacts: str | Path, profile: str | None = None, no_ray: bool = True,
              sets: Iterable[str] = (), options: Iterable[str] = (), config_dir: Path | None = None
              ) -> list[str]:
    """The command line of `mmrec serve` on 127.0.0.1:``port`` in a Python process of its own
    (for `start_subprocess`): ``sets`` become ``--set`` overrides, ``options`` are more `serve`
    options (``--source``, ``--serve-config`` ...)."""
    cmd = [sys.executable, "-m", "mmrec.cli", *(["--config-dir", str(config_dir)] if config_dir is not None else []),
           "--artifacts", str(artifacts), *(["--profile", profile] if profile else []), "--quiet",
           "serve", "--port", str(port), *(["--no-ray"] if no_ray else []), *options]
    for o in sets:
        cmd += ["--set", o]
    return cmd


def start_subprocess(cmd: list[str], url: str, api_key: str, kind: str,
                     timeout_s: float = 300.0) -> LocalServer:
    """Run ``cmd`` (a `mmrec serve ...` command line) in its own process and wait for /readyz.

    The key reaches the child through $MMREC_API_KEY, never its command line.
    """
    import subprocess

    env = {**os.environ, "MMREC_API_KEY": api_key, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()  # `mmrec serve` stops Serve and Ray on SIGTERM
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"the service exited with {proc.returncode}: {err[-2000:]}")
        try:
            wait_ready(url, timeout_s=1.0)
            break
        except TimeoutError:
            if time.monotonic() > deadline:
                stop()
                raise
    # drain stderr in the background so that a chatty server never blocks on a full pipe
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return LocalServer(url, kind, stop, time.perf_counter() - t0, pid=proc.pid)


def _shutdown_ray() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def ensure_priors(store: ArtifactStore, source: Path | None, log: Callable[[str], None] = print) -> None:
    """Build the Polyvore priors artifact when missing and the data is at hand (about 1 s)."""
    from mmrec.outfit.priors import write_priors

    if store.current_version(kinds.OUTFIT_PRIORS) or source is None:
        return
    polyvore = source / "polyvore_outfits" if (source / "polyvore_outfits").is_dir() else source
    if (polyvore / "categories.csv").is_file():
        art = write_priors(store, polyvore)
        log(f"built {kinds.OUTFIT_PRIORS}/{art.version} from {polyvore} ({art.metrics['n_outfits']} outfits)")
