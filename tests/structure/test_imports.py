"""The package's modules import each other without cycles (function-level imports count: a lazy import that
dodges a cycle still ties the two modules together)."""

from __future__ import annotations

from tests.structure.imports import cycles, graph


def test_the_package_has_no_import_cycle():
    edges = graph()
    assert len(edges) > 80  # the walk found the package
    assert cycles(edges) == []


def test_the_walk_finds_a_cycle_where_there_is_one():
    edges = graph()
    edges["progresslm.types"] = {*edges["progresslm.types"], "progresslm.metrics"}  # metrics imports types
    assert ["progresslm.metrics", "progresslm.types"] in cycles(edges)


def test_training_siblings_never_import_each_other():
    edges = graph()
    assert "progresslm.train.grpo" not in edges["progresslm.train.sft"]
    assert "progresslm.train.sft" not in edges["progresslm.train.grpo"]
    assert "progresslm.train.trainer" in edges["progresslm.train.sft"] & edges["progresslm.train.grpo"]
