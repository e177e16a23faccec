"""Command line for recipes and mask files.

    python -m editing render RECIPE.json --source NAME=MASKFILE [--source ...] --out FILE
    python -m editing convert IN OUT
    python -m editing docs [--write docs/editing.md]

Mask files are read and written in any format `mvideo_core.masks` knows, chosen by extension (.zip PNG sequence,
.npz, .mp4 label video, .json COCO RLE). Errors are one line on stderr and exit code 2; warnings (e.g. a layer
leaving the frame) go to stderr too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from editing.recipe import load, load_sources, reference_markdown, render
from mvideo_core.budget import add_budget_arguments, budget_from_args, use_budget
from mvideo_core.masks import MaskSet, load_masks, save_masks

DOCS_START, DOCS_END = "<!-- ops:start (python -m editing docs --write docs/editing.md) -->", "<!-- ops:end -->"


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def _writable(out: Path) -> None:
    """Refuse an output path that cannot be written before any work is done."""
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise CommandError(f"--out {out} is a folder; give a file name such as {out / 'masks.npz'}")
    if not folder.is_dir():
        raise CommandError(f"the output folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise CommandError(f"the output folder {folder} is not writable")


def _save_atomic(masks: MaskSet, out: Path) -> Path:
    """Write next to `out` and rename, so a failed write never leaves half a file under the final name."""
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    try:
        save_masks(masks, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _describe(masks: MaskSet) -> str:
    h, w = masks.size
    return f"{masks.num_objects} object(s), {masks.num_frames} frames of {w}x{h} at {masks.fps:g} fps"


def cmd_render(args: argparse.Namespace) -> None:
    out = Path(args.out)
    _writable(out)
    recipe = load(args.recipe)
    result = render(recipe, load_sources(args.source))
    for warning in result.meta.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    _save_atomic(result, out)
    print(f"wrote {out}: {_describe(result)}")


def cmd_convert(args: argparse.Namespace) -> None:
    src, out = Path(args.input), Path(args.output)
    _writable(out)
    masks = load_masks(src)
    _save_atomic(masks, out)
    print(f"wrote {out}: {_describe(masks)}")


def cmd_docs(args: argparse.Namespace) -> None:
    text = reference_markdown()
    if args.write is None:
        print(text, end="")
        return
    path = Path(args.write)
    doc = path.read_text()
    if DOCS_START not in doc or DOCS_END not in doc:
        raise CommandError(f"{path} has no {DOCS_START} ... {DOCS_END} markers to write the op reference between")
    head, rest = doc.split(DOCS_START, 1)
    path.write_text(f"{head}{DOCS_START}\n{text}{DOCS_END}{rest.split(DOCS_END, 1)[1]}")
    print(f"wrote the op reference into {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m editing", description="Render edit recipes and convert masks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render", help="render a recipe on its source mask files")
    p.add_argument("recipe", help="recipe .json")
    p.add_argument("--source", action="append", default=[], metavar="NAME=MASKFILE", help="a source the recipe names")
    p.add_argument("--out", required=True, help="output mask file (.zip, .npz, .mp4 or .json)")
    add_budget_arguments(p)
    p.set_defaults(run=cmd_render)
    p = sub.add_parser("convert", help="convert a mask file to another format (by extension)")
    p.add_argument("input")
    p.add_argument("output")
    add_budget_arguments(p)
    p.set_defaults(run=cmd_convert)
    p = sub.add_parser("docs", help="print the op reference (Markdown), or write it into a docs file")
    p.add_argument("--write", metavar="PATH", help="replace the op reference between the markers in PATH")
    p.set_defaults(run=cmd_docs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "max_frames"):
            with use_budget(budget_from_args(args)):
                args.run(args)
        else:
            args.run(args)
    except (CommandError, ValueError, OSError) as err:  # RecipeError, EditError, MaskError are ValueErrors
        print(f"error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; lower --max-memory-gb or render fewer frames, layers or pixels", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
