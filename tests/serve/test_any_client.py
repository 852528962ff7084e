"""Any client, any prompt (issue 28): clients written for other prompt structures (tests/serve/clients.py), sent
through the real `openai` package to `progresslm serve` (the default matcher backend) on a real uvicorn on
127.0.0.1, get the numbers `progresslm eval` gives on the same samples, in the format each prompt asked for."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from helpers import BENCH_FILES, fixture, write_images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from progresslm.backends.base import BackendOptions
from progresslm.bench.format import read_official
from progresslm.evaluation import EvalConfig, evaluate
from progresslm.parsing import parse_direct, parse_two_stage
from progresslm.types import Modality, Status
from tests.serve import clients
from tests.serve.clients import Wording

pytest.importorskip("fastapi")  # the serve extra
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

TAGS = re.compile(r"<ref_think>.*</ref_think>\s*<ref>.*</ref>\s*<score_think>.*</score_think>\s*<score>.*</score>",
                  re.DOTALL)  # fmt: skip
PERCENT = re.compile(r"(?:\d{1,3}(?:\.\d+)?%|n/a)")


def grey(sample, root: Path) -> None:
    from PIL import Image

    for k, name in enumerate(sample.image_names()):
        path = sample.image_path(name, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        last = k == len(sample.image_names()) - 1
        Image.new("RGB", (56, 56), (120,) * 3 if last else (30 + 20 * k,) * 3).save(path)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The fixture benchmark with images, and what `progresslm eval --backend matcher` answers on it."""
    root = tmp_path_factory.mktemp("bench")
    files = [fixture(name) for name in BENCH_FILES]
    samples = [sample for path in files for sample in read_official(path).samples]
    for sample in samples:
        if not sample.answerable:  # grey pictures: the matcher's mismatch head fires, so n/a replies are checked too
            grey(sample, root / "images")
    write_images(samples, root / "images")
    out = root / "eval"
    config = EvalConfig(bench=[str(p) for p in files], out=str(out), backend="matcher", image_root=str(root / "images"),
                        bootstrap=0, floors=False, plots=False, options=BackendOptions(), mode="direct")  # fmt: skip
    evaluate(config, progress=False)
    answers = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        answers[record["uid"]] = (record["status"], record["score"])
    assert len(answers) == len(samples) == 30
    assert len({score for _, score in answers.values()}) > 5  # varied: a mixed-up sample would show
    return samples, root / "images", answers


@pytest.fixture(scope="module")
def server():
    from progresslm.serve import ServeConfig, create_app
    from progresslm.serve.runner import BackgroundServer

    app = create_app(ServeConfig(backend="matcher", port=0, served_model_names=()))
    with BackgroundServer(app) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def ask(client, messages, **options):
    return client.chat.completions.create(model=options.pop("model", "gpt-5-mini"), messages=messages, **options)


def value_of(reply: str, answer: str) -> tuple[str, float | None]:
    """(status, score) of a reply in the format its prompt asked for, checking that format."""
    if answer == "percent":
        assert PERCENT.fullmatch(reply.strip()), reply
        prediction = parse_direct(reply)
    else:  # tags, asked or the server's --mode (two-stage)
        assert TAGS.fullmatch(reply.strip()), reply
        prediction = parse_two_stage(reply)
    return prediction.status.value, prediction.score


def same(found: tuple[str, float | None], expected: tuple[str, float | None]) -> bool:
    return found[0] == expected[0] and (found[1] is None) == (expected[1] is None) and (
        found[1] is None or abs(found[1] - expected[1]) < 1e-9)  # fmt: skip


# --------------------------------------------------------------------------- the authors' structure


@pytest.mark.parametrize("think", [True, False], ids=["tags", "nothink"])
def test_authors_prompts_get_the_eval_numbers(bench, client, think):
    samples, root, answers = bench
    for sample in samples:
        reply = ask(client, clients.authors(sample, root, think), max_completion_tokens=3000, temperature=1.0)
        text = reply.choices[0].message.content
        assert same(value_of(text, "tags" if think else "percent"), answers[sample.uid]), (sample.uid, text)
        meta = reply.model_extra["progresslm"]
        # the text layout ends the goal sentence with a full stop, which is the sentence's, not the goal's: there the
        # goal comes back as eval has it; the visual layout adds none, so a goal's own stop is taken for a sentence's
        goal = sample.goal.strip() if sample.modality is Modality.TEXT else sample.goal.strip().removesuffix(".")
        assert meta["structure"] == "authors" and meta["goal"] == goal
        assert meta["format"] == ("tags" if think else "percent") and meta["assumed"] == []
    na = [uid for uid, (status, _) in answers.items() if status == Status.NA.value]
    assert na, "the fixture has no n/a answer: the n/a format would go unchecked"


# --------------------------------------------------------------------------- plain prompts, generated wordings


