"""How fast is the harness itself? The `constant` backend over ~3,000 samples with real image files.

Measures prompt building, image encoding (base64 data URLs, as the `openai` backend needs),
parsing, the results file, metrics (with bootstrap) and the report: everything but a model.
Target: at least 500 samples/s on one core, each image file read and encoded once.

    python benchmarks/eval_overhead.py [--samples 3000] [--bootstrap 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core
    from progresslm import images as images_module
    from progresslm.backends.base import BackendOptions
    from progresslm.backends.baselines import ConstantBackend
    from progresslm.bench.example import build_example
    from progresslm.evaluation import EvalConfig, evaluate

    work = Path(tempfile.mkdtemp(prefix="progresslm-overhead-"))
    per_colour = -(-args.samples // 288)  # the example gives 288 samples per episode per colour
    start = time.perf_counter()
    example = build_example(work / "bench", seed=0, tasks_per_colour=per_colour)
    n = sum(1 for p in example.files for line in p.read_text().splitlines() if line.strip())
    print(f"built {n} samples with images in {time.perf_counter() - start:.1f} s")

    reads: list[Path] = []
    encode = images_module.ImageStore._encode
    images_module.ImageStore._encode = lambda self, path, fmt: reads.append(path) or encode(self, path, fmt)

    backend = ConstantBackend(BackendOptions(), "two-stage")
    backend.image_format = "data_url"  # encode every image as the openai backend would
    config = EvalConfig(
        bench=[str(p) for p in example.files],
        out=str(work / "run"),
        backend="constant",
        image_root=str(example.root / "images"),
        bootstrap=args.bootstrap,
        first=args.samples,
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    outcome = evaluate(config, backend=backend, progress=False)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    done = outcome.done
    print(f"samples: {done}")
    print(f"images read and encoded: {len(reads)} ({len(set(reads))} unique files)")
    print(f"wall: {wall:.2f} s, cpu: {cpu:.2f} s")
    print(f"samples/s: {done / wall:.0f} (wall), {done / cpu:.0f} (per cpu-second)")

    config.bootstrap = 0
    t0 = time.perf_counter()
    evaluate(config, backend=ConstantBackend(BackendOptions(), "two-stage"), progress=False)
    print(f"re-run with everything done (load, metrics without bootstrap, report, plots): {time.perf_counter() - t0:.2f} s")
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
