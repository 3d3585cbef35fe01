"""The feedback loop: impression log, POST /v1/events, /v1/users, export, prune, crash safety."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import textwrap
import threading
import time

import pyarrow.dataset as ds
import pytest
from fastapi.testclient import TestClient

from mmrec.cli import main
from mmrec.feedback.impressions import ImpressionLogger
from mmrec.feedback.store import FeedbackStore
from mmrec.serving.app import create_app
from mmrec.serving.settings import FeedbackSettings, ServeSettings
from outfit_fixtures import jpeg_bytes, write_items

KEY = "feedback-key-1"
PKEY = "ab" * 32  # the pseudonymisation key of these tests (hex)


class Photos:
    async def analyze(self, image):
        from mmrec.outfit.photo import PhotoAnalysis

        return PhotoAnalysis(attributes={"category": {"value": "shirts", "confidence": 0.9}},
                             versions={"tagger": "fixed"})


def now(**delta) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(**delta)).isoformat()


def ev(i, **kw) -> dict:
    return {"event_id": f"e{i}", "item_id": "t1", "type": "click", "ts": now(), **kw}


@pytest.fixture(scope="module", autouse=True)
def _key(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MMREC_PSEUDONYM_KEY", PKEY)  # never the developer's ~/.config key file
    yield
    mp.undo()


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    from mmrec.artifacts import ArtifactStore
    from mmrec.recommend import Recommender

    root = tmp_path_factory.mktemp("fb")
    st = ArtifactStore(root / "artifacts")
    write_items(st, images_dir=root / "images")
    return Recommender.from_store(st)


def make_settings(path, **fb) -> ServeSettings:
    return ServeSettings(max_body_bytes=2_000_000, response_cache_size=16,
                         feedback=FeedbackSettings(enabled=True, path=str(path), **fb)).with_key(KEY)


@pytest.fixture()
def client(rec, tmp_path):
    app = create_app(rec, make_settings(tmp_path / "fb.sqlite"), photo=Photos())
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers.update({"X-API-Key": KEY})
        yield c


def post(client, events, status=None):
    r = client.post("/v1/events", json={"events": events})
    if status is not None:
        assert r.status_code == status, r.text
    return r


# -- validation: each bad event kind gets its own error ------------------------------------

@pytest.mark.parametrize("bad, field, words", [
    ({"event_id": "x1", "type": "click", "ts": now()}, "item_id", "missing"),
    ({**ev(1), "type": "like"}, "type", "impression_seen"),
    ({**ev(1), "item_id": "nope"}, "item_id", "unknown item_id 'nope'"),
    ({**ev(1), "ts": now(minutes=10)}, "ts", "in the future"),
    ({**ev(1), "ts": now(days=-31)}, "ts", "older than 30 days"),
    ({**ev(1), "ts": "2026-01-01T10:00:00"}, "ts", "timezone"),
    ({**ev(1), "type": "rating"}, "value", "required for type 'rating'"),
    ({**ev(1), "type": "rating", "value": 6}, "value", "less than or equal to 5"),
    ({**ev(1), "value": 3}, "value", "only allowed for type 'rating'"),
    ({**ev(1), "event_id": "x" * 65}, "event_id", "at most 64"),
    ({**ev(1), "colour": "red"}, "colour", "Extra inputs"),
])
def test_each_bad_event_gets_its_own_error(client, bad, field, words):
    r = post(client, [ev(100), bad], 207)
    body = r.json()
    assert (body["accepted"], body["error"]) == (1, 1)
    good, res = body["results"]
    assert good["status"] == "accepted"
    assert res["status"] == "error" and res["error"].startswith(f"{field}:") and words in res["error"], res


def test_valid_batch_is_202_and_stored_pseudonymised(client):
    events = [ev(1, user_id="alice"), ev(2, type="rating", value=4, user_id="alice"),
              ev(3, type="add_to_cart"), ev(4, type="purchase"), ev(5, type="dismiss"),
              ev(6, type="impression_seen", request_id="r-unknown")]
    body = post(client, events, 202).json()
    assert body["accepted"] == 6 and body["error"] == 0
    assert "unknown request_id 'r-unknown'" in body["results"][5]["warning"]
    store = client.app.state.feedback.store
    rows = {r[0]: r for chunk in store.rows("events") for r in chunk}
    assert rows["e2"][7] == 4.0 and rows["e1"][7] is None
    assert rows["e1"][3].startswith("u_") and "alice" not in json.dumps(list(rows.values()))


def test_idempotency_same_batch_twice(client):
    events = [ev(i) for i in range(10)]
    assert post(client, events, 202).json()["accepted"] == 10
    again = post(client, events, 202).json()
    assert again["duplicate"] == 10 and {r["status"] for r in again["results"]} == {"duplicate"}
    # a repeat inside one batch is a duplicate too
    assert [r["status"] for r in post(client, [ev(50), ev(50)], 202).json()["results"]] == ["accepted", "duplicate"]
    assert client.app.state.feedback.store.count("events") == 11
    # a retry with the same id but other content is still a duplicate: the first write stands
    assert post(client, [ev(1, type="purchase")], 202).json()["results"][0]["status"] == "duplicate"
    rows = {r[0]: r for chunk in client.app.state.feedback.store.rows("events") for r in chunk}
    assert rows["e1"][6] == "click"


def test_batch_limits_and_auth(rec, tmp_path):
    app = create_app(rec, make_settings(tmp_path / "s.sqlite", max_batch=5))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/events", json={"events": [ev(1)]})
        assert r.status_code == 401
        r = c.post("/v1/events", json={"events": [ev(1)]}, headers={"X-API-Key": "wrong"})
        assert r.status_code == 401
        c.headers.update({"X-API-Key": KEY})
        r = post(c, [ev(i) for i in range(6)], 413)
        assert "batch of 6 events exceeds the limit of 5" in r.json()["detail"]
        assert post(c, [], 422).json()["error"] == "invalid_request"
        assert c.post("/v1/events", json=[ev(1)]).status_code == 422
        # an event that is not even an object is a malformed body, not a bad event
        r = post(c, [ev(1), "not an object"], 422)
        assert "valid dictionary" in r.json()["detail"] and '"events", "1"' in r.json()["detail"]


def test_disabled_store_answers_503(rec):
    app = create_app(rec, ServeSettings().with_key(KEY))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/events", json={"events": [ev(1)]}, headers={"X-API-Key": KEY})
        assert r.status_code == 503 and "feedback.enabled" in r.json()["detail"]


# -- impressions ----------------------------------------------------------------------------

def _impressions(client) -> dict[str, tuple]:
    fb = client.app.state.feedback
    assert fb.logger.flush(5)
    return {r[0]: r for chunk in fb.store.rows("impressions") for r in chunk}


def test_impression_logged_for_json_and_photo_recommend(client):
    r = client.post("/v1/recommend", json={"scene": "office", "k": 2, "user_id": "bob",
                                            "filters": {"genders": ["men"]}})
    assert r.status_code == 200, r.text
    hit = client.post("/v1/recommend", json={"scene": "office", "k": 2, "user_id": "bob",
                                              "filters": {"genders": ["men"]}})
    p = client.post("/v1/recommend/photo", files={"image": ("p.jpg", jpeg_bytes(), "image/jpeg")},
                    data={"scene": "office", "k": "1"})
    assert p.status_code == 200, p.text
    logged = _impressions(client)
    for resp, channel in ((r.json(), "app"), (hit.json(), "app"), (p.json(), "kiosk")):
        row = logged[resp["request_id"]]
        _, ts_us, user, ch, scene, query, items, versions, variant = row
        assert (ch, scene, variant) == (channel, "office", None)
        assert json.loads(versions) == resp["versions"]
        want = [[o, j, it["item_id"], it["slot"]] for o, out in enumerate(resp["outfits"])
                for j, it in enumerate(out["items"])]
        assert [x[:4] for x in json.loads(items)] == want and want
        assert abs(ts_us / 1e6 - time.time()) < 60
    assert logged[r.json()["request_id"]][2].startswith("u_")
    assert logged[p.json()["request_id"]][2] is None  # anonymous kiosk visitor
    # a click on a logged answer carries no warning
    item = r.json()["outfits"][0]["items"][0]["item_id"]
    res = post(client, [ev(90, item_id=item, request_id=r.json()["request_id"])], 202).json()["results"][0]
    assert res["status"] == "accepted" and "warning" not in res


def test_impression_log_switched_off_logs_nothing_and_events_still_work(rec, tmp_path):
    app = create_app(rec, make_settings(tmp_path / "off.sqlite", log_impressions=False), photo=Photos())
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers.update({"X-API-Key": KEY})
        for _ in range(2):  # a miss, then a cached answer
            assert c.post("/v1/recommend", json={"scene": "office", "k": 1}).status_code == 200
        p = c.post("/v1/recommend/photo", files={"image": ("p.jpg", jpeg_bytes(), "image/jpeg")},
                   data={"scene": "office", "k": "1"})
        assert p.status_code == 200, p.text
        assert _impressions(c) == {}
        assert post(c, [ev(1)], 202).json()["accepted"] == 1


def test_logger_never_blocks_and_counts_drops(tmp_path):
    gate = threading.Event()

    def slow_pseudonym(raw: str) -> str:  # holds the writer thread so the queue fills up
        gate.wait(10)
        return "u_" + raw

    drops = []
    lg = ImpressionLogger(tmp_path / "d.sqlite", slow_pseudonym, queue_size=3, on_drop=drops.append)
    parts = ("office", None, "[]", "{}")
    t0 = time.perf_counter()
    ok = [lg.log(f"r{i}", "u", "app", parts) for i in range(20)]
    assert time.perf_counter() - t0 < 0.5
    # at most 3 queued + 3 taken by the (then blocked) writer got in
    assert ok.count(False) >= 14 and lg.dropped == len(drops) == ok.count(False)
    gate.set()
    assert lg.flush(5)
    lg.close()
    assert FeedbackStore(tmp_path / "d.sqlite").count("impressions") == ok.count(True)


def test_full_queue_drops_are_counted_in_metrics_and_requests_still_answer(rec, tmp_path):
    from mmrec.serving.feedback_api import Feedback
    from mmrec.serving.metrics import Metrics

    gate, metrics, path = threading.Event(), Metrics(), tmp_path / "m.sqlite"
    # the writer blocks on its first row: a queue of 1 then holds one more, the rest drop
    lg = ImpressionLogger(path, lambda raw: (gate.wait(10), "u_x")[1], queue_size=1,
                          on_drop=metrics.impressions_dropped.inc, on_write=metrics.impressions.inc)
    fb = Feedback(FeedbackStore(path), lg, lambda raw: "u_" + raw, FeedbackSettings(enabled=True, path=str(path)))
    app = create_app(rec, make_settings(path), metrics=metrics, feedback=fb)
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            c.headers.update({"X-API-Key": KEY})
            codes = [c.post("/v1/recommend", json={"scene": "office", "k": 1, "user_id": f"u{i}"}).status_code
                     for i in range(6)]
            assert codes == [200] * 6
            text = c.get("/metrics").text
            dropped = float(re.search(r"^mmrec_impressions_dropped_total (\S+)", text, re.M).group(1))
            assert dropped >= 4
    finally:
        gate.set()
        fb.close()


# -- users ----------------------------------------------------------------------------------

def test_user_profile_and_deletion(client):
    r = client.put("/v1/users/carol", json={"age": 31, "gender": "women", "body_type": "hourglass",
                                           "size": 8, "preferred_occasions": ["party", "casual"],
                                           "price_band": "mid"})
    assert r.status_code == 200, r.text
    pid = r.json()["user_id"]
    assert pid.startswith("u_") and r.json()["created"] is True
    assert client.put("/v1/users/carol", json={"age": 32}).json()["created"] is False
    bad = client.put("/v1/users/carol", json={"preferred_occasions": ["gala"]})
    assert bad.status_code == 422 and "unknown occasions ['gala']" in bad.text
    assert client.put("/v1/users/carol", json={"age": 5}).status_code == 422
    assert client.put("/v1/users/carol", json={"shoe": 5}).status_code == 422
    client.post("/v1/recommend", json={"scene": "office", "k": 1, "user_id": "carol"})
    client.post("/v1/recommend", json={"scene": "party", "k": 1, "user_id": "dave"})
    post(client, [ev(70, user_id="carol"), ev(71, user_id="carol"), ev(72, user_id="dave")], 202)
    d = client.delete("/v1/users/carol")
    assert d.status_code == 200, d.text
    assert d.json() == {"user_id": pid, "profiles": 1, "events": 2, "impressions": 1}
    store = client.app.state.feedback.store
    assert store.get_profile(pid) is None
    assert all(r[3] != pid for chunk in store.rows("events") for r in chunk)
    assert all(r[2] != pid for chunk in store.rows("impressions") for r in chunk)
    assert store.count("events") == 1 and store.count("impressions") == 1  # dave's stay
    assert client.delete("/v1/users/carol").json()["events"] == 0


# -- export, prune, CLI ---------------------------------------------------------------------

def test_export_partitions_read_back_and_prune(client, tmp_path):
    client.post("/v1/recommend", json={"scene": "office", "k": 2, "user_id": "erin"})
    post(client, [ev(80, user_id="erin", type="rating", value=5), ev(81, ts=now(days=-3))], 202)
    fb = client.app.state.feedback
    assert fb.logger.flush(5)
    out = tmp_path / "export"
    args = ["feedback", "export", "--store", str(fb.store.path), "--out", str(out)]
    assert main(args) == 0
    days = sorted(p.name for p in (out / "events").iterdir())
    assert len(days) == 2 and all(d.startswith("date=") for d in days)
    imp = ds.dataset(out / "impressions", format="parquet", partitioning="hive").to_table()
    evs = ds.dataset(out / "events", format="parquet", partitioning="hive").to_table()
    assert imp.num_rows >= 2 and set(imp["event"].to_pylist()) == {"impression"}
    assert {"user_id", "item_id", "event", "value", "ts", "request_id", "position", "scene", "channel",
            "slot", "score", "versions", "date"} <= set(imp.column_names)
    assert sorted(evs["event"].to_pylist()) == ["click", "rating"] and 5.0 in evs["value"].to_pylist()
    assert main(args) == 0  # re-export replaces the partitions, never duplicates rows
    assert ds.dataset(out / "events", format="parquet", partitioning="hive").count_rows() == 2
    since = ["--since", (dt.date.today() - dt.timedelta(days=1)).isoformat()]
    assert main([*args[:-1], str(tmp_path / "recent"), *since]) == 0
    assert ds.dataset(tmp_path / "recent" / "events", format="parquet").count_rows() == 1
    # retention: nothing older than 2 days survives a prune
    assert main(["feedback", "prune", "--store", str(fb.store.path), "--retention-days", "2"]) == 0
    assert fb.store.count("events") == 1


# -- crash safety ---------------------------------------------------------------------------

def test_acknowledged_events_survive_a_killed_writer(tmp_path):
    path = tmp_path / "crash.sqlite"
    script = textwrap.dedent(f"""
        import os, sys
        from mmrec.feedback.store import FeedbackStore
        st = FeedbackStore({str(path)!r}, synchronous="FULL")
        for b in range(20):
            rows = [(f"e{{b}}-{{i}}", 1_700_000_000_000_000 + i, 0, None, None, "t1", "click", None)
                    for i in range(50)]
            st.add_events(rows)
            print(b, flush=True)  # acknowledged: committed before this line
            if b == 9:
                st.add_events(rows)  # a client retry of the same batch
        # die mid-transaction, with no close: the uncommitted batch must vanish
        st._con.execute("BEGIN IMMEDIATE")
        st._con.execute("INSERT INTO events VALUES ('lost', 0, 0, NULL, NULL, 't1', 'click', NULL)")
        os._exit(0)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    acked = len(out.stdout.split())
    st = FeedbackStore(path)
    ids = [r[0] for chunk in st.rows("events") for r in chunk]
    assert acked == 20 and len(ids) == len(set(ids)) == 20 * 50 and "lost" not in ids


