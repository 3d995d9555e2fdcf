"""Command line interface: ``hwnas <subcommand> ...``.

Subcommands live in :data:`SUBCOMMANDS`; each is one ``configure(parser)``
function adding its arguments and one ``run(args) -> int`` function. Add a
new one with :func:`register_subcommand` (other packages of hwnas add
``search``, ``train`` and ``latency``).

Examples::

    hwnas show fbnet_a --figure fbnet_a.png
    hwnas show my_arch.json
    hwnas profile fbnet_c --resolution 224
    hwnas profile my_arch.json --json profile.json
    hwnas search                      # FBNet search on the built-in digits, retrain, export
    hwnas train runs/search-.../      # retrain a searched architecture from scratch
    hwnas latency build --space fbnet_small --resolution 32 --out table.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

__all__ = ["Subcommand", "SUBCOMMANDS", "register_subcommand", "build_parser", "main"]


@dataclass(frozen=True)
class Subcommand:
    """A CLI subcommand: its name, one-line help, argument setup and action."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


SUBCOMMANDS: dict[str, Subcommand] = {}


def register_subcommand(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None],
                        run: Callable[[argparse.Namespace], int]) -> None:
    """Adds a subcommand (replacing one of the same name)."""
    SUBCOMMANDS[name] = Subcommand(name, help, configure, run)


# ---------------------------------------------------------------------- helpers


def _resolve_target(target: str, resolution: Optional[int], space_file: Optional[str]):
    """Returns ``(space, arch)`` for a zoo model name, an architecture JSON file or a run
    folder (its ``architecture.json``; a search run's own space when it is a user space)."""
    from . import models
    from .search.pipeline import architecture_space
    from .spaces.architecture import Architecture

    if target in models.ZOO:
        if space_file:
            raise ValueError(f"--space-file is for architecture files of a user-defined space, not the zoo model {target!r}")
        overrides = {} if resolution is None else {"resolution": resolution}
        space = models.space(target, **overrides)
        return space, space.make_arch(models.get_entry(target).blocks)
    if os.path.exists(target):
        path, run_folder = target, os.path.dirname(os.path.abspath(target))
        if os.path.isdir(target):
            path, run_folder = os.path.join(target, "architecture.json"), target
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{target}: a folder without architecture.json (not a finished search run)")
        arch = Architecture.load(path)
        if resolution is not None:
            arch = dataclasses.replace(arch, resolution=resolution)
        space = architecture_space(arch, space_file, run_folder, source=path)
        space.validate(arch)
        return space, arch
    raise ValueError(f"{target!r} is neither a zoo model ({', '.join(models.list_models())}) nor an existing "
                     "architecture file or run folder")


def _zoo_names() -> str:
    from . import models

    return ", ".join(models.list_models())


def _layer_table(space, arch) -> str:
    rows = [f"{'layer':>5} {'stage':>5}  {'block':<12} {'c_in':>5} {'c_out':>5} {'stride':>6}  input"]
    for layer, choice in zip(space.resolve_layers(arch), arch.choices):
        rows.append(
            f"{layer.index:>5} {layer.stage:>5}  {choice:<12} {layer.c_in:>5} {layer.c_out:>5} {layer.stride:>6}  "
            f"{layer.c_in}x{layer.in_hw[0]}x{layer.in_hw[1]}"
        )
    return "\n".join(rows)


# ---------------------------------------------------------------------- show


def _configure_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help=f"zoo model name ({_zoo_names()}), architecture JSON file or search run folder")
    parser.add_argument("--space-file", help="search-space JSON/YAML for architectures of a user-defined space")
    parser.add_argument("--resolution", type=int, help="input resolution (default: the model's)")
    parser.add_argument("--figure", metavar="FILE",
                        help="also draw the architecture (FBNet Figure 4 style) into FILE: .png, .svg or .pdf")


def _run_show(args: argparse.Namespace) -> int:
    from ._figures import figure_format
    from .spaces.figure import draw_architecture

    if args.figure:
        figure_format(args.figure)  # a bad extension is refused before anything is printed
    space, arch = _resolve_target(args.target, args.resolution, args.space_file)
    print(f"{args.target}: space {space.name!r} v{space.version}, {len(space.layers)} searchable layers, "
          f"resolution {arch.resolution}, width {arch.width:g}")
    print(_layer_table(space, arch))
    print(f"compact: {arch.to_string()}")
    if args.figure:
        draw_architecture(arch, args.figure, space=space, subtitle=args.target)
        print(f"figure written to {args.figure}")
    return 0


