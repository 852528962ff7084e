"""A user's own backend class in eval, watch and serve: `--backend module:Class`, an installed package's
`progresslm.backends` entry point, and `register_backend`."""

from __future__ import annotations

import textwrap

import pytest

from progresslm.backends import registry
from progresslm.cli.main import main

PLUGIN = textwrap.dedent('''
    from progresslm.backends.base import Backend, Reply

    class Fixed(Backend):
        """Answers 42 % to everything (and says so in its name)."""

        @property
        def model_name(self):
            return "fixed-42"

        def generate(self, requests):
            for i, _ in enumerate(requests):
                yield i, Reply("<ref_think>x</ref_think><ref>1</ref><score_think>x</score_think><score>42%</score>")

    class NotABackend:
        pass
''')


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "my_progress_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    saved, classes = dict(registry.BACKENDS), dict(registry._CLASSES)
    yield "my_progress_plugin"
    registry.BACKENDS.clear()
    registry.BACKENDS.update(saved)
    registry._CLASSES.clear()
    registry._CLASSES.update(classes)
    registry._entry_points_read = False


def test_module_colon_class_runs_in_eval(plugin, tmp_path, monkeypatch):
    monkeypatch.setenv("PROGRESSLM_HOME", str(tmp_path / "home"))
    from progresslm.bench.example import build_example

    example = build_example(tmp_path / "example")
    out = tmp_path / "run"
    code = main(["eval", "--backend", f"{plugin}:Fixed", "--bench", *map(str, example.files), "--image-root",
                 str(example.root / "images"), "--out", str(out), "--quiet", "--bootstrap", "0", "--no-plots"])
    assert code == 0
    import json

    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert rows and all("42%" in row["reply"] for row in rows)
    assert json.loads((out / "config.json").read_text())["model"] == "fixed-42"


def test_bad_plugin_paths_are_named(plugin):
    for name, message in ((f"{plugin}:Missing", "has no 'Missing'"), (f"{plugin}:NotABackend", "not a progresslm Backend"),
                          ("no_such_module_xyz:Fixed", "cannot import module 'no_such_module_xyz'")):
        with pytest.raises(registry.UnknownBackendError, match=message):
            registry.backend_class(name)


def test_an_entry_point_names_a_backend(plugin, tmp_path, monkeypatch):
    dist = tmp_path / "my_progress_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-progress-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[progresslm.backends]\nfixed42 = {plugin}:Fixed\n")
    registry._entry_points_read = False
    assert registry.backend_class("fixed42").__name__ == "Fixed"


def test_register_backend_takes_a_class_or_a_path(plugin):
    import importlib

    cls = importlib.import_module(plugin).Fixed
    registry.register_backend("mine", cls)
    assert registry.create_backend("mine", registry.BackendOptions(), "two-stage").model_name == "fixed-42"
    registry.register_backend("mine-too", f"{plugin}:Fixed")
    assert registry.backend_class("mine-too") is cls
    with pytest.raises(TypeError):
        registry.register_backend("bad", int)


def test_the_scorer_takes_a_plugin_too(plugin):
    import numpy as np

    from progresslm.online.scorer import ProgressScorer

    frames = [np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 255, np.uint8)]
    with ProgressScorer("g", frames, backend=f"{plugin}:Fixed") as scorer:
        assert scorer.score(frames[0])[0].percent == pytest.approx(42.0)
