"""Every command's help: each option explained, defaults shown, examples at the end, one name per concept."""

from __future__ import annotations

import argparse

import pytest

from progresslm.cli.main import _subparsers, build_parser

COMMANDS = [(path, parser) for path, parser in _subparsers(build_parser())
            if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)]  # fmt: skip


def test_the_walk_reaches_every_command():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"eval", "report", "watch", "serve", "train sft", "train grpo", "train traces", "sim build"} <= names


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_each_option_has_help_and_the_help_ends_with_examples(path, parser):
    undocumented = [a.option_strings or [a.dest] for a in parser._actions
                    if not a.help and not isinstance(a, argparse._HelpAction)]  # fmt: skip
    assert undocumented == []
    text = parser.format_help()
    assert "examples:" in text and text.rstrip().splitlines()[-1].lstrip().startswith(("progresslm", "--", "#"))
    assert "(default: None)" not in text


def test_defaults_are_shown():
    eval_help = " ".join(dict(COMMANDS)[("eval",)].format_help().split())
    assert "(default: matcher)" in eval_help or "(default: nano)" in eval_help
    assert "(default: two-stage)" in eval_help and "(default: 1000)" in eval_help
    assert "(default: 8000)" in " ".join(dict(COMMANDS)[("serve",)].format_help().split())


def test_one_name_per_concept_across_commands():
    options = {" ".join(path): {s for a in parser._actions for s in a.option_strings} for path, parser in COMMANDS}
    for name in ("eval", "watch", "serve"):
        assert "--batch-size" in options[name] and not {"--batch", "--max-batch"} & options[name]
    assert "--num-samples" in options["eval"] and "--num-samples" in options["watch"]
    assert "--samples" not in options["watch"]
    assert not {"--replies", "--value"} & options["serve"]  # eval-only options
    assert "--calibration" in options["eval"]
    assert dict(COMMANDS)[("train", "sft")].format_usage().startswith("usage: progresslm train sft --config FILE")
