"""Samples x backend -> results JSONL (resumable) -> metrics, report and plots.

Each reply is appended to `OUT/results.jsonl` the moment it arrives; re-running the same command
skips what is done. Metrics are computed from the file, so a run that was interrupted and resumed
gives the same numbers as one that was not.
"""

from __future__ import annotations

import errno
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from progresslm import __version__, report_tables
from progresslm import metrics as metrics_lib
from progresslm import plots as plots_lib
from progresslm.ask import Item, ask
from progresslm.backends.base import Backend, BackendOptions, Request
from progresslm.backends.baselines import ConstantBackend, RandomBackend
from progresslm.backends.registry import create_backend
from progresslm.bench.format import Bench, load_bench
from progresslm.demo_swap import SWAP_SUFFIX, swap_report, swapped_samples
from progresslm.gallery import write_gallery
from progresslm.images import ImageReadError, ImageStore, missing_images
from progresslm.io import Confinement, write_text_atomic
from progresslm.matcher.hints import HintError, HintProvider
from progresslm.parsing import parse_reply
from progresslm.prompts import MODES, Prompt, build_prompt
from progresslm.results import ResultRecord, ResultStore, RunLock, RunLockedError
from progresslm.types import Prediction, Sample

log = logging.getLogger(__name__)

# The run is the same run (and may be resumed) only when these settings match.
IDENTITY_KEYS = ("backend", "model", "mode", "temperature", "top_p", "max_new_tokens", "seed", "value")


class EvalError(RuntimeError):
    """A problem with the inputs or the output folder; raised before any model call."""


@dataclass
class EvalConfig:
    bench: list[str]
    out: str
    backend: str = "constant"
    mode: str = "two-stage"
    image_root: str | None = None
    num_samples: int = 1
    skip_missing: bool = False
    limit: int | None = None  # a seeded subset of about this many samples, stratified by split, whole trajectories
    first: int | None = None  # only the first N samples, in file order
    bootstrap: int = 1000
    floors: bool = True  # score constant-50% and random beside the model in the report
    swap_demos: bool = False  # also ask with another task's demonstration: does the answer depend on it?
    plots: bool = True
    hints: str | None = None  # "matcher": retrieval hints in every prompt; "none": off; None: the backend's default
    hints_model: str | None = None  # the matcher that writes the hints (default: the shipped one)
    # Image paths that resolve outside --image-root (absolute names, "..", symlinks) are refused unless this is set:
    # a benchmark file must not make eval read, and send to a model server, files elsewhere on the machine.
    allow_outside_image_root: bool = False
    options: BackendOptions = field(default_factory=BackendOptions)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise EvalError(f"unknown mode {self.mode!r}; valid modes: {', '.join(MODES)}")
        if self.num_samples < 1:
            raise EvalError(f"--num-samples must be at least 1, got {self.num_samples}")
        if self.limit is not None and self.limit < 1:
            raise EvalError(f"--limit must be at least 1, got {self.limit}")
        if self.first is not None and self.first < 1:
            raise EvalError(f"--first must be at least 1, got {self.first}")
        if self.first is not None and self.limit is not None:
            raise EvalError("--limit and --first are alternatives: give one of them")
        if self.hints not in (None, "none", "matcher"):
            raise EvalError(f"unknown hints source {self.hints!r}; valid: none, matcher")

    def identity(self, model_name: str) -> dict:
        options = asdict(self.options)
        identity = {key: options[key] for key in IDENTITY_KEYS if key in options}
        identity.update(
            backend=self.backend,
            model=model_name,
            mode=self.mode,
            bench=sorted(Path(path).name for path in self.bench),
        )
        return identity


@dataclass
class EvalOutcome:
    out: Path
    metrics: dict
    done: int  # replies made in this call
    reused: int  # replies found from an earlier call
    skipped_missing: int = 0
    bad_lines: int = 0