wordings = st.builds(
    Wording,
    goal=st.sampled_from(clients.GOAL_INTROS),
    demo=st.sampled_from(clients.DEMO_INTROS),
    steps=st.sampled_from(clients.STEP_INTROS),
    observation=st.sampled_from(clients.OBSERVATION_INTROS),
    system=st.one_of(st.none(), st.sampled_from(clients.SYSTEMS)),
    chatter=st.lists(st.sampled_from(clients.CHATTER), max_size=4).map(tuple),
    labels=st.sampled_from(["before", "after", "none"]),
    bullets=st.booleans(),
    step_labels=st.booleans(),
    split=st.booleans(),
    goal_last=st.booleans(),
    ask=st.sampled_from(clients.ASK_PERCENT + clients.ASK_NOTHING + (clients.ASK_TAGS,)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=st.integers(0, 29), words=wordings)
def test_plain_prompts_in_any_wording_get_the_eval_numbers(bench, client, index, words):
    samples, root, answers = bench
    sample = samples[index]
    reply = ask(client, clients.plain(sample, root, words), max_tokens=200, temperature=0)
    text = reply.choices[0].message.content
    answer = clients.asked_format(words.ask)
    assert same(value_of(text, answer), answers[sample.uid]), (sample.uid, words, text)
    meta = reply.model_extra["progresslm"]
    assert meta["demonstration"]["kind"] == sample.modality.value
    assert meta["demonstration"]["items"] == len(sample.demo.items)
    labelled = words.labels != "none" if sample.modality is Modality.VISUAL else words.step_labels
    assert any("evenly spaced" in note for note in meta["assumed"]) == (not labelled)


def test_the_issues_example_and_a_plain_question_in_several_messages(bench, client):
    samples, root, answers = bench
    sample = samples[0]
    paths = [sample.image_path(name, root) for name in sample.image_names()]
    # "Task: push the puck. Demonstration: <image> Current state: <image> Estimate the task progress."
    content = [clients.text(f"Task: {sample.goal}. Demonstration: ")] + [clients.image(p) for p in paths[:-1]]
    content += [clients.text(" Current state: "), clients.image(paths[-1]), clients.text(" Estimate the task progress.")]
    reply = ask(client, [{"role": "user", "content": content}])
    assert same(value_of(reply.choices[0].message.content, "mode"), answers[sample.uid])
    assert reply.model_extra["progresslm"]["assumed"] == ["keyframes evenly spaced in progress (no labels)"]


# --------------------------------------------------------------------------- several frames (GVL-style)


def demo_groups(samples):
    groups = {}
    for sample in samples:
        groups.setdefault((sample.trajectory_id, sample.goal, sample.demo), []).append(sample)
    return [group for group in groups.values() if len(group) >= 3]


@pytest.mark.parametrize("answer", ["lines", "json"])
def test_several_shuffled_frames_get_one_answer_each_in_the_order_asked(bench, client, answer):
    samples, root, answers = bench
    groups = demo_groups(samples)
    assert {group[0].modality for group in groups} == {Modality.VISUAL, Modality.TEXT}
    for seed, group in enumerate(groups):
        order = list(range(len(group)))
        random.Random(seed).shuffle(order)
        words = Wording(chatter=("Be precise.",))
        reply = ask(client, clients.frames(group, root, order, answer, words), n=2)
        assert len(reply.choices) == 2
        for choice in reply.choices:
            text = choice.message.content
            if answer == "json":
                values = json.loads(text)
                assert isinstance(values, list) and len(values) == len(group), text
                found = [("na", None) if v == "n/a" else ("value", v / 100) for v in values]
            else:
                lines = text.split("\n")
                assert [line.split(":")[0] for line in lines] == [f"Frame {k + 1}" for k in range(len(group))], text
                assert all(PERCENT.fullmatch(line.split(": ", 1)[1]) for line in lines), text
                found = [value_of(line.split(": ", 1)[1], "percent") for line in lines]
            for shown, index in enumerate(order):
                assert same(found[shown], answers[group[index].uid]), (group[index].uid, text)
        assert reply.model_extra["progresslm"]["frames"] == [f"Frame {k + 1}" for k in range(len(group))]


# --------------------------------------------------------------------------- the OpenAI surface


def test_streaming_model_names_and_sampling_options(bench, client):
    samples, root, answers = bench
    sample = samples[20]  # a text demonstration
    messages = clients.authors(sample, root, think=False)
    stream = ask(client, messages, stream=True, stream_options={"include_usage": True}, max_completion_tokens=50)
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert same(value_of("".join(pieces), "percent"), answers[sample.uid])
    assert usage is not None and finish == "stop"
    reply = ask(client, messages, model="whatever-you-like", n=3, temperature=0.7, max_completion_tokens=20)
    assert reply.model.startswith("progresslm-matcher@") and len(reply.choices) == 3
    assert {choice.message.content for choice in reply.choices} == {"".join(pieces)}  # the matcher is deterministic


def test_served_model_names_restrict_and_alias(bench):
    from progresslm.serve import ServeConfig, create_app
    from progresslm.serve.runner import BackgroundServer

    samples, root, answers = bench
    app = create_app(ServeConfig(backend="pixel-nn", port=0, served_model_names=("progress-a", "progress-b")))
    with BackgroundServer(app) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
        assert [model.id for model in client.models.list()] == ["progress-a", "progress-b"]
        messages = clients.authors(samples[0], root, think=False)
        assert ask(client, messages, model="progress-b").model == "progress-b"
        with pytest.raises(openai.NotFoundError, match="progress-a, progress-b"):
            ask(client, messages, model="gpt-5")


# --------------------------------------------------------------------------- what cannot be read


@pytest.mark.parametrize(
    "content, missing",
    [
        (lambda img: [clients.text("Look at these."), img(0), img(1), clients.text("Now:"), img(2)], ["goal"]),
        (lambda img: [clients.text("Task: open the drawer. Now:"), img(0), clients.text("How far?")], ["demonstration"]),
        (lambda img: [clients.text("Task: open the drawer. Steps:\n1. reach\n2. pull")], ["observation"]),
        (lambda img: [clients.text("How far along is this?"), img(0)], ["goal", "demonstration"]),
    ],
)
def test_what_is_missing_is_named(bench, client, content, missing):
    samples, root, _ = bench
    paths = [samples[0].image_path(name, root) for name in samples[0].image_names()]
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, [{"role": "user", "content": content(lambda k: clients.image(paths[k]))}])
    message = caught.value.body["message"]
    for name in ("goal", "demonstration", "observation"):
        assert (f"no {name}" in message) == (name in missing), message
