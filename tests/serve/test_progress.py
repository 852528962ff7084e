"""POST /v1/progress: a goal, a demonstration and one observation, as JSON or as a multipart upload."""

from __future__ import annotations

import pytest

from tests.serve.payloads import b64, data_url, png_bytes

pytest.importorskip("fastapi")  # the serve extra
pytest.importorskip("uvicorn")


def test_json_visual_demo_with_pixel_nn(pixel_client):
    body = {"goal": "fill the cup", "demo_images": [b64(0), data_url(120), b64(240)], "observation": b64(125)}
    reply = pixel_client.post("/v1/progress", json=body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    # pixel-nn answers the progress of the nearest keyframe: the middle one, 50 %
    assert data["progress"] == pytest.approx(50.0) and data["anchor"] == 2
    assert data["status"] == "value" and data["na"] is False and data["latency_s"] >= 0
    assert "<score>50%</score>" in data["reply"]


def test_multipart_upload_gives_the_same_answer(pixel_client):
    files = [("demo_images", (f"k{i}.png", png_bytes(level), "image/png")) for i, level in enumerate((0, 120, 240))]
    files.append(("observation", ("obs.jpg", png_bytes(235, fmt="JPEG"), "image/jpeg")))
    reply = pixel_client.post("/v1/progress", data={"goal": "fill the cup"}, files=files)
    assert reply.status_code == 200, reply.text
    assert reply.json()["progress"] == pytest.approx(100.0) and reply.json()["anchor"] == 3


def test_text_demo_and_direct_mode(client, pixel_client):
    body = {"goal": "open the drawer", "demo_steps": ["reach the handle", "pull"], "observation": b64(9)}
    data = client.post("/v1/progress", json=body).json()
    assert data["progress"] == 50.0 and data["anchor"] == 1  # the constant floor, nearest step to 50 %
    direct = client.post("/v1/progress", json={**body, "mode": "direct"}).json()
    assert direct["reply"] == "50%" and direct["anchor"] is None
    na = pixel_client.post("/v1/progress", json=body).json()  # pixel-nn has no keyframes to match: N/A
    assert na["progress"] is None and na["na"] is True and na["status"] == "na"


def test_a_step_naming_a_file_stays_text(client, tmp_path):
    image = tmp_path / "step.png"
    image.write_bytes(png_bytes(1))
    body = {"goal": "g", "demo_steps": [str(image), "second"], "observation": b64(9)}
    assert client.post("/v1/progress", json=body).json()["status"] == "value"
    # and an observation that names a file is refused, never opened
    reply = client.post("/v1/progress", json={**body, "observation": str(image)})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "image_not_inline"


@pytest.mark.parametrize(
    "change, where",
    [
        ({"demo_steps": None, "demo_images": None}, "demo_images"),
        ({"demo_images": [b64(0)]}, "demo_images"),
        ({"observation": "@@@"}, "observation"),
        ({"goal": ""}, "goal"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_bodies(client, change, where):
    body = {"goal": "g", "demo_steps": ["a", "b"], "observation": b64(9), **change}
    body = {key: value for key, value in body.items() if value is not None}
    reply = client.post("/v1/progress", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == where
