"""Property-based tests (hypothesis): tokenizers round-trip arbitrary unicode, readers turn
random bytes into clean errors, batching keeps every token exactly once."""

from __future__ import annotations

import gzip

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqgen.data import CharTokenizer, TokenStream, WordTokenizer, batchify, read_idx
from seqgen.data.download import read_gzip_text
from seqgen.errors import DataError

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.text(min_size=1))
def test_char_tokenizer_round_trips_any_unicode(text):
    tok = CharTokenizer.train(text)
    assert tok.decode(tok.encode(text)) == text
    assert CharTokenizer.from_dict(tok.to_dict()).encode(text) == tok.encode(text)


@FAST
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1), min_size=1))
def test_word_tokenizer_round_trips_its_own_vocabulary(lines):
    words = [w for line in lines for w in line.split()]
    if not words:
        return
    tok = WordTokenizer.train(lines)
    for line in lines:
        assert tok.decode(tok.encode(line)).split() == line.split()


@FAST
@given(st.binary(max_size=300))
def test_idx_reader_random_bytes_give_clean_errors(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("idx") / "f.idx"
    p.write_bytes(data)
    try:
        t = read_idx(p)
    except DataError:
        return
    assert t.numel() >= 0  # the rare valid file parses


@FAST
@given(st.binary(max_size=300))
def test_gzip_reader_random_bytes_give_clean_errors(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("gz") / "f.txt.gz"
    p.write_bytes(gzip.compress(data)[: max(1, len(data) // 2)] if data else b"\x1f\x8b")
    try:
        read_gzip_text(p)
    except DataError:
        pass


@FAST
@given(st.integers(2, 3000), st.integers(1, 16), st.integers(1, 60))
def test_batchify_and_chunks_keep_every_token_once(n, rows, bptt):
    stream = torch.arange(n)
    if n // rows < 2:
        try:
            batchify(stream, rows)
        except DataError:
            return
        raise AssertionError("too-short stream accepted")
    data = batchify(stream, rows)
    xs = torch.cat([x for x, _ in TokenStream(data, bptt)], 1)
    assert torch.equal(xs, data[:, :-1])
    assert torch.equal(torch.sort(data.reshape(-1)).values, torch.arange(data.numel()))
