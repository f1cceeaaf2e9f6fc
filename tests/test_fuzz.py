"""Property-based tests (hypothesis): tokenizers round-trip arbitrary unicode, readers turn
random bytes into clean errors, batching keeps every token exactly once."""

from __future__ import annotations

import gzip
import io
import math
import struct

import pytest
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
    assert CharTokenizer.from_state(tok.state()).encode(text) == tok.encode(text)


@FAST
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1), min_size=1))
def test_word_tokenizer_round_trips_its_own_vocabulary(lines):
    words = [w for line in lines for w in line.split()]
    if not words:
        return
    tok = WordTokenizer.train(lines)
    for line in lines:
        assert tok.decode(tok.encode(line)).split() == line.split()


def _idx_file(dims: list[int], cut: int, flip: int | None) -> bytes:
    """A valid uint8 IDX file of ``dims`` (values 0, 1, 2, ...), then cut to ``cut`` bytes of 400ths
    and one byte flipped: a mangled file that is usually, not always, invalid."""
    body = bytes(i % 256 for i in range(math.prod(dims)))
    good = struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + body
    data = bytearray(good[: max(1, -(-len(good) * cut // 400))])
    if flip is not None:
        data[flip % len(data)] ^= 0xFF
    return bytes(data)


@FAST
@given(st.one_of(st.binary(max_size=300), st.builds(
    _idx_file, st.lists(st.integers(0, 6), min_size=1, max_size=3), st.integers(1, 400),
    st.one_of(st.none(), st.integers(0, 399)))))
def test_idx_reader_random_or_mangled_bytes_give_clean_errors(tmp_path_factory, data):
    """A DataError, or a tensor that is exactly what the header says: its dims, its bytes."""
    p = tmp_path_factory.mktemp("idx") / "f.idx"
    p.write_bytes(data)
    try:
        t = read_idx(p)
    except DataError:
        return
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    assert data[:3] == b"\x00\x00\x08" and tuple(t.shape) == dims  # only uint8 files are made valid above
    assert t.numpy().tobytes() == data[4 + 4 * ndim:]


@FAST
@given(st.binary(max_size=300), st.integers(0, 100))
def test_gzip_reader_whole_or_truncated_files(tmp_path_factory, data, percent):
    """The whole file decodes to its text (or a DataError when the bytes are not UTF-8); any
    truncation is a DataError, never partial text or another exception."""
    whole = gzip.compress(data)
    cut = len(whole) * percent // 100
    p = tmp_path_factory.mktemp("gz") / "f.txt.gz"
    p.write_bytes(whole[:cut])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if cut == len(whole) and text is not None:
        assert read_gzip_text(p) == io.StringIO(text, newline=None).read()  # universal newlines, as open()
    else:
        with pytest.raises(DataError, match="corrupt or truncated"):
            read_gzip_text(p)


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


@settings(max_examples=60, deadline=None)
@given(st.integers(5, 12), st.integers(1, 6), st.integers(1, 4), st.integers(0, 10_000),
       st.sampled_from(["bahdanau", "luong_general", "none"]), st.floats(0.0, 1.5))
def test_beam_search_outputs_are_well_formed(vocab, beam, batch, seed, attention, alpha):
    from seqgen.nets import Seq2Seq

    torch.manual_seed(seed)
    net = Seq2Seq(11, vocab, 6, 8, attention=attention, dropout=0.0, max_len=9).eval()
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 11, (batch, 5), generator=g)
    src[0, 3:] = 0  # padding
    tok, score, attn = net.beam_search(src, beam, len_penalty=alpha, return_attention=True)
    assert tok.size(0) == batch and 1 <= tok.size(1) <= 9 and torch.isfinite(score).all()
    assert attn is None or attn.shape == (batch, tok.size(1), 5)
    for row in tok.tolist():
        ends = [i for i, t in enumerate(row) if t == 3]
        body = row[: ends[0]] if ends else row
        assert 0 not in body and 2 not in body  # no padding or <bos> inside a hypothesis
        if ends:
            assert all(t == 0 for t in row[ends[0] + 1:])  # padding after <eos>
    # the returned score is the hypothesis' own normalised log-probability, rescored by teacher forcing
    from seqgen.nets.seq2seq import length_penalty

    lengths = (tok != 0).sum(1).clamp_min(1)
    rescored = net.score(src, torch.cat([torch.full((batch, 1), 2), tok], 1)) / length_penalty(lengths, alpha)
    assert torch.allclose(rescored, score, atol=1e-4), (rescored, score)


@FAST
@given(st.binary(max_size=400))
def test_pairs_reader_random_bytes_give_clean_errors(tmp_path_factory, data):
    from seqgen.data import read_pairs_tsv

    p = tmp_path_factory.mktemp("tsv") / "pairs.txt"
    p.write_bytes(data)
    try:
        src, tgt = read_pairs_tsv(p)
    except DataError as e:
        assert str(p) in str(e)  # names the file
        return
    lines = [ln for ln in io.StringIO(data.decode("utf-8-sig"), newline=None) if ln.strip()]
    assert len(src) == len(tgt) == len(lines) > 0  # one pair per non-blank line
    assert all(s == s.strip() and t == t.strip() and s and t for s, t in zip(src, tgt))


@FAST
@given(st.lists(st.integers(1, 50), min_size=1, max_size=300), st.integers(1, 32), st.integers(0, 5),
       st.one_of(st.none(), st.integers(50, 400)))
def test_bucketing_keeps_every_example_once(lengths, batch_size, epoch, max_tokens):
    from seqgen.data import BucketBatchSampler

    sampler = BucketBatchSampler(lengths, batch_size, seed=epoch, max_tokens=max_tokens)
    sampler.set_epoch(epoch)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(0 < len(b) <= batch_size for b in batches) and len(batches) == len(sampler)
    if max_tokens is not None:
        assert all(max(lengths[i] for i in b) * len(b) <= max_tokens for b in batches)


@FAST
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1), min_size=1))
def test_char_vocabulary_round_trips_any_unicode(lines):
    from seqgen.data.tokenizers import SEQ_SPECIALS

    tok = CharTokenizer.train(lines, specials=SEQ_SPECIALS, by_frequency=True)
    for line in lines:
        assert tok.decode(tok.encode(line)) == line
        assert tok.decode(tok.encode(line, bos=True, eos=True)) == line
    assert CharTokenizer.from_state(tok.state()).encode(lines[0]) == tok.encode(lines[0])


