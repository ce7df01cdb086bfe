"""Finding, checking and loading a script file, and calling the functions it defines."""

from __future__ import annotations

import difflib
import inspect
import os
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

HOOK_ARGUMENTS = ("event", "sink_properties", "source_properties", "binding")
"""What a script function may ask for, by parameter name (any subset, in any order)."""

FUNCTIONS = (
    "on_inbound_command",
    "on_server_response",
    "on_arrival",
    "on_transport_submission",
    "on_pre_categorize",
    "on_categorize",
    "on_post_categorize",
    "on_transport_router",
    "store_driver",
    "max_msg_size",
    "msg_track_log",
    "on_session_start",
    "on_message_start",
    "on_per_recipient",
    "on_before_data",
    "on_session_end",
    "dns_resolver",
    "on_post_early",
    "on_post",
    "on_post_final",
)
"""The function names a script may define: each event's snake_case name, without the source."""


class ScriptError(RuntimeError):
    """A script cannot be used: missing, outside AllowedDir, failing to load, or malformed."""


def _is_path_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and "\0" not in value


def allowed_folder(allowed_dir: str | None) -> Path:
    """The folder a script must lie in, symbolic links resolved: AllowedDir, else the cwd."""
    return Path(allowed_dir if allowed_dir else os.getcwd()).resolve()


def check_location(script_name: str, allowed_dir: str | None) -> Path:
    """The script's real path, if it lies inside the allowed folder; else :class:`ValueError`.

    Symbolic links are resolved on both sides first, so a link inside the folder that points
    outside it is refused, and so is ``..``. A relative name is relative to the working folder.
    """
    folder = allowed_folder(allowed_dir)
    script = Path(script_name).resolve()
    if folder in script.parents:
        return script
    if allowed_dir:
        where = f"AllowedDir {folder}"
    else:
        where = (
            f"the current working folder {folder} (the default when AllowedDir is not set; "
            "set AllowedDir to allow another folder)"
        )
    link = "" if script == Path(os.path.abspath(script_name)) else " (symbolic links resolved)"
    raise ValueError(f"ScriptName: {script}{link} lies outside {where}")


def check_properties(properties: Mapping[str, Any]) -> None:
    """Refuse, when the binding is written, a script path that is empty or not allowed."""
    folded = {name.casefold(): name for name in properties}
    for name in ("ScriptName", "AllowedDir"):
        written = folded.get(name.casefold())
        if written is None:
            continue
        value = properties[written]
        if isinstance(value, dict):
            raise ValueError(
                f"{name}: must be a path written out, not an environment reference, "
                "so that where the script lies can be checked when the binding is written"
            )
        if not _is_path_text(value):
            raise ValueError(f"{name}: must name a {'file' if name == 'ScriptName' else 'folder'}")
    for name in properties:
        if name.casefold() in ("scriptname", "alloweddir"):
            continue
        close = difflib.get_close_matches(
            name.casefold(), ["scriptname", "alloweddir"], n=1, cutoff=0.75
        )
        if close:
            meant = "ScriptName" if close[0] == "scriptname" else "AllowedDir"
            raise ValueError(
                f"{name}: unknown property (did you mean {meant!r}?); "
                "other properties are passed to the script as they are"
            )
    script = properties.get(folded.get("scriptname", "ScriptName"))
    allowed = properties.get(folded.get("alloweddir", "AllowedDir"))
    if isinstance(script, str):
        check_location(script, allowed if isinstance(allowed, str) else None)


@dataclass(frozen=True, slots=True)
class ScriptFunction:
    """One event function of a script and the hook arguments it takes."""

    name: str
    function: Callable[..., Any]
    arguments: tuple[str, ...]

    def __call__(
        self, event: Any, sink_properties: Any, source_properties: Any, binding: Any
    ) -> Any:
        given = {
            "event": event,
            "sink_properties": sink_properties,
            "source_properties": source_properties,
            "binding": binding,
        }
        return self.function(**{name: given[name] for name in self.arguments})


@dataclass(frozen=True, slots=True)
class Script:
    """A loaded script: where it is, the file's identity when read, and its event functions."""

    path: Path
    stamp: tuple[int, ...]
    functions: Mapping[str, ScriptFunction]


def stamp_of(path: str) -> tuple[int, ...]:
    """What says the file changed: device, inode, size, modification and change times."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ScriptError(f"script {path}: cannot read it: {exc.strerror or exc}") from exc
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def load(script_name: str, allowed_dir: str | None, stamp: tuple[int, ...]) -> Script:
    """Check where the script lies, run it as a fresh module, and collect its functions.

    ``stamp`` is taken before the file is read, so a change made while it is read is seen at
    the next call. An explicit AllowedDir is checked again here, links resolved, because a
    link may have been pointed elsewhere since the binding was written.
    """
    if allowed_dir:
        try:
            path = check_location(script_name, allowed_dir)
        except ValueError as exc:
            raise ScriptError(f"script refused: {exc}") from None
    else:
        path = Path(script_name).resolve()
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise ScriptError(f"script {path}: cannot read it: {exc.strerror or exc}") from exc
    module = types.ModuleType(f"seo_script_{path.stem}")
    module.__file__ = str(path)
    try:
        code = compile(source, str(path), "exec")
        exec(code, module.__dict__)
    except Exception as exc:
        raise ScriptError(f"script {path} failed to load: {type(exc).__name__}: {exc}") from exc
    functions = {}
    for name in FUNCTIONS:
        found = module.__dict__.get(name)
        if found is not None:
            functions[name] = _function(path, name, found)
    _warn_misspelt(path, module.__dict__)
    structlog.get_logger("seo.sink.script").info(
        "script_loaded", script=str(path), functions=sorted(functions)
    )
    return Script(path, stamp, functions)


def _function(path: Path, name: str, found: object) -> ScriptFunction:
    if not callable(found):
        raise ScriptError(f"script {path}: {name} is not a function")
    if inspect.iscoroutinefunction(found):
        raise ScriptError(
            f"script {path}: {name} is async def; script functions must be plain functions"
        )
    try:
        parameters = inspect.signature(found).parameters.values()
    except (TypeError, ValueError) as exc:
        raise ScriptError(f"script {path}: {name}: cannot read its parameters: {exc}") from exc
    arguments: list[str] = []
    for parameter in parameters:
        if parameter.kind is parameter.VAR_KEYWORD:
            arguments.extend(a for a in HOOK_ARGUMENTS if a not in arguments)
        elif parameter.name in HOOK_ARGUMENTS:
            arguments.append(parameter.name)
        elif (
            parameter.kind is not parameter.VAR_POSITIONAL and parameter.default is parameter.empty
        ):
            raise ScriptError(
                f"script {path}: {name}({parameter.name}): unknown argument "
                f"{parameter.name!r}; a script function takes any of {', '.join(HOOK_ARGUMENTS)}"
            )
    return ScriptFunction(name, found, tuple(arguments))


def _warn_misspelt(path: Path, namespace: Mapping[str, object]) -> None:
    """Log functions named like events that are not: ``on_arival`` would never be called."""
    for name, value in namespace.items():
        if name in FUNCTIONS or not inspect.isfunction(value) or name.startswith("_"):
            continue
        close = difflib.get_close_matches(name, FUNCTIONS, n=1, cutoff=0.8)
        if close:
            structlog.get_logger("seo.sink.script").warning(
                "script_function_unknown", script=str(path), function=name, did_you_mean=close[0]
            )
