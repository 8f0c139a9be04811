"""The ``innerlens`` command: one subcommand per entry point, options generated from Configs.

Every bad input ends as one line on stderr and exit code 2, before any run is created.
``mlflow run`` passes parameters as ``--name value`` (underscores kept, booleans as
true/false), so those spellings are accepted too.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from innerlens.commands import entry_points
from innerlens.config import NONE_SPELLINGS, Config, FieldSpec
from innerlens.errors import ConfigError, RunFailed
from innerlens.registry import EntryPoint


def normalize_args(args: list[str], specs: list[FieldSpec]) -> list[str]:
    """Accept ``--name_with_underscores`` and ``--flag true|false`` as ``mlflow run`` passes them."""
    bools = {spec.cli_flag for spec in specs if spec.base_type is bool}
    optional = {spec.cli_flag for spec in specs if spec.base_type is bool and spec.optional}  # "none": unset, the default
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        value: str | None = None
        if arg.startswith("--"):
            if "=" in arg:
                arg, value = arg.split("=", 1)
            arg = arg.replace("_", "-")
        if arg in bools:
            if value is None and i + 1 < len(args) and not args[i + 1].startswith("-"):
                value = args[i + 1]
                i += 1
            if value is not None and arg in optional and value.strip().lower() in NONE_SPELLINGS:
                i += 1
                continue
            if value is not None:
                truthy = value.lower() in ("true", "1", "yes")
                if not truthy and value.lower() not in ("false", "0", "no"):
                    raise ConfigError(f"{arg}: expected true or false, got {value!r}")
                arg = arg if truthy else "--no-" + arg[2:]
            out.append(arg)
        else:
            out.append(arg if value is None else f"{arg}={value}")
        i += 1
    return out


class ConfigCommand(click.Command):
    """A click command whose options come from a Config and whose args are normalized first."""

    def __init__(self, *args: Any, config: type[Config], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config_class = config

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = rewrite_legacy_flags(args, self.config_class.legacy_flags)
        return super().parse_args(ctx, normalize_args(args, list(self.config_class.specs(include_hidden=False))))


def rewrite_legacy_flags(args: list[str], legacy: dict[str, tuple[str, dict[str, str | None]]]) -> list[str]:
    """Map the seed scripts' value flags onto the project's options, e.g. ``--regression False`` to
    ``--task classification`` and ``--device ""`` to ``--device auto``; anything else passes as is."""
    out: list[str] = []
    i = 0
    while i < len(args):
        flag, _, inline = args[i].partition("=")
        spelled = "--" + flag[2:].replace("_", "-") if flag.startswith("--") else flag
        if spelled not in legacy:
            out.append(args[i])
            i += 1
            continue
        field, values = legacy[spelled]
        if "=" in args[i]:
            given = inline
        elif "" in values and (i + 1 >= len(args) or args[i + 1].startswith("--")):
            given = ""  # a bare switch
        else:
            given = args[i + 1] if i + 1 < len(args) else ""
            i += 1
        i += 1
        key = given.strip().lower()
        if key not in values:
            if spelled == "--" + field.replace("_", "-"):  # the option itself: other values are its own
                out += [spelled, given]
                continue
            raise ConfigError(f"{spelled}: expected one of {', '.join(repr(v) for v in values)}, got {given!r}")
        if values[key] is not None:
            out += ["--" + field.replace("_", "-"), values[key]]
    return out


def _option(spec: FieldSpec) -> click.Option:
    """Values stay strings here: the Config parses them, so every error reads the same."""
    help_text = spec.help
    if spec.base_type is bool and not spec.is_tuple:
        name = spec.name.replace("_", "-")
        switches = [f"--{name}/--no-{name}", *(f"{alias}/--no-{alias[2:]}" for alias in spec.aliases)]
        return click.Option([*switches, spec.name], default=spec.default, show_default=True, help=help_text)
    metavar = "|".join(spec.choices) if spec.choices else {int: "INT", float: "FLOAT", str: "TEXT"}[spec.base_type]
    if spec.is_tuple:
        metavar = f"{metavar},..."
    return click.Option(
        [spec.cli_flag, *spec.aliases, spec.name],
        type=str,
        metavar=metavar,
        default=spec.render(spec.default),
        show_default=True,
        help=help_text,
    )


def _fill_regime_defaults(params: list[click.Parameter], config: type[Config]) -> None:
    """``--regime NAME`` is read first and turns its values into the other options' defaults."""
    specs = {spec.name: spec for spec in config.specs()}

    def fill(context: click.Context, _: click.Parameter, name: str) -> str:
        fixed = config.regimes.get(name, {})
        context.default_map = {**(context.default_map or {}),
                               **{field: value if isinstance(value, bool) else specs[field].render(value)
                                  for field, value in fixed.items()}}
        return name

    for param in params:
        if param.name == "regime":
            param.is_eager = True
            param.callback = fill


def _legacy_help(flag: str, field: str, given: str, target: str | None) -> str:
    """``--regression false = --task classification``, for the help's epilog."""
    option = "--" + field.replace("_", "-")
    spelled = f"{flag} {given}" if given else (f'{flag} ""' if flag == option else flag)
    return f"{spelled} = " + (f"{option} {target}" if target is not None else "the default")


