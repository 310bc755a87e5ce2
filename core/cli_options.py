"""The CLI's options, generated from the pydantic config models.

A setting's default and help are written once, on its config field (as TRL's dataclass fields
are); every field of a command's configs becomes an option of that command, so nothing the
pipeline TOML can set is out of the command line's reach. A command declares which configs it
takes and receives them built and validated:

    @app.command()
    @config_options(config=IRLConfig)
    def extract(run: Annotated[str, typer.Argument()], config: IRLConfig) -> None: ...

Only the options given on the command line are passed to the model (``model_fields_set`` says
which), so a default lives in the model alone and a command can tell "not given" from "given".
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel, ValidationError

from core.errors import IrlLensError


@dataclass(frozen=True)
class CliOption:
    """One generated option: the field it sets (``path`` through nested configs) and how the
    command-line text becomes the field's value."""

    path: tuple[str, ...]
    cli_type: Any
    default: Any
    help: str
    required: bool = False
    parse: Callable[[Any], Any] | None = None
    flag: str | None = None

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


def csv_values(raw: str) -> list:
    """'0,1' or '1,true,toxic' → [0, 1] or [1, True, 'toxic']: labels as a table stores them."""
    values: list = []
    for item in (v.strip() for v in raw.split(",")):
        if item:
            values.append(
                int(item)
                if item.lstrip("-").isdigit()
                else {"true": True, "false": False}.get(item.lower(), item)
            )
    return values


def csv_strings(raw: str) -> list[str]:
    return [v.strip() for v in raw.split(",") if v.strip()]


def _parts(annotation) -> tuple[Any, bool]:
    """(the annotation without None, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        inner = args[0] if len(args) == 1 else annotation  # several types: no command-line form
        return inner, optional
    return annotation, False


def _options(model: type[BaseModel], path: tuple[str, ...], parsers: dict, flags: dict) -> list[CliOption]:
    """The options of every field of ``model``; nested config models are flattened."""
    out = []
    for name, field in model.model_fields.items():
        inner, optional = _parts(field.annotation)
        default = field.get_default(call_default_factory=True)
        required = field.is_required()
        help_text = field.description or ""
        if name in parsers:
            cli_type, parse = parsers[name]
            out.append(CliOption(path + (name,), cli_type, _shown(default), help_text, required, parse))
            continue
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            out.extend(_options(inner, path + (name,), parsers, flags))
            continue
        parse = None
        if typing.get_origin(inner) is Literal:
            choices = typing.get_args(inner)
            help_text = _joined(help_text, f"one of: {', '.join(map(str, choices))}")
            cli_type = str
        elif typing.get_origin(inner) is list:
            (item,) = typing.get_args(inner) or (str,)
            parse = csv_strings if item is str else csv_values
            help_text = _joined(help_text, "comma-separated")
            cli_type = str
        elif inner in (bool, int, float, str):
            cli_type = inner
        else:
            raise TypeError(f"{model.__name__}.{name}: no command-line form for {field.annotation}")
        if optional and cli_type is not bool:
            cli_type = cli_type | None
        out.append(CliOption(path + (name,), cli_type, _shown(default), help_text, required, parse, flags.get(name)))
    return out


def _joined(help_text: str, note: str) -> str:
    return f"{help_text.rstrip('.')}; {note}" if help_text else note


def _shown(default):
    """A default as the command line writes it (lists comma-separated)."""
    if isinstance(default, list):
        return ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in default)
    return default


def command_options(models: dict[str, type[BaseModel]], parsers=None, flags=None) -> dict[str, list[CliOption]]:
    """Per config argument, its generated options; an option name used twice is an error."""
    options = {arg: _options(model, (), parsers or {}, flags or {}) for arg, model in models.items()}
    seen: dict[str, str] = {}
    for arg, items in options.items():
        for item in items:
            if item.name in seen:
                raise TypeError(f"option {item.option} comes from both {seen[item.name]} and {arg}")
            seen[item.name] = arg
    return options


def config_options(
    *,
    parsers: dict[str, tuple[Any, Callable[[Any], Any]]] | None = None,
    flags: dict[str, str] | None = None,
    **models: type[BaseModel],
):
    """Decorate a command whose parameters named in ``models`` receive those configs, built from
    options generated from their fields. ``parsers`` maps a field to (command-line type, parse)
    where text is not the field's own type; ``flags`` gives a bool field its two switch names."""

    def decorate(func):
        options = command_options(models, parsers, flags)
        hints = typing.get_type_hints(func, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(func).parameters.values()
            if p.name not in models
        ]
        taken = {p.name for p in own}
        generated = []
        for arg, items in options.items():
            panel = f"{models[arg].__name__} settings"
            for item in items:
                if item.name in taken:
                    raise TypeError(f"{func.__name__}: option {item.option} is also a parameter")
                switch = f"{item.option}/--no-{item.option[2:]}" if item.cli_type is bool else item.option
                declared = [item.flag or switch]
                info = typer.Option(*declared, help=item.help, rich_help_panel=panel)
                default = inspect.Parameter.empty if item.required else item.default
                generated.append(inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                                   annotation=Annotated[item.cli_type, info]))  # fmt: skip
        context = inspect.Parameter("_cli_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

        @functools.wraps(func)
        def command(*args, _cli_context: typer.Context, **values):
            given = {
                name for name in values
                if (source := _cli_context.get_parameter_source(name)) is not None and source.name != "DEFAULT"
            }  # fmt: skip
            for arg, items in options.items():
                values[arg] = build(models[arg], items, {k: values.pop(k) for k in [i.name for i in items]}, given)
            return func(*args, **values)

        params = own + generated + [context]
        command.__signature__ = inspect.Signature(params, return_annotation=None)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def build(model: type[BaseModel], items: list[CliOption], values: dict, given: set[str]) -> BaseModel:
    """The config from the options given on the command line (the rest: the model's defaults)."""
    data: dict = {}
    for item in items:
        if item.name not in given:
            continue
        value = values[item.name]
        if item.parse is not None:
            value = item.parse(value)
        target = data
        for key in item.path[:-1]:
            target = target.setdefault(key, {})
        target[item.name] = value
    return validated(model, data, {item.name for item in items})


def validated(model: type[BaseModel], data: dict, options: set[str] = frozenset()) -> BaseModel:
    """A config from command-line values; a rejected value becomes a one-line error naming the option."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        named = [p for p in first["loc"] if isinstance(p, str) and (p in options or p in model.model_fields)]
        if not named:
            raise IrlLensError(f"invalid settings: {first['msg'].removeprefix('Value error, ')}") from err
        message = first["msg"].removeprefix("Value error, ")
        raise IrlLensError(f"invalid --{named[-1].replace('_', '-')}: {message}") from err