def stratified_subset(samples: Sequence[Sample], n: int, seed: int = 0) -> list[Sample]:
    """About `n` samples drawn like the whole: each split (same-view, cross-view, text, unanswerable ...) gets its
    share of `n`, filled with whole trajectories picked at random (seeded), so PRC stays defined on the subset.
    A split's last trajectory may take it past its share; the samples keep their file order.

    >>> from progresslm.types import Demo, Modality, Sample
    >>> demo = Demo(Modality.TEXT, ("a", "b"), 2)
    >>> rows = [Sample(f"u{i}", f"t{i // 5}", "g", demo, f"o{i}.jpg", 0.5, 1) for i in range(40)]
    >>> picked = stratified_subset(rows, 12)
    >>> len(picked), len({s.trajectory_id for s in picked})  # three whole trajectories of five
    (15, 3)
    """
    if n >= len(samples):
        return list(samples)
    by_split: dict[str, dict[str, list[int]]] = {}
    for index, sample in enumerate(samples):
        by_split.setdefault(sample.split, {}).setdefault(sample.trajectory_id, []).append(index)
    rng = random.Random(seed)
    chosen: list[int] = []
    for split in sorted(by_split):
        groups = by_split[split]
        size = sum(len(g) for g in groups.values())
        quota = max(1, round(n * size / len(samples)))
        order = sorted(groups)
        rng.shuffle(order)
        taken = 0
        for trajectory in order:
            if taken >= quota:
                break
            chosen.extend(groups[trajectory])
            taken += len(groups[trajectory])
    return [samples[i] for i in sorted(chosen)]


def load_samples(config: EvalConfig) -> Bench:
    bench = load_bench(config.bench)
    for defect in bench.defects[:20]:
        log.warning("defect: %s", defect)
    if len(bench.defects) > 20:
        log.warning("... and %d more defects (progresslm bench stats lists them all)", len(bench.defects) - 20)
    if config.first is not None:
        bench.samples = bench.samples[: config.first]
    if config.limit is not None:
        bench.samples = stratified_subset(bench.samples, config.limit, seed=config.options.seed)
    if not bench.samples:
        raise EvalError(f"the benchmark is empty: no sample in {', '.join(map(str, config.bench))}")
    return bench


def check_image_root(samples: list[Sample], prompts: dict[str, Prompt], image_root: str | None, allow: bool) -> None:
    """Every image path resolves (following symlinks) inside `image_root`, unless `allow`; else an EvalError
    listing the offenders, before anything is read or sent."""
    if image_root is None or allow:
        return
    guard = Confinement(image_root)
    root = guard.root
    outside = [(sample.uid, path) for sample in samples for path in prompts[sample.uid].images
               if not guard.inside(path)]  # fmt: skip
    if outside:
        shown = "\n  ".join(f"{uid}: {path}" for uid, path in outside[:10])
        more = f"\n  ... {len(outside) - 10} more" if len(outside) > 10 else ""
        raise EvalError(
            f"{len(outside)} image paths lead outside --image-root {root} (absolute names, '..' or symlinks):\n"
            f"  {shown}{more}\nNothing was read or sent. Fix the benchmark file, or pass --allow-outside-image-root "
            "if these files are meant to be used"
        )


def check_images(samples: list[Sample], prompts: dict[str, Prompt], out: Path, skip: bool) -> list[Sample]:
    """Samples whose images all exist. Missing files are all listed; without `skip` nothing runs."""
    missing = missing_images(path for sample in samples for path in prompts[sample.uid].images)
    if not missing:
        return samples
    out.mkdir(parents=True, exist_ok=True)
    listing = out / "missing_images.txt"
    listing.write_text("".join(f"{path}\n" for path in missing))
    if not skip:
        shown = "\n  ".join(map(str, missing[:10]))
        more = f"\n  ... {len(missing) - 10} more" if len(missing) > 10 else ""
        raise EvalError(
            f"{len(missing)} image files are missing (all listed in {listing}):\n  {shown}{more}\n"
            "Check --image-root (images resolve as IMAGE_ROOT/<id>/<file name>), "
            "or pass --skip-missing to evaluate the samples whose images exist."
        )
    gone = set(missing)
    kept = [s for s in samples if not any(path in gone for path in prompts[s.uid].images)]
    log.warning("skipping %d samples with missing images (listed in %s)", len(samples) - len(kept), listing)
    if not kept:
        raise EvalError(f"every sample has a missing image (listed in {listing}); check --image-root")
    return kept


def check_out_folder(out: Path) -> None:
    """--out must be a folder (or not exist yet) whose run files, where present, are files."""
    if out.exists() and not out.is_dir():
        raise EvalError(f"--out {out} is a file, not a folder; choose another --out")
    for name in ("config.json", "results.jsonl", "metrics.json"):
        if (out / name).exists() and not (out / name).is_file():
            raise EvalError(f"{out / name} is not a file (a folder?); remove it or choose another --out")


