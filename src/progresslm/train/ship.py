"""Copy trained default models into the package (`progresslm/nano/weights`), the last stage of `make nano`.

    python -m progresslm.train.ship --matcher runs/nano/matcher --nano runs/nano/grpo

The matcher's checkpoint (config and weights; not its cross-fitting folds, which only training uses) and
nano's training output (through `progresslm train export`: weights, processor, recipe; no optimizer state)
replace what is there. The model cards (`README.md`) are kept: they are written by hand from the figures
of `experiments/nano_results.py`, which a new release must be measured with.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from progresslm.matcher import MATCHER_DIR
from progresslm.nano import VLM_DIR
from progresslm.train.export_model import export_model

KEEP = ("README.md",)


def _clear(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if path.name not in KEEP:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def ship_matcher(source: str | Path, target: Path = MATCHER_DIR) -> Path:
    source = Path(source)
    for name in ("config.json", "model.safetensors"):
        if not (source / name).is_file():
            raise FileNotFoundError(f"{source} has no {name}: train it first (progresslm train matcher)")
    _clear(target)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(source / name, target / name)
    return target


def ship_nano(source: str | Path, target: Path = VLM_DIR) -> Path:
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    export_model(source, staging)  # a failure leaves the shipped model as it was
    _clear(target)
    for path in staging.iterdir():
        if path.name in KEEP and (target / path.name).exists():
            path.unlink()  # the hand-written card stays
            continue
        shutil.move(str(path), target / path.name)
    staging.rmdir()
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matcher", metavar="DIR", help="a `progresslm train matcher` output")
    parser.add_argument("--nano", metavar="DIR", help="a nano training output (after GRPO)")
    args = parser.parse_args(argv)
    try:
        if args.matcher:
            print(f"matcher -> {ship_matcher(args.matcher)}")
        if args.nano:
            print(f"nano -> {ship_nano(args.nano)}")
    except (FileNotFoundError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