# ---------------------------------------------------------------------- profile


def _configure_profile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help=f"zoo model name ({_zoo_names()}), architecture JSON file or search run folder")
    parser.add_argument("--space-file", help="search-space JSON/YAML for architectures of a user-defined space")
    parser.add_argument("--resolution", type=int, help="input resolution (default: the model's)")
    parser.add_argument("--batch", type=int, default=1, help="batch size of the counted input (default 1)")
    parser.add_argument("--summary", action="store_true", help="totals only, no per-layer table")
    parser.add_argument("--json", metavar="PATH", help="also write the profile as JSON to PATH (missing folders are made)")


def _run_profile(args: argparse.Namespace) -> int:
    import torch

    from .spaces.profile import profile

    if args.json and os.path.isdir(args.json):
        # Refused before the table is printed, not after.
        raise IsADirectoryError(f"--json {args.json}: a folder; give a file name such as {os.path.join(args.json, 'profile.json')}")
    space, arch = _resolve_target(args.target, args.resolution, args.space_file)
    with torch.device("meta"):  # counting needs shapes only
        model = space.build(arch)
    result = profile(model, (args.batch, space.in_channels, arch.resolution, arch.resolution))
    if args.summary:
        print(f"{args.target}: params {result.params:,} ({result.params_m:.3f} M), MACs {result.macs:,} ({result.macs_m:.2f} M)")
    else:
        print(result.table())
    if args.json:
        result.save(args.json)
    return 0


register_subcommand("show", "print an architecture or zoo model as a table (and draw it)", _configure_show, _run_show)
register_subcommand("profile", "parameters, MACs and per-layer breakdown of a zoo model or architecture", _configure_profile, _run_profile)


# ---------------------------------------------------------------------- search, train, latency


def _configure_search(parser: argparse.ArgumentParser) -> None:
    from .search.commands import configure_search

    configure_search(parser)


def _run_search(args: argparse.Namespace) -> int:
    from .search.commands import run_search

    return run_search(args)


def _configure_train(parser: argparse.ArgumentParser) -> None:
    from .search.commands import configure_train

    configure_train(parser)


def _run_train(args: argparse.Namespace) -> int:
    from .search.commands import run_train

    return run_train(args)


class _ExistingParser:
    """Lets ``hwnas.latency.commands.add_subparser`` (which creates its own ``latency``
    parser from a subparsers object) fill the parser this registry already made."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self.parser


def _configure_latency(parser: argparse.ArgumentParser) -> None:
    from .latency.commands import add_subparser

    add_subparser(_ExistingParser(parser))


def _run_latency(args: argparse.Namespace) -> int:
    return int(args.handler(args) or 0)


register_subcommand("search", "FBNet search on a dataset for a latency target, then retrain and export",
                    _configure_search, _run_search)
register_subcommand("train", "train an architecture from scratch (SGD, cosine), measure its latency, export it",
                    _configure_train, _run_train)
register_subcommand("latency", "latency tables: build, validate, harness overhead", _configure_latency, _run_latency)


# ---------------------------------------------------------------------- entry


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per registered subcommand."""
    parser = argparse.ArgumentParser(prog="hwnas", description="Hardware-aware neural architecture search.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in SUBCOMMANDS.values():
        sub_parser = sub.add_parser(command.name, help=command.help, description=command.help)
        command.configure(sub_parser)
        sub_parser.set_defaults(_run=command.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``hwnas`` console script; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args._argv = argv  # as typed: --resume names the options its saved settings override
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, OSError) as exc:  # OSError: missing files, a folder given for a file, permissions...
        print(f"hwnas {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = {"search": "; if a run folder was printed above, continue with hwnas search --resume RUN_DIR",
                "train": "; if a run folder was printed above, continue with hwnas train --resume RUN_DIR",
                "latency": "; the same command continues from the entries already measured"}.get(args.command, "")
        print(f"\nhwnas {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`, which stopped reading: not an error of hwnas.
        # Point stdout at /dev/null so that the exit's final flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
