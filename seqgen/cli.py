"""The small scripts' shared parts (generate, translate): ``key=value`` arguments typed by a
dataclass, the error-to-exit-code wrapper, and writing their output files."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from seqgen.errors import ConfigError

T = TypeVar("T")


def parse_kv(argv: list[str], schema: type[T], unescape: tuple[str, ...] = ()) -> T:
    """Parse ``key=value`` items into ``schema`` (a dataclass): unknown keys and wrong types give a
    :class:`ConfigError` that lists what exists; ``null``/``none`` set optional fields to None;
    keys in ``unescape`` have backslash escapes (``\\n``) decoded."""
    known = {f.name: f for f in fields(schema)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for arg in argv:
        key, sep, raw = arg.partition("=")
        key = key.lstrip("-").replace("-", "_")
        if not sep:
            raise ConfigError(f"arguments are key=value, got {arg!r}; keys: {', '.join(known)}")
        if key not in known:
            raise ConfigError(f"unknown argument {key!r}; valid: {', '.join(known)}")
        typ = str(known[key].type)
        try:
            if raw.lower() in ("null", "none") and "None" in typ:
                values[key] = None
            elif typ.startswith("int"):
                values[key] = int(raw)
            elif typ.startswith("float"):
                values[key] = float(raw)
            elif typ.startswith("bool"):
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                values[key] = raw.lower() in ("true", "1")
            else:
                values[key] = raw.encode().decode("unicode_escape") if key in unescape else raw
        except ValueError:
            raise ConfigError(f"{key} must be {typ.split(' ')[0]}, got {raw!r}") from None
    return schema(**values)


def script_main(argv: list[str], doc: str | None, work: Any) -> int:
    """The shared face of the small scripts: ``--help`` prints ``doc``; ``work(argv)`` does the job
    and prints; a :class:`~seqgen.errors.SeqgenError` becomes ``error: ...`` on stderr and exit 2."""
    import sys

    from seqgen.errors import SeqgenError

    if any(a in ("-h", "--help") for a in argv):
        print(doc)
        return 0
    try:
        work(argv)
    except SeqgenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def write_output(path: str | Path, text: str | bytes) -> Path:
    """Write a script's output file atomically (a per-process ``.tmp`` sibling renamed into place, so an
    interrupted write never leaves half a file), creating its folder; text as UTF-8, bytes as they are."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    from seqgen.locks import unique_temp

    tmp = unique_temp(dest)  # two scripts writing one output file never share a temporary
    if isinstance(text, bytes):
        tmp.write_bytes(text)
    else:
        tmp.write_text(text, encoding="utf-8")
    tmp.replace(dest)
    return dest