def _check_out_dir(out: Path, identity: dict) -> None:
    config_path = out / "config.json"
    if not config_path.exists():
        return
    try:
        previous = json.loads(config_path.read_text(encoding="utf-8")).get("identity", {})
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        raise EvalError(f"{config_path} is not valid UTF-8 JSON; delete it or choose another --out") from None
    # Older runs lack the later keys: a missing "hints" means none, anything else missing is not compared.
    previous = {"hints": None, **previous}
    identity = {"hints": None, **identity}
    changed = {k: (previous.get(k), v) for k, v in identity.items() if previous.get(k, v) != v}
    if changed:
        what = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise EvalError(
            f"{out} holds results of another run ({what}); choose another --out, or delete the folder to start over"
        )


def resolve_hints(config: EvalConfig, backend: Backend):
    """The `HintProvider` the prompts need (the option, else the backend's default), or None."""
    source = config.hints if config.hints is not None else getattr(backend, "default_hints", None)
    if source in (None, "none"):
        return None

    try:
        return HintProvider(config.hints_model, device=config.options.device)
    except HintError as err:
        raise EvalError(str(err)) from None


def make_record(request: Request, reply, backend: Backend, config: EvalConfig) -> ResultRecord:
    prediction = parse_reply(reply.text, config.mode)  # an empty reply (refused request) is a parse failure
    return ResultRecord(
        uid=request.uid,
        draw=request.draw,
        backend=config.backend,
        model=backend.model_name,
        mode=config.mode,
        prompt_hash=request.prompt.hash,
        reply=reply.text,
        status=prediction.status.value,
        score=prediction.score,
        ref_status=None if prediction.ref_status is None else prediction.ref_status.value,
        ref=prediction.ref,
        latency_s=round(reply.latency_s, 6),
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        split=request.sample.split,
        trajectory_id=request.sample.trajectory_id,
        error=reply.error,
    )


def run_requests(
    backend: Backend,
    work: Sequence[tuple[Sample, int]],
    prompts: dict[str, Prompt],
    store: ResultStore,
    config: EvalConfig,
    images: ImageStore,
    on_record: Callable[[ResultRecord], None] = lambda record: None,
) -> int:
    """Send the work to the backend (`progresslm.ask`), saving each reply as it comes. Returns replies saved."""
    def unreadable(item: Item, err: ImageReadError) -> None:
        raise EvalError(f"sample {item.sample.uid}: {err}; fix or remove the file, then re-run to resume") from err

    saved = 0
    items = [Item(sample, prompts[sample.uid], draw) for sample, draw in work]
    for answer in ask(backend, items, images, on_image_error=unreadable):
        record = make_record(answer.request, answer.reply, backend, config)
        store.append(record)
        saved += 1
        on_record(record)
    return saved


def evaluate(config: EvalConfig, backend: Backend | None = None, progress: bool = True) -> EvalOutcome:
    """Run (or resume) one evaluation and write metrics, report and plots into `config.out`, holding the
    folder's lock: a second run into the same folder is refused instead of duplicating every reply."""
    check_out_folder(Path(config.out))
    try:
        with RunLock(config.out):
            return _evaluate(config, backend, progress)
    except RunLockedError as err:
        if backend is not None:
            backend.close()
        raise EvalError(str(err)) from None
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        saved = Path(config.out) / "results.jsonl"
        raise EvalError(
            f"the disk is full ({err.filename or config.out}): every reply written before is kept in {saved}; "
            "free some space and run the same command again to resume"
        ) from None