@FAST
@given(st.one_of(st.binary(max_size=400), st.builds(
    lambda cut, flip: (cut, flip), st.integers(1, 400), st.integers(0, 399))))
def test_cifar_reader_random_or_mangled_pickles_give_clean_errors(tmp_path_factory, case):
    """Random bytes, or a real CIFAR-format pickle cut short or with one byte flipped: a clean
    DataError (or, rarely, a valid batch), never another exception and never code execution."""
    import pickle

    import numpy as np

    from seqgen.data.images import read_cifar_batch

    if isinstance(case, bytes):
        data = case
    else:
        cut, flip = case
        good = pickle.dumps({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [1, 2]}, protocol=2)
        data = bytearray(good[: max(1, len(good) * cut // 400)])
        data[flip % len(data)] ^= 0xFF
        data = bytes(data)
    p = tmp_path_factory.mktemp("cifar") / "data_batch_1"
    p.write_bytes(data)
    try:
        x, y = read_cifar_batch(p, b"labels")
    except DataError:
        return
    assert x.shape[1:] == (3, 32, 32) and len(x) == len(y)


@FAST
@given(st.lists(st.integers(1, 40), min_size=1, max_size=200), st.integers(1, 16), st.integers(1, 4), st.integers(0, 3))
def test_bucketed_batches_shard_across_ranks(lengths, batch_size, world, epoch):
    """DDP sharding of length-bucketed batches. Training: every rank gets the same number of batches,
    together they are the single-process batches of that epoch (the short ranks padded with the
    first ones again), disjoint where the count divides. Evaluation: every example exactly once."""
    from seqgen.data import BucketBatchSampler
    from seqgen.data.text import BucketedBatches

    def shards(pad_ranks):
        out = []
        for rank in range(world):
            sampler = BucketBatchSampler(lengths, batch_size, seed=7, shuffle=pad_ranks)
            ds = BucketedBatches(sampler, lambda b: b, lambda r=rank: (r, world), lambda: epoch, pad_ranks)
            out.append(list(ds))
            assert len(ds) == len(out[-1])
        return out

    single = BucketBatchSampler(lengths, batch_size, seed=7, shuffle=True)
    single.set_epoch(epoch)
    reference = list(single)
    train = shards(True)
    assert len({len(s) for s in train}) == 1  # no rank waits for another at the end of the epoch
    dealt = [b for i in range(len(train[0])) for s in train for b in s[i:i + 1]]  # round-robin order
    assert dealt[:len(reference)] == reference
    extra = dealt[len(reference):]
    assert len(extra) < world and extra == [reference[i % len(reference)] for i in range(len(extra))]
    evaluation = shards(False)
    seen = sorted(i for s in evaluation for b in s for i in b)
    assert seen == list(range(len(lengths)))
    assert all(len(b) <= batch_size for s in evaluation for b in s)
