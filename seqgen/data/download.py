"""Downloads with checksums, offline mode and safe archive extraction.

Every dataset names its files as :class:`Resource` objects: the file name, the canonical
https URLs (tried in order) and the published md5/sha256. :func:`fetch` returns a verified
local path or raises an error that says exactly which file to put where, with its checksum.

* Cache folder: the ``root`` argument (``data_dir`` in the configs), which defaults to
  ``$SEQGEN_DATA_DIR`` or ``./data``.
* Offline mode: ``SEQGEN_OFFLINE=1`` (or ``offline=True``) never touches the network.
* Downloads go to ``<file>.part`` (resumed with an HTTP Range request when a partial file
  exists), are verified, and only then renamed into place: a killed download or a corrupt
  one never leaves a file that looks complete. A download holds ``.locks/<file>.lock`` (see
  :mod:`seqgen.locks`): concurrent runs that need the same file wait for the one fetching it and
  reuse its result, so the resumable ``.part`` always has one writer.
* Archives are extracted member by member, refusing absolute paths, ``..`` and links that
  point outside the target folder.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from seqgen.errors import ChecksumError, DataError, DataNotFoundError, UnsafeArchiveError
from seqgen.locks import locked

CHUNK = 1 << 20


def default_data_dir() -> Path:
    return Path(os.environ.get("SEQGEN_DATA_DIR") or "data")


def is_offline() -> bool:
    return os.environ.get("SEQGEN_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Resource:
    """One file of a dataset, as published."""

    filename: str
    urls: Sequence[str] = field(default_factory=tuple)
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None  # bytes; the only check for files with no published hash

    def checksum_text(self) -> str:
        parts = []
        if self.size and not (self.md5 or self.sha256):
            parts.append(f"{self.size:,} bytes (no published hash)")
        if self.sha256:
            parts.append(f"sha256 {self.sha256}")
        if self.md5:
            parts.append(f"md5 {self.md5}")
        return ", ".join(parts) or "no published checksum"


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: str | os.PathLike, resource: Resource) -> None:
    """Raise :class:`ChecksumError` unless ``path`` matches every checksum ``resource`` has."""
    if resource.size is not None:
        got_size = os.path.getsize(path)
        if got_size != resource.size:
            raise ChecksumError(f"{path}: {got_size:,} bytes, expected {resource.size:,}. The file is truncated or not the "
                                f"published one; delete it and download it again from {list(resource.urls) or 'its source'}.")
    for algo in ("sha256", "md5"):
        expected = getattr(resource, algo)
        if expected:
            got = file_hash(path, algo)
            if got.lower() != expected.lower():
                raise ChecksumError(
                    f"{path}: {algo} is {got}, expected {expected}. The file is corrupt or not the "
                    f"published one; delete it and download it again from {list(resource.urls) or 'its source'}."
                )


def _missing_message(resource: Resource, target: Path, reason: str) -> str:
    urls = "\n".join(f"    {u}" for u in resource.urls) or "    (no public URL: obtain it from the dataset's publisher)"
    return (
        f"{reason}\n"
        f"  Put the file {resource.filename!r} at:\n    {target}\n"
        f"  ({resource.checksum_text()}). It can be downloaded from:\n{urls}\n"
        f"  Set SEQGEN_DATA_DIR or data.data_dir to use another folder."
    )


def fetch(resource: Resource, root: str | os.PathLike | None = None, offline: bool | None = None) -> Path:
    """Return the verified local path of ``resource`` under ``root``, downloading it if needed."""
    root = Path(root) if root is not None else default_data_dir()
    target = root / resource.filename
    if target.is_file():
        verify(target, resource)
        return target
    offline = is_offline() if offline is None else offline
    if offline or not resource.urls:
        return _fetch(resource, target, offline)
    # one download per file at a time: a concurrent run waits here, then finds the verified file
    with locked(target):
        if target.is_file():
            verify(target, resource)
            return target
        return _fetch(resource, target, offline)


def _fetch(resource: Resource, target: Path, offline: bool) -> Path:
    if offline:
        raise DataNotFoundError(_missing_message(resource, target, "Offline mode (SEQGEN_OFFLINE=1) and a data file is missing."))
    if not resource.urls:
        raise DataNotFoundError(_missing_message(resource, target, "A data file is missing and has no download URL."))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create data folder {target.parent}: {e}") from e
    errors = []
    for url in resource.urls:
        if not url.startswith("https://"):
            errors.append(f"{url}: refused, only https URLs are downloaded")
            continue
        try:
            _download(url, target, resource)
            return target
        except ChecksumError:
            raise
        except Exception as e:  # network errors of every kind: try the next mirror
            errors.append(f"{url}: {e}")
    raise DataNotFoundError(
        _missing_message(resource, target, "Could not download a data file:\n  " + "\n  ".join(errors))
    )


def _download(url: str, target: Path, resource: Resource) -> None:
    import urllib.request

    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "seqgen"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    with urllib.request.urlopen(request, timeout=60) as response:
        resumed = start and getattr(response, "status", 200) == 206
        total = response.headers.get("Content-Length")
        total = int(total) + (start if resumed else 0) if total else None
        from rich.progress import Progress

        with open(part, "ab" if resumed else "wb") as out, Progress(transient=True) as progress:
            task = progress.add_task(f"download {resource.filename}", total=total, completed=start if resumed else 0)
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                progress.advance(task, len(block))
    try:
        verify(part, resource)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, target)


def _is_within(base: Path, candidate: Path) -> bool:
    base = base.resolve()
    try:
        candidate.resolve().relative_to(base)
        return True
    except ValueError:
        return False


def _check_member_name(name: str, dest: Path, archive: Path) -> Path:
    if not name or name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    parts = Path(name.replace("\\", "/")).parts
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} escapes the target folder with '..'; refusing to extract")
    out = dest / name
    if not _is_within(dest, out):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside {dest}; refusing to extract")
    return out


def extract_once(archive: str | os.PathLike, dest: str | os.PathLike, ready: Iterable[str | os.PathLike],
                 members: Iterable[str] | None = None) -> Path:
    """Extract ``archive`` into ``dest`` unless every path of ``ready`` exists, holding
    ``dest/.locks/.extract.lock`` for the check and the extraction: of concurrent runs one extracts, the
    others wait and then find the files complete (never half-written)."""
    dest, ready = Path(dest), [Path(p) for p in ready]
    with locked(dest / ".extract"):
        if ready and all(p.exists() for p in ready):
            return dest
        return extract_archive(archive, dest, members)


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike, members: Iterable[str] | None = None) -> Path:
    """Extract a .tar(.gz/.bz2/.xz), .zip or single-file .gz into ``dest`` safely.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    symlinks/hardlinks pointing outside ``dest``, device files are refused
    (:class:`UnsafeArchiveError`), so a hostile archive writes nothing at all.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = set(members) if members is not None else None
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if wanted is None or i.filename in wanted]
            for info in infos:
                _check_member_name(info.filename, dest, archive)
                mode = (info.external_attr >> 16) & 0o170000
                if mode == 0o120000:
                    raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link; refusing to extract")
            for info in infos:
                zf.extract(info, dest)
        return dest
    if ".tar" in name or name.endswith((".tgz", ".tbz2", ".txz")):
        try:
            tf = tarfile.open(archive)
        except tarfile.TarError as e:
            raise DataError(f"{archive}: not a readable tar archive ({e})") from e
        with tf:
            infos = [m for m in tf.getmembers() if wanted is None or m.name in wanted]
            for m in infos:
                out = _check_member_name(m.name, dest, archive)
                if m.issym() or m.islnk():
                    link = Path(m.linkname)
                    resolved = (out.parent / link) if m.issym() else (dest / link)
                    if link.is_absolute() or not _is_within(dest, resolved):
                        raise UnsafeArchiveError(
                            f"{archive}: link {m.name!r} -> {m.linkname!r} points outside {dest}; refusing to extract"
                        )
                elif not (m.isfile() or m.isdir()):
                    raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or fifo; refusing to extract")
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, members=infos, filter="data")
            else:  # pragma: no cover - Python < 3.11.4; members were checked above
                tf.extractall(dest, members=infos)
        return dest
    if name.endswith(".gz"):
        out = dest / archive.name[:-3]
        tmp = out.with_name(out.name + ".part")
        try:
            with gzip.open(archive, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        except (OSError, EOFError) as e:
            tmp.unlink(missing_ok=True)
            raise DataError(f"{archive}: corrupt or truncated gzip file ({e})") from e
        os.replace(tmp, out)
        return dest
    raise DataError(f"{archive}: unknown archive type (expected .zip, .tar.*, .tgz or .gz)")


def read_gzip_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """Read a whole .gz text file with a clear error for truncated/corrupt files (an empty file
    too: gzip would read it as empty text, but it is a download cut off at its first byte)."""
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: empty file, not gzip (corrupt or truncated download)")
    try:
        with gzip.open(path, "rt", encoding=encoding) as f:
            return f.read()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: corrupt or truncated gzip text file ({type(e).__name__}: {e})") from e