def _evaluate(config: EvalConfig, backend: Backend | None, progress: bool) -> EvalOutcome:
    out = Path(config.out)
    bench = load_samples(config)
    samples = bench.samples
    prompts = {s.uid: build_prompt(s, config.mode, config.image_root) for s in samples}
    if backend is None:
        backend = create_backend(config.backend, config.options, config.mode)
    try:
        hints = resolve_hints(config, backend)
        identity = config.identity(backend.model_name)
        if hints is not None:
            identity["hints"] = hints.name
        _check_out_dir(out, identity)
        needs_images = (
            backend.image_format != "none" or backend.reads_images or config.image_root is not None or hints is not None
        )
        n_before = len(samples)
        check_image_root(samples, prompts, config.image_root, config.allow_outside_image_root)
        if needs_images:
            samples = check_images(samples, prompts, out, config.skip_missing)
        write_config(out, config, identity, bench)
        swapped = swapped_samples(samples, config.image_root, config.options.seed) if config.swap_demos else []
        asked = list(samples) + list(swapped)
        lines = hints.hints(asked, config.image_root) if hints is not None else {}
        for sample in asked:
            prompts[sample.uid] = build_prompt(sample, config.mode, config.image_root, hints=lines.get(sample.uid))

        store = ResultStore(out / "results.jsonl")
        foreign = store.foreign(identity)
        if foreign:
            first = foreign[0]
            raise EvalError(
                f"{store.path} holds {len(foreign)} replies of another run (e.g. uid {first.uid}: backend "
                f"{first.backend!r}, model {first.model!r}, mode {first.mode!r}; this run: backend "
                f"{identity['backend']!r}, model {identity['model']!r}, mode {identity['mode']!r}); "
                "choose another --out, or delete the folder to start over"
            )
        hashes = {uid: prompt.hash for uid, prompt in prompts.items()}
        done, bad, stale = store.latest(hashes)
        for line in bad[:10]:
            log.warning("%s:%d: unreadable result line skipped (%s)", store.path, line.line, line.reason)
        if len(bad) > 10:
            log.warning("... %d unreadable result lines in all; their samples are made again", len(bad))
        if stale:
            log.warning("%d earlier results were made with another prompt; they are kept but redone", stale)
        work = [(s, d) for s in samples for d in range(config.num_samples) if (s.uid, d) not in done]
        work += [(s, 0) for s in swapped if (s.uid, 0) not in done]
        reused = len(samples) * config.num_samples + len(swapped) - len(work)
        made = 0
        if work:
            try:
                made = _run_with_progress(backend, work, prompts, store, config, reused, progress)
            except ImageReadError as err:  # a backend that reads images itself
                raise EvalError(f"{err}; fix or remove the file, then re-run to resume") from err
    finally:
        backend.close()

    metrics = finish(out, samples, config, prompts, swapped)
    return EvalOutcome(out, metrics, made, reused, n_before - len(samples), len(bad))


def _run_with_progress(backend, work, prompts, store, config, reused, progress) -> int:
    total = len(work) + reused
    bar = tqdm(total=total, initial=reused, desc=f"eval {config.backend}", unit="reply", disable=not progress)
    images = ImageStore()
    try:
        with store:
            return run_requests(backend, work, prompts, store, config, images, on_record=lambda record: bar.update())
    finally:
        bar.close()
        write_backend_stats(Path(config.out), backend)


def write_backend_stats(out: Path, backend: Backend) -> None:
    """OUT/backend_stats.json: the backend's own figures of this call, also when it failed (`Backend.run_stats`;
    the openai backend: requests, failures and mean latency of each replica)."""
    run_stats = getattr(backend, "run_stats", None)  # a duck-typed backend handed to `evaluate` may lack it
    stats = run_stats() if run_stats is not None else None
    if stats is not None:
        _write_json(out / "backend_stats.json", stats)


def write_config(out: Path, config: EvalConfig, identity: dict, bench: Bench) -> None:
    out.mkdir(parents=True, exist_ok=True)
    resolved = asdict(config)
    resolved["options"].pop("api_key_env", None)
    resolved.update(
        model=identity["model"],
        identity=identity,
        version=__version__,
        n_samples=len(bench.samples),
        defects=len(bench.defects),
    )
    write_text_atomic(out / "config.json", json.dumps(resolved, indent=2) + "\n")


def collect_predictions(
    done: dict[tuple[str, int], ResultRecord], samples: Sequence[Sample], draws: int
) -> list[list[Prediction | None]]:
    """Predictions per draw, aligned with `samples` (None where a reply is missing)."""
    return [
        [done[(s.uid, d)].prediction() if (s.uid, d) in done else None for s in samples] for d in range(draws)
    ]


def average_metrics(per_draw: list[dict]) -> dict:
    """Mean over draws of every number in the split tables; bootstrap intervals from draw 0."""
    if len(per_draw) == 1:
        return per_draw[0]
    merged = json.loads(json.dumps(per_draw[0]))
    for split, table in merged["splits"].items():
        for key, value in table.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values = [m["splits"].get(split, {}).get(key) for m in per_draw]
                if all(isinstance(v, (int, float)) for v in values):
                    table[key] = round(sum(values) / len(values), 4)
                else:
                    table[key] = None
    merged["draws"] = len(per_draw)
    return merged


