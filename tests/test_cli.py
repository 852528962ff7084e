import json
import subprocess
import sys

from helpers import BENCH_FILES, fixture

from progresslm.cli.main import main


def test_help_and_bench_stats_do_not_import_torch():
    code = (
        "import sys\n"
        "from progresslm.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"main(['bench', 'stats', {str(fixture('text-normal'))!r}, '--json'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'transformers' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_bench_stats_json(capsys):
    files = [str(fixture(name)) for name in BENCH_FILES]
    assert main(["bench", "stats", *files, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["samples"] == 7 + 6 + 5 + 6 + 6
    # trajectories: unique ids per answerable split, summed. Cross-view: the two camera pairs of
    # one trajectory share an id and count once (3 ids in the fixture rows).
    by_split = stats["by_split"]
    assert by_split["visual_cross_view"]["trajectories"] == 3
    assert stats["trajectories"] == sum(by_split[s]["trajectories"] for s in ("visual_same_view", "visual_cross_view", "text"))
    assert by_split["visual_same_view"] == {"samples": 7, "trajectories": 4, "demo_lengths": {"5": 5, "6": 1, "8": 1}}
    assert by_split["text"]["samples"] == 6 and by_split["text_unanswerable"]["samples"] == 6


def test_bench_stats_table_lists_missing_images(tmp_path, capsys):
    assert main(["bench", "stats", str(fixture("text-normal")), "--image-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "6 missing" in out and "missing: " in out


def test_bench_stats_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1\n')
    assert main(["bench", "stats", str(bad)]) == 2
    assert f"{bad}:1:" in capsys.readouterr().err


def test_unknown_backend_lists_valid_ones(capsys):
    assert main(["eval", "--bench", str(fixture("text-normal")), "--backend", "gpt-9"]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'gpt-9'" in err and "openai" in err and "hf" in err


def test_eval_then_report_side_by_side(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PROGRESSLM_HOME", str(tmp_path / "home"))
    runs = []
    for backend in ("constant", "pixel-nn"):
        out = tmp_path / backend
        code = main(["eval", "--backend", backend, "--out", str(out), "--quiet", "--bootstrap", "20", "--limit", "120"])
        assert code == 0
        runs.append(str(out))
    capsys.readouterr()
    assert main(["report", *runs, "--md", str(tmp_path / "cmp.md"), "--html", str(tmp_path / "cmp.html")]) == 0
    table = capsys.readouterr().out
    assert "pixel-nn" in table and "constant" in table
    assert "<table" in (tmp_path / "cmp.html").read_text()


def test_report_of_a_folder_without_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "metrics.json" in capsys.readouterr().err


def test_eval_hf_backend_on_a_local_checkpoint(tiny_vlm_dir, tmp_path, capsys, monkeypatch):
    """The real hf path end to end: a saved tiny Qwen2.5-VL, loaded by path, no conversion step."""
    monkeypatch.setenv("PROGRESSLM_HOME", str(tmp_path / "home"))
    out = tmp_path / "hf"
    args = ["eval", "--backend", "hf", "--model", str(tiny_vlm_dir), "--device", "cpu", "--first", "4",
            "--max-new-tokens", "12", "--batch-size", "2", "--out", str(out), "--quiet", "--bootstrap", "0"]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4
    assert all(r["model"] and r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 for r in records)
    # a random model writes no valid answer: its replies are parse failures, counted as such
    assert json.loads((out / "metrics.json").read_text())["splits"]["visual_same_view"]["n"] == 4
    assert main(args) == 0  # resumes: nothing left to do
    assert "0 new replies, 4 reused" in capsys.readouterr().out