def headline_line(entry: EntryPoint, best: dict[str, float]) -> str:
    """The family's headline metrics at the validation-chosen evaluation, for the end of a run."""
    shown = [f"{key} {best[key]:.4g}" for key in entry.headline_metrics if key in best]
    return "at the validation-chosen evaluation: " + ", ".join(shown) if shown else ""


def make_command(entry: EntryPoint) -> click.Command:
    def callback(**values: Any) -> None:
        from innerlens import session

        config = entry.config.from_strings(values)
        if getattr(config, "resume", None):
            context = click.get_current_context()
            config = session.resumed(config, {name for name in values
                                              if context.get_parameter_source(name) == ParameterSource.COMMANDLINE})
        headline = ""
        if entry.is_family:
            result = session.run(entry, config)
            run_id, headline = result.run_id, headline_line(entry, result.best_metrics)
        else:  # a driver returns its parent run's id
            run_id = getattr(entry.load(), entry.function)(config)
        click.echo(f"run {run_id} finished")
        if headline:
            click.echo(headline)
        click.echo(session.links(run_id, getattr(entry.load(), "LINKED_ARTIFACTS", ()) if not entry.is_family else ()))

    params = [_option(spec) for spec in entry.config.specs(include_hidden=False)]
    if entry.config.regimes:
        _fill_regime_defaults(params, entry.config)
    legacy = [_legacy_help(flag, field, given, target)
              for flag, (field, values) in entry.config.legacy_flags.items() for given, target in values.items()]
    return ConfigCommand(
        entry.command,
        config=entry.config,
        callback=callback,
        params=params,
        help=entry.summary,
        epilog=("Also accepted, as the seed script spelled them: " + "; ".join(legacy)) if legacy else None,
        context_settings={"max_content_width": 110},
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def cli() -> None:
    """innerlens: MLflow-tracked experiments on how small transformers learn and model themselves."""


@cli.command("mlproject")
@click.option("--write", is_flag=True, help="Write MLproject and entrypoints/<name>.py in the project instead of printing.")
def mlproject_command(write: bool) -> None:
    """Print (or --write) the MLproject file generated from the entry points' configs, and their scripts."""
    from innerlens.commands import entrypoint_script
    from innerlens.mlproject import render_mlproject

    if not write:
        click.echo(render_mlproject(entry_points()), nl=False)
        return
    from pathlib import Path

    root = Path.cwd()
    (root / "MLproject").write_text(render_mlproject(entry_points()))
    for entry in entry_points():
        (root / "entrypoints" / f"{entry.name}.py").write_text(entrypoint_script(entry))
    click.echo(f"wrote MLproject and {len(entry_points())} entry point scripts under {root}")


@cli.command("analyze")
@click.argument("run_id")
def analyze_command(run_id: str) -> None:
    """Recompute a finished grokking run's analyses from its step snapshots and log them into it."""
    from innerlens import session
    from innerlens.drivers import grokking_analysis

    transitions = grokking_analysis.analyze(run_id)
    click.echo(f"run {run_id}: memorized at step {transitions.memorization_step:g}, generalized at {transitions.generalization_step:g}")
    click.echo(session.links(run_id))


@cli.command("sync")
@click.option("--spool-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where runs spooled what the tracking server missed (default: mlruns/spool of the checkout).")
@click.option("--list", "list_only", is_flag=True, help="Only show what waits and why (refused spools included); deliver nothing.")
def sync_command(spool_dir: Path | None, list_only: bool) -> None:
    """Deliver, in order, the calls runs spooled while the tracking server was unreachable."""
    from innerlens.drivers.spool_sync import sync_lines

    lines, failed = sync_lines(spool_dir, list_only)
    for line in lines:
        click.echo(line)
    if failed:
        sys.exit(1)


for _entry in entry_points():
    cli.add_command(make_command(_entry))


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every user error becomes one line on stderr and exit code 2."""
    from innerlens.drivers.signals import terminate_as_interrupt

    args = sys.argv[1:] if argv is None else argv
    terminate_as_interrupt()
    try:
        cli.main(args=args, prog_name="innerlens", standalone_mode=False)
    except ConfigError as error:
        click.echo(f"innerlens: error: {error}", err=True)
        sys.exit(2)
    except RunFailed as error:
        click.echo(f"innerlens: failed: {error}", err=True)
        sys.exit(1)
    except click.UsageError as error:
        click.echo(f"innerlens: error: {' '.join(error.format_message().split())}", err=True)
        sys.exit(2)
    except click.Abort as abort:  # click's name for Ctrl-C, and for SIGTERM (Terminated) here
        from innerlens.drivers.signals import Terminated, was_terminated

        terminated = isinstance(abort.__cause__, Terminated) or was_terminated()
        click.echo(f"innerlens: {'terminated' if terminated else 'interrupted'}: runs in progress were flushed "
                   "and marked KILLED (continue one with --resume RUN_ID)", err=True)
        sys.exit(143 if terminated else 130)
