"""Monitoring sessions: create, stream frames (JSON and multipart), read, delete; capped and expiring."""

from __future__ import annotations

import pytest

from tests.serve.payloads import b64, make_client, png_bytes

pytest.importorskip("fastapi")  # the serve extra
pytest.importorskip("uvicorn")

DEMO = {"goal": "fill the cup", "demo_images": [b64(0), b64(80), b64(160), b64(240)]}


def test_a_session_follows_a_task_to_done(pixel_client):
    created = pixel_client.post("/v1/sessions", json={**DEMO, "monitor": {"stall_seconds": 5.0, "done_frames": 2, "done_threshold": 0.9}})
    assert created.status_code == 200, created.text
    session = created.json()["id"]
    assert created.json()["settings"]["done_frames"] == 2
    levels = [0, 5, 80, 85, 160] + [240] * 7
    reply = pixel_client.post(f"/v1/sessions/{session}/frames",
                              json={"frames": [b64(v) for v in levels[:4]], "timestamps": [0.0, 1.0, 2.0, 3.0]})
    assert reply.status_code == 200, reply.text
    steps = reply.json()["steps"]
    assert [s["index"] for s in steps] == [0, 1, 2, 3] and [s["raw"] for s in steps] == [0.0, 0.0, 33.0, 33.0]  # "33%" as replied
    # the rest as a multipart upload, timestamps as repeated form fields
    files = [("frames", (f"f{i}.png", png_bytes(v), "image/png")) for i, v in enumerate(levels[4:])]
    reply = pixel_client.post(f"/v1/sessions/{session}/frames", files=files,
                              data={"timestamps": [str(t) for t in range(4, 12)]})
    assert reply.status_code == 200, reply.text
    kinds = [event["kind"] for event in reply.json()["events"]]
    assert "done" in kinds and "progress" in kinds
    state = pixel_client.get(f"/v1/sessions/{session}").json()
    assert state["summary"]["frames"] == 12 and state["summary"]["done"] is True
    # timestamps must not go back
    back = pixel_client.post(f"/v1/sessions/{session}/frames", json={"frames": [b64(1)], "timestamps": [1.0]})
    assert back.status_code == 400 and "timestamps" in back.json()["error"]["message"]
    assert pixel_client.delete(f"/v1/sessions/{session}").json()["deleted"] is True
    for call in (pixel_client.get, pixel_client.delete):
        gone = call(f"/v1/sessions/{session}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_session"
    assert pixel_client.get("/health").json()["sessions"] == 0


def test_bad_monitor_settings_are_400(client):
    for monitor, word in (({"done_threshold": 2.0}, "done_threshold"), ({"patience": 3}, "patience"),
                          ({"samples": 3}, "temperature")):  # fmt: skip
        reply = client.post("/v1/sessions", json={**DEMO, "monitor": monitor})
        assert reply.status_code == 400 and word in reply.json()["error"]["message"], reply.text
    assert client.get("/health").json()["sessions"] == 0
    # with sampling asked for, several draws per frame are fine
    ok = client.post("/v1/sessions", json={**DEMO, "temperature": 0.7, "monitor": {"samples": 3}})
    assert ok.status_code == 200, ok.text


def test_sessions_are_capped_and_idle_ones_expire():
    with make_client("constant", max_sessions=2, session_ttl_s=60) as client:
        ids = [client.post("/v1/sessions", json=DEMO).json()["id"] for _ in range(2)]
        full = client.post("/v1/sessions", json=DEMO)
        assert full.status_code == 429 and full.json()["error"]["code"] == "too_many_sessions"
        store = client.app.state.serve.sessions
        store.get(ids[0]).last_used -= 59  # idle for 59 s: still open
        assert client.post("/v1/sessions", json=DEMO).status_code == 429
        for session_id in ids:  # idle for 61 s (aged by hand: a sleep would make the test depend on the load)
            store.get(session_id).last_used -= 61
        assert client.post("/v1/sessions", json=DEMO).status_code == 200  # the idle two made room
        assert all(client.get(f"/v1/sessions/{i}").status_code == 404 for i in ids)


def test_a_scorer_inside_the_server_asks_with_the_backends_hints():
    """nano was trained with the matcher's hints: its sessions and progress calls get them, as eval gives them."""
    from progresslm.backends.base import BackendOptions
    from progresslm.backends.baselines import ConstantBackend
    from progresslm.online.scorer import ProgressScorer
    from progresslm.serve.batcher import BatchedBackend, Batcher

    class Hinted(ConstantBackend):
        default_hints = "matcher"

    batcher = Batcher(Hinted(BackendOptions(), "two-stage"))
    backend = BatchedBackend(batcher, batcher.default_settings())
    assert backend.default_hints == "matcher"
    with ProgressScorer("open the drawer", ["reach the handle", "pull it"], backend, demo_kind="text") as scorer:
        assert scorer.hints is not None
    plain = BatchedBackend(Batcher(ConstantBackend(BackendOptions(), "two-stage")), batcher.default_settings())
    assert plain.default_hints is None
