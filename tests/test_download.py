"""Download helper: checksums, offline messages, atomic writes, safe archive extraction."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import urllib.request
import zipfile

import pytest

from seqgen.data.download import Resource, extract_archive, fetch, read_gzip_text, verify
from seqgen.errors import ChecksumError, DataError, DataNotFoundError, UnsafeArchiveError

PAYLOAD = b"the quick brown fox\n" * 100


class FakeResponse(io.BytesIO):
    status = 200

    def __init__(self, data):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def serve(monkeypatch):
    """Serve ``data`` for any URL; records the requested URLs."""
    seen = []

    def install(data):
        def urlopen(request, timeout=None):
            seen.append(request.full_url)
            return FakeResponse(data)

        monkeypatch.setattr(urllib.request, "urlopen", urlopen)
        return seen

    return install


def res(**kw):
    return Resource("sub/file.txt", ("https://example.org/file.txt",), **kw)


def test_download_verifies_and_writes_atomically(tmp_path, serve):
    seen = serve(PAYLOAD)
    path = fetch(res(sha256=hashlib.sha256(PAYLOAD).hexdigest(), md5=hashlib.md5(PAYLOAD).hexdigest()), tmp_path, offline=False)
    assert path.read_bytes() == PAYLOAD and seen == ["https://example.org/file.txt"]
    assert not list(tmp_path.rglob("*.part"))
    # second call uses the cache: no request
    fetch(res(sha256=hashlib.sha256(PAYLOAD).hexdigest()), tmp_path, offline=False)
    assert len(seen) == 1


def test_checksum_mismatch_raises_and_leaves_no_file(tmp_path, serve):
    serve(PAYLOAD + b"tampered")
    with pytest.raises(ChecksumError, match="md5"):
        fetch(res(md5=hashlib.md5(PAYLOAD).hexdigest()), tmp_path, offline=False)
    left = [p for p in tmp_path.rglob("*") if p.is_file() and ".locks" not in p.parts]  # lock files are empty
    assert not left, "a corrupt download was left behind"


def test_corrupt_cached_file_is_detected(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "file.txt").write_bytes(b"not it")
    with pytest.raises(ChecksumError, match="expected"):
        fetch(res(sha256=hashlib.sha256(PAYLOAD).hexdigest()), tmp_path, offline=True)


def test_offline_message_names_file_place_and_checksum(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("SEQGEN_OFFLINE", "1")
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    with pytest.raises(DataNotFoundError) as e:
        fetch(res(md5=md5), tmp_path)
    msg = str(e.value)
    assert "file.txt" in msg and str(tmp_path / "sub" / "file.txt") in msg and md5 in msg
    assert "https://example.org/file.txt" in msg


def test_only_https_urls(tmp_path):
    with pytest.raises(DataNotFoundError, match="only https"):
        fetch(Resource("x.txt", ("http://example.org/x.txt",), md5="0" * 32), tmp_path, offline=False)


def test_network_failure_gives_offline_instructions(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", boom)
    with pytest.raises(DataNotFoundError, match="no route to host") as e:
        fetch(res(md5="0" * 32), tmp_path, offline=False)
    assert "Put the file" in str(e.value)


def test_verify_passes_for_right_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(PAYLOAD)
    verify(p, Resource("f", md5=hashlib.md5(PAYLOAD).hexdigest(), sha256=hashlib.sha256(PAYLOAD).hexdigest()))


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(PAYLOAD)
                tf.addfile(info, io.BytesIO(PAYLOAD))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = target
                tf.addfile(info)


@pytest.mark.parametrize("members", [
    [("ok.txt", "file", None), ("../evil.txt", "file", None)],
    [("/abs/evil.txt", "file", None)],
    [("a/../../evil.txt", "file", None)],
    [("link", "sym", "../../etc/passwd")],
    [("link", "sym", "/etc/passwd")],
    [("hard", "hard", "../outside")],
])
def test_tar_escape_refused_and_nothing_written(tmp_path, members):
    archive = tmp_path / "bad.tar.gz"
    _tar(archive, members)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, dest)
    assert not any(dest.rglob("*")), "a hostile archive wrote files"
    assert not (tmp_path / "evil.txt").exists()


def test_zip_escape_refused(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", PAYLOAD)
        zf.writestr("../evil.txt", PAYLOAD)
    with pytest.raises(UnsafeArchiveError, match=r"\.\."):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "fine.txt").exists()


def test_safe_archives_extract(tmp_path):
    archive = tmp_path / "good.tar.gz"
    _tar(archive, [("d/a.txt", "file", None), ("d/link", "sym", "a.txt")])
    out = extract_archive(archive, tmp_path / "out")
    assert (out / "d" / "a.txt").read_bytes() == PAYLOAD
    z = tmp_path / "good.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("x/y.txt", PAYLOAD)
    assert (extract_archive(z, tmp_path / "zout") / "x" / "y.txt").read_bytes() == PAYLOAD
    g = tmp_path / "single.txt.gz"
    g.write_bytes(gzip.compress(PAYLOAD))
    assert (extract_archive(g, tmp_path / "gout") / "single.txt").read_bytes() == PAYLOAD


def test_truncated_gzip_is_a_clear_error(tmp_path):
    g = tmp_path / "t.txt.gz"
    g.write_bytes(gzip.compress(PAYLOAD)[:-20])
    with pytest.raises(DataError, match="truncated"):
        read_gzip_text(g)
    with pytest.raises(DataError, match="truncated"):
        extract_archive(g, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*"))


def test_size_only_resource_detects_truncation(tmp_path):
    p = tmp_path / "f.zip"
    p.write_bytes(PAYLOAD[:-1])
    with pytest.raises(ChecksumError, match="bytes, expected"):
        verify(p, Resource("f.zip", size=len(PAYLOAD)))
    p.write_bytes(PAYLOAD)
    verify(p, Resource("f.zip", size=len(PAYLOAD)))
    assert "no published hash" in Resource("f.zip", size=5).checksum_text()
