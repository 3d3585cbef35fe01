"""Property-based tests over the OpenAPI schema (schemathesis): no input makes the API fail
with a server error. Valid and invalid inputs (positive and negative modes) are generated
for every operation with Hypothesis, a bounded number of examples each.

Operations are driven through ``APIOperation.as_strategy`` with a plain ``@given`` rather
than schemathesis' pytest plugin, whose lazy fixture loader does not run under pytest 9.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="dev extra: pip install -e '.[dev]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

from mmrec.outfit.photo import PhotoAnalysis  # noqa: E402
from mmrec.recommend import Recommender  # noqa: E402
from mmrec.serving.app import create_app  # noqa: E402
from mmrec.rank.config import PseudonymConfig  # noqa: E402
from mmrec.serving.settings import FeedbackSettings, ServeSettings  # noqa: E402
from outfit_fixtures import write_items  # noqa: E402

KEY = "schemathesis-key"
EXAMPLES = 20


class TaggedPhotos:
    async def analyze(self, image):
        return PhotoAnalysis(attributes={"category": {"value": "tshirts", "confidence": 0.9}},
                             versions={"tagger": "fixed"})


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    from mmrec.artifacts import ArtifactStore

    root = tmp_path_factory.mktemp("st")
    st = ArtifactStore(root / "artifacts")
    write_items(st, images_dir=root / "images")
    rec = Recommender.from_store(st)
    # the feedback routes write to a store of this test (pseudonymisation key: not the user's file)
    feedback = FeedbackSettings(enabled=True, path=str(root / "feedback.sqlite"),
                                pseudonym=PseudonymConfig(key_env="MMREC_TEST_NO_SUCH_VAR",
                                                          key_file=str(root / "pseudonym.key")))
    # the key has the admin scope on purpose: reload is exercised too
    app = create_app(rec, ServeSettings(max_body_bytes=100_000, feedback=feedback).with_key(KEY),
                     photo=TaggedPhotos())
    return schemathesis.openapi.from_asgi("/openapi.json", app, headers={"X-API-Key": KEY})


def operations(schema) -> list:
    return [r.ok() for r in schema.get_all_operations()]


def test_schema_lists_every_route(schema):
    names = {f"{op.method.upper()} {op.path}" for op in operations(schema)}
    assert {"POST /v1/recommend", "POST /v1/recommend/photo", "POST /v1/tag", "GET /v1/items/{item_id}",
            "GET /v1/items/{item_id}/image", "GET /healthz", "GET /readyz", "GET /metrics",
            "GET /v1/scenes", "POST /v1/admin/reload", "POST /v1/events", "PUT /v1/users/{user_id}",
            "DELETE /v1/users/{user_id}"} <= names


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(schema, mode):
    statuses: dict[str, set[int]] = {}
    for op in operations(schema):
        label = f"{op.method.upper()} {op.path}"

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            resp = case.call(headers={"X-API-Key": KEY})
            statuses.setdefault(label, set()).add(resp.status_code)
            assert resp.status_code < 500, f"{label}: {resp.status_code} {resp.text[:300]}"

        try:
            run()
        except Unsatisfiable:
            # an operation with no parameters and no body has no invalid input to generate
            assert mode == GenerationMode.NEGATIVE and not op.body and not any(
                True for _ in op.iter_parameters()), label
    assert len(statuses) >= (10 if mode == GenerationMode.POSITIVE else 5)
    if mode == GenerationMode.NEGATIVE:  # invalid inputs are refused, not served
        assert any(s in (400, 413, 415, 422) for v in statuses.values() for s in v)
