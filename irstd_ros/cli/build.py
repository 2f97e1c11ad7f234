"""irstd-build: compile engines ahead of time, so a vehicle never compiles at start-up; ``--check`` a cache.

    irstd-build --model lrrnet --backend openvino --size 640x512 --size 256x256
    irstd-build --check                     # every entry: ok, or why it would be rebuilt

Sizes are camera frames, WIDTHxHEIGHT; each is padded to the model's stride as
the node pads it. Knob settings need no engine of their own (IRSTD-Diff's loop
runs around its compiled parts).
"""
from __future__ import annotations

import argparse
import json
import re
import sys

import numpy as np

from ..errors import IRSTDError, one_line
from . import add_engine_args, engine_config

PROG = "irstd-build"
SIZE = re.compile(r"([1-9][0-9]*)x([1-9][0-9]*)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[], help="registry name (repeat for several; default lrrnet)")
    ap.add_argument("--weights", default="", help="checkpoint (one --model only; default: the shipped weights)")
    add_engine_args(ap)
    ap.set_defaults(backend="openvino")
    ap.add_argument("--size", action="append", default=[], metavar="WxH",
                    help="frame size to build for (repeat; default 640x512 and 256x256)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--check", action="store_true", help="verify every cache entry instead of building")
    ap.add_argument("--json", help="write what was done here")
    return ap


def parse_size(text: str):
    m = SIZE.fullmatch(text.strip())
    if not m:
        raise IRSTDError(f"--size takes WIDTHxHEIGHT such as 640x512, got {text!r}")
    return int(m.group(2)), int(m.group(1))  # (height, width)


def check(cache_dir: str) -> int:
    from ..runtime.backends.cache import EngineCache
    cache = EngineCache(cache_dir or None)
    results = cache.check()
    for path, problem in results:
        print(f"{'ok   ' if problem is None else 'STALE'} {path.name}" + (f": {problem}" if problem else ""))
    bad = sum(p is not None for _, p in results)
    print(f"{len(results)} entries in {cache.root}, {bad} would be rebuilt on use")
    return 1 if bad else 0


def build(args) -> int:
    from ..runtime.backends.cache import EngineCache
    from ..runtime.detector import Detector, DetectorConfig
    from ..runtime.pipeline import preprocess
    from ..progress import progress
    models = args.model or ["lrrnet"]
    if args.weights and len(models) > 1:
        raise IRSTDError("--weights applies to one --model")
    sizes = [parse_size(s) for s in (args.size or ["640x512", "256x256"])]
    done = []
    jobs = [(m, s) for m in models for s in sizes]
    detectors = {}
    for model, (h, w) in progress(jobs, desc=f"{PROG} {args.backend}"):
        if model not in detectors:
            detectors[model] = Detector(DetectorConfig(model=model, weights=args.weights or None, device=args.device,
                                                       **engine_config(args)))
        det = detectors[model]
        if det.compiled is None:
            raise IRSTDError("--backend torch compiles nothing; choose openvino, onnxruntime or tensorrt")
        x, _ = preprocess(np.zeros((h, w), np.float32), det.stride)
        for part, lookup in det.compiled.compile(x):
            padded = f"{x.shape[-1]}x{x.shape[-2]}"
            done.append({"model": model, "size": f"{w}x{h}", "padded": padded, "part": part, "backend": args.backend,
                         "precision": det.precision, "status": lookup.status, "seconds": round(lookup.seconds, 3),
                         "entry": str(lookup.path)})
            print(f"{model} {part} {args.backend}-{det.precision} {w}x{h} (padded {padded}): {lookup.status} "
                  f"in {lookup.seconds:.2f} s")
    print(f"cache: {EngineCache(args.cache_dir or None).root}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(done, f, indent=1)
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return check(args.cache_dir) if args.check else build(args)
    except (IRSTDError, ValueError) as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
