"""`progresslm train tiny-model --config`: model sizes and the tokenizer's corpus from a YAML file."""

import json

import pytest
from helpers import BENCH_FILES, fixture

from progresslm.cli.main import main
from progresslm.prompts import SYSTEM
from progresslm.train.tiny_model import prompt_corpus


def test_the_corpus_holds_the_prompts_and_short_replies_as_often_as_they_occur():
    files = [str(fixture(name)) for name in BENCH_FILES]
    corpus = prompt_corpus(files)
    system = SYSTEM["two-stage"]
    assert corpus.count(system) > 1  # repeated, so BPE merges follow what the model reads most
    assert any(text.startswith("<ref_think>Closest:") for text in corpus)


def test_tiny_model_from_a_config(tmp_path, capsys):
    pytest.importorskip("transformers")
    pytest.importorskip("torchvision")
    files = [str(fixture(name)) for name in BENCH_FILES]
    config = tmp_path / "model.yaml"
    config.write_text(
        "hidden_size: 32\nlayers: 1\nheads: 2\nkv_heads: 1\nintermediate_size: 64\nvision_depth: 1\n"
        f"vision_hidden_size: 32\nvision_heads: 2\nimage_size: 56\nvocab_size: 600\ncorpus_files: {json.dumps(files)}\n"
    )
    out = tmp_path / "model"
    assert main(["train", "tiny-model", "--config", str(config), "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["text_config"]["hidden_size"] == 32 and saved["vision_config"]["depth"] == 1
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    assert len(tokenizer) > 500  # the corpus gave merges beyond the bytes and the fixed tokens
    assert tokenizer.tokenize("12%") == ["1", "2", "%"]  # digits one per token

    config.write_text("hidden_size: 32\nhiden_layers: 2\n")
    assert main(["train", "tiny-model", "--config", str(config), "--out", str(out)]) == 2
    assert "unknown key(s) hiden_layers" in capsys.readouterr().err
    config.write_text("image_size: 100\n")
    assert main(["train", "tiny-model", "--config", str(config), "--out", str(out)]) == 2
    assert "not a multiple of 28" in capsys.readouterr().err