def test_settings_refuse_nonsense(tmp_path):
    with pytest.raises(ValueError, match="must be a file"):
        FeedbackSettings(path=str(tmp_path))
    with pytest.raises(ValueError, match="max_age_days"):
        FeedbackSettings(max_age_days=400, retention_days=365)
    with pytest.raises(ValueError):
        FeedbackSettings(events_synchronous="OFF")


def test_loadtest_command_is_bounded_and_counts_every_acknowledged_event(tmp_path, capsys):
    args = ["--artifacts", str(tmp_path / "a"), "feedback", "loadtest", "--seconds", "1", "--batch", "5",
            "--concurrency", "2", "--max-batches", "20"]
    assert main(args) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["batches"] <= 20 and m["statuses"] == {"202": m["batches"]}
    assert m["acknowledged_events"] == m["stored_events"] == 5 * m["batches"] > 0
    assert list((tmp_path / "a" / "feedback_loadtest").glob("*/metrics.json"))


def test_loadtest_against_a_served_api_counts_every_acknowledged_event(tmp_path, capsys):
    """--serve uvicorn: `mmrec serve --no-ray` in its own process over the artifacts' catalog."""
    from mmrec.artifacts import ArtifactStore

    store = ArtifactStore(tmp_path / "a")
    write_items(store)
    args = ["--artifacts", str(store.root), "feedback", "loadtest", "--serve", "uvicorn", "--seconds", "1",
            "--batch", "5", "--concurrency", "2", "--max-batches", "20"]
    assert main(args) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["server"].startswith("mmrec serve (uvicorn") and m["statuses"] == {"202": m["batches"]}
    assert m["acknowledged_events"] == m["stored_events"] == 5 * m["batches"] > 0
