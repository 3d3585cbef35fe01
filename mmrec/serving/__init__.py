"""The HTTP service: FastAPI app (usable without Ray), its guards and settings, and the Ray
Serve application that places the same objects in replicas."""
