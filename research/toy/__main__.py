"""Train, measure and ship the toy MVideo: `python -m research.toy run --work runs/toy` does everything.

    python -m research.toy run      --work DIR [--docs docs] [--set key=value ...] [--scale 0.01]  # all stages
    python -m research.toy vae|data|base|mvideo|mvideo-a0|evaluate|report --work DIR  # one stage
    python -m research.toy vae --work DIR --device cuda                                  # VAE on a GPU
    python -m research.toy ship     --work DIR [--to assets/toy]                       # copy the weights

Every stage checkpoints; run the same command again after a stop and it goes on from the last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

STAGE_ORDER = ("vae", "data", "base", "mvideo", "mvideo-a0", "evaluate", "report")


def _parse_set(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --set {item!r} must look like key=value, e.g. base_steps=2000")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.toy", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("run", *STAGE_ORDER, "ship"), help="what to do")
    parser.add_argument("--work", type=Path, default=Path("runs/toy"), help="work folder (checkpoints, caches)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="change toy config values")
    parser.add_argument("--scale", type=float, default=None, help="multiply steps and clip counts (smoke runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy CPU)")
    parser.add_argument(
        "--to", type=Path, default=None, help="ship: destination folder (default assets/toy, from the repository root)"
    )
    parser.add_argument(
        "--docs", type=Path, default=None, help="report: where toy-model.md goes (default WORK/report; docs/ ships it)"
    )
    parser.add_argument(
        "--device", default=None, help="where the vae stage trains, e.g. cuda (default CPU; later stages run on CPU)"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    import torch

    from research.toy.config import ToyConfig
    from research.toy.stages import STAGES, StageError, prepare_work

    torch.set_num_threads(args.threads)
    try:
        if args.device is not None and args.stage not in ("run", "vae"):
            raise StageError(f"--device only applies to the vae stage (and run), not to {args.stage}; leave it out")
        overrides = _parse_set(args.set)
        config = None
        if args.scale is not None and not (args.work / "toy_config.json").is_file():
            config = ToyConfig().scaled(args.scale)
        work, config = prepare_work(args.work, config, overrides)
        progress = not args.no_progress
        names = STAGE_ORDER if args.stage == "run" else (args.stage,)
        for name in names:
            if name == "evaluate":
                from research.toy.evaluation import stage_evaluate

                figures = stage_evaluate(work, config, progress)
            elif name == "report":
                from research.toy.report import write_report

                docs = args.docs if args.docs is not None else work / "report"
                figures = {"report": str(write_report(work, config, docs))}
            elif name == "ship":
                from research.toy.report import ship

                figures = {"shipped": str(ship(work, args.to))}
            elif name == "vae":
                figures = STAGES[name](work, config, progress=progress, device=args.device)
            else:
                figures = STAGES[name](work, config, progress=progress)
            short = {k: v for k, v in figures.items() if not isinstance(v, (list, dict))}
            print(f"[{name}] {json.dumps(short)}", flush=True)
    except (StageError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