def floor_predictions(
    samples: list[Sample], prompts: dict[str, Prompt], config: EvalConfig
) -> dict[str, list[Prediction]]:
    """Shortcut baselines computed in process: what a model must beat to mean anything."""
    floors = {}
    items = [Item(s, prompts[s.uid]) for s in samples]
    index = {s.uid: i for i, s in enumerate(samples)}
    for label, cls, options in (
        ("constant-50%", ConstantBackend, BackendOptions(value=50.0)),
        ("random", RandomBackend, BackendOptions(seed=config.options.seed)),
    ):
        backend = cls(options, config.mode)
        preds: list[Prediction | None] = [None] * len(samples)
        for answer in ask(backend, items):
            preds[index[answer.request.uid]] = answer.prediction(config.mode)
        floors[label] = preds
    return floors


def finish(
    out: Path, samples: list[Sample], config: EvalConfig, prompts: dict[str, Prompt], swapped: list[Sample] = ()
) -> dict:
    """metrics.json, report.md, report.html and plots from the results file (read once)."""
    done, _, _ = ResultStore(out / "results.jsonl").latest({uid: prompt.hash for uid, prompt in prompts.items()})
    per_draw = collect_predictions(done, samples, config.num_samples)
    refused = sum(record.error is not None for record in done.values())
    missing = sum(pred is None for draw in per_draw for pred in draw)
    if missing:
        log.warning("%d replies are missing from %s; metrics cover the rest", missing, out / "results.jsonl")
    if refused:
        log.warning("%d requests were refused by the backend (see the `error` field in %s); they count as "
                    "parse failures", refused, out / "results.jsonl")
    computed = []
    for preds in per_draw:
        pairs = [(s, p) for s, p in zip(samples, preds) if p is not None]
        computed.append(
            metrics_lib.compute_metrics(
                [s for s, _ in pairs], [p for _, p in pairs], bootstrap=config.bootstrap, seed=config.options.seed
            )
        )
    metrics = average_metrics(computed)
    metrics["n_replies"] = sum(pred is not None for draw in per_draw for pred in draw)
    metrics["n_missing"] = missing
    metrics["n_refused"] = refused
    if swapped:
        swapped_preds = collect_predictions(done, swapped, 1)[0]
        originals = {s.uid: (s, p) for s, p in zip(samples, per_draw[0]) if p is not None}
        pairs = []
        for sample, prediction in zip(swapped, swapped_preds):
            original = originals.get(sample.uid.removesuffix(SWAP_SUFFIX))
            if prediction is not None and original is not None:
                pairs.append((*original, prediction))
        if pairs:
            metrics["demo_swap"] = swap_report(pairs)
    _write_json(out / "metrics.json", metrics)

    floors = []
    if config.floors:
        for label, preds in floor_predictions(samples, prompts, config).items():
            floor_metrics = metrics_lib.compute_metrics(samples, preds, bootstrap=0)
            floors.append(report_tables.Run(name=label, metrics=floor_metrics, config={"backend": label}))
        _write_json(out / "floors.json", {run.name: run.metrics for run in floors})

    run = report_tables.load_run(out)
    plots = []
    if config.plots:
        first = [(s, p) for s, p in zip(samples, per_draw[0]) if p is not None]
        if first:
            plots.append(str(plots_lib.plot_score_histograms([s for s, _ in first], [p for _, p in first], out / "score_hist.png")))
            plots.append(str(plots_lib.plot_trajectories([s for s, _ in first], [p for _, p in first], out / "trajectories.png")))

            replies = {uid: record.reply for (uid, draw), record in done.items() if draw == 0}
            write_gallery(out / "gallery.html", [s for s, _ in first], [p for _, p in first], replies,
                          config.image_root, title=run.name)
    (out / "report.md").write_text(report_tables.render_report_markdown(run, floors=floors, plots=[Path(p).name for p in plots]))
    (out / "report.html").write_text(report_tables.render_report_html(run, floors=floors, plots=plots))
    return metrics


def _write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


CARD_BASELINES = ("constant", "pixel-nn")  # what a dataset card measures a benchmark with


def baseline_metrics(files: list[Path], image_root: Path, out: Path) -> dict[str, dict]:
    """`constant` and `pixel-nn` on the benchmark split: what a model must beat."""
    results = {}
    for name in CARD_BASELINES:
        config = EvalConfig(
            bench=[str(p) for p in files], out=str(out / name), backend=name, image_root=str(image_root),
            bootstrap=0, floors=False, plots=False, options=BackendOptions(value=50.0),
        )
        results[name] = evaluate(config, progress=False).metrics["splits"]
    return results
