"""Translation: attention, the encoder-decoder's two decoding paths, greedy vs beam search, data
readers on format-exact fixtures, sacreBLEU agreement, learning the dates task, translate.py."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import math

import fixtures
import pytest
import torch

from conftest import LEARN_SEED, ROOT, make_cfg, run_script, shared_data_dir
from seqgen.data import TranslationDataModule, date_pairs, read_pairs_tsv
from seqgen.data.tokenizers import CharTokenizer
from seqgen.data.translation import BOS_ID, EOS_ID, PAD_ID, human_date
from seqgen.errors import CheckpointError, ConfigError, DataError
from seqgen.nets import BahdanauAttention, LuongAttention, Seq2Seq
from seqgen.nets.seq2seq import length_penalty
from seqgen.train import run

FAST = ["callbacks.progress_bar=null", "trainer.num_sanity_val_steps=0", "trainer.enable_model_summary=false", "logger=none"]
VARIANTS = [(att, kind) for att in ("bahdanau", "luong_general", "luong_dot", "none") for kind in ("gru", "lstm")]


def make_net(att: str = "bahdanau", kind: str = "gru", seed: int = 0, vocab: int = 23, **kw) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(29, vocab, 12, 16, num_layers=2, kind=kind, attention=att, bidirectional=att != "luong_dot",
                   dropout=0.0, max_len=15, **kw).eval()


def random_batch(seed: int = 0, B: int = 6, S: int = 8, T: int = 7, vocab: int = 23):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 29, (B, S), generator=g)
    for i in range(B):  # ragged lengths, the first sentence the longest
        src[i, S - (i % 4):] = PAD_ID
    tgt = torch.randint(4, vocab, (B, T), generator=g)
    tgt[:, 0] = BOS_ID
    return src, tgt


def with_bos(tokens: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.full((tokens.size(0), 1), BOS_ID), tokens], 1)


# -- attention --------------------------------------------------------------------------------
@pytest.mark.parametrize("attn,qsize", [(BahdanauAttention(6, 10, 8), 6), (LuongAttention(6, 10, "general"), 6),
                                        (LuongAttention(10, 10, "dot"), 10)])
def test_attention_weights_are_a_distribution_over_real_positions(attn, qsize):
    torch.manual_seed(0)
    keys = torch.randn(3, 5, 10)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    q = torch.randn(3, 4, qsize)
    ctx, w = attn(q, keys, mask)
    assert ctx.shape == (3, 4, 10) and w.shape == (3, 4, 5)
    assert torch.allclose(w.sum(-1), torch.ones(3, 4))
    assert (w[~mask.unsqueeze(1).expand_as(w)] == 0).all()
    ctx1, w1 = attn(q[:, 0], keys, mask)  # one query per sentence: same numbers
    assert torch.allclose(w1, w[:, 0], atol=1e-6) and torch.allclose(ctx1, ctx[:, 0], atol=1e-6)


def test_bad_attention_settings_are_refused():
    with pytest.raises(ConfigError, match="luong_general"):
        LuongAttention(16, 32, "dot")
    with pytest.raises(ConfigError, match="available"):
        Seq2Seq(10, 10, attention="multihead")


# -- the net: two decoding paths, padding, greedy vs beam ------------------------------------------
@pytest.mark.parametrize("att,kind", VARIANTS)
def test_parallel_teacher_forcing_equals_the_step_loop(att, kind):
    net = make_net(att, kind)
    src, tgt = random_batch()
    fast, slow = net(src, tgt), net(src, tgt, parallel=False)
    assert fast.shape == (6, 7, 23)
    assert torch.allclose(fast, slow, atol=1e-5)


@pytest.mark.parametrize("att", ["bahdanau", "luong_general", "none"])
def test_padding_never_changes_translations(att):
    net = make_net(att)
    src, tgt = random_batch()
    logits = net(src, tgt)
    for i in range(1, 4):  # each sentence alone (no padding at all) == inside the padded batch
        n = int((src[i] != PAD_ID).sum())
        alone = net(src[i:i + 1, :n], tgt[i:i + 1])
        assert torch.allclose(alone[0], logits[i], atol=1e-5)
    wider = torch.nn.functional.pad(src, (0, 5), value=PAD_ID)  # more padding: same outputs, same decoding
    assert torch.allclose(net(wider, tgt), logits, atol=1e-5)
    g1, g2 = net.greedy(src, max_len=12)[0], net.greedy(wider, max_len=12)[0]
    assert torch.equal(g1, g2)
    _, _, attn = net.greedy(src, return_attention=True)
    if attn is not None:
        assert (attn[3, :, (src[3] == PAD_ID).nonzero().view(-1)] == 0).all()


@pytest.mark.parametrize("att,kind", VARIANTS)
def test_beam_of_one_is_greedy(att, kind):
    net = make_net(att, kind, seed=1)
    src, _ = random_batch(1)
    g_tok, g_score, _ = net.greedy(src)
    b_tok, b_score, _ = net.beam_search(src, beam_size=1, len_penalty=0.0, include_greedy=False)
    assert torch.equal(g_tok, b_tok)
    assert torch.allclose(g_score, b_score, atol=1e-5)
    assert torch.allclose(net.score(src, with_bos(g_tok)), g_score, atol=1e-4)  # the score is the model's log-prob


def _exhaustive_best(net, src, max_len, alpha):
    """The optimum of ``log p / lp(len)`` over every output the decoder can produce within
    ``max_len`` tokens (each ending in <eos>, or cut at the limit), scored by teacher forcing."""
    emit = [t for t in range(net.tgt_vocab_size) if t not in (PAD_ID, BOS_ID)]
    hyps = []
    for n in range(1, max_len + 1):
        for seq in itertools.product(emit, repeat=n):
            if EOS_ID in seq[:-1] or (n < max_len and seq[-1] != EOS_ID):
                continue  # <eos> only last; shorter than the limit only when finished
            hyps.append(list(seq) + [PAD_ID] * (max_len - n))
    cand = torch.tensor(hyps)
    best = []
    for i in range(src.size(0)):
        logp = net.score(src[i:i + 1].expand(len(hyps), -1), with_bos(cand))
        lengths = (cand != PAD_ID).sum(1)
        best.append(float((logp / length_penalty(lengths, alpha)).max()))
    return torch.tensor(best), len(hyps)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("att,kind", [("bahdanau", "gru"), ("luong_general", "lstm"), ("none", "gru")])
def test_beam_as_wide_as_every_hypothesis_finds_the_exhaustive_optimum(att, kind, alpha):
    """Vocabulary of 6 (<eos> and 3 other emittable tokens), outputs up to 4 tokens: 1 + 3 + 9 finished
    early plus 27 x 4 at the limit = 121 possible outputs, so a beam of 128 prunes nothing and must
    return the exact optimum of the GNMT-normalised score; a beam of 2 is never above it."""
    net = make_net(att, kind, seed=5, vocab=6)
    src, _ = random_batch(5, B=4, vocab=6)
    best, n = _exhaustive_best(net, src, max_len=4, alpha=alpha)
    assert n == 1 + 3 + 9 + 27 * 4
    tok, score, _ = net.beam_search(src, beam_size=128, max_len=4, len_penalty=alpha, include_greedy=False)
    torch.testing.assert_close(score, best, atol=1e-4, rtol=0)
    lengths = (tok != PAD_ID).sum(1)  # the returned tokens are the optimum, not only its score
    torch.testing.assert_close(net.score(src, with_bos(tok)) / length_penalty(lengths, alpha), best, atol=1e-4, rtol=0)
    narrow = net.beam_search(src, beam_size=2, max_len=4, len_penalty=alpha, include_greedy=False)[1]
    assert (narrow <= best + 1e-4).all()


def test_length_penalty_is_the_gnmt_formula():
    lengths = torch.tensor([1, 2, 7, 30])
    for alpha in (0.0, 0.6, 1.0, 2.0):
        expected = torch.tensor([((5 + n) / 6) ** alpha for n in (1, 2, 7, 30)])
        torch.testing.assert_close(length_penalty(lengths, alpha), expected)
    assert length_penalty(torch.tensor([1]), 0.6).item() == pytest.approx((6 / 6) ** 0.6)  # 1 at length 1


def test_plain_beam_search_is_at_least_as_good_as_greedy_on_most_nets():
    """Beam search without the greedy candidate: rescored by teacher forcing, its winner's raw
    log-probability is >= greedy's in the great majority of (net, sentence, beam) cases. It can
    prune the greedy path; how often is counted and bounded, not assumed to be zero."""
    cases = worse = 0
    for seed in range(12):
        net = make_net(("bahdanau", "luong_general", "none")[seed % 3], ("gru", "lstm")[seed % 2], seed=seed, vocab=9)
        src, _ = random_batch(seed, B=8)
        g_score = net.greedy(src)[1]
        for k in (2, 3, 5):
            tok, score, _ = net.beam_search(src, beam_size=k, len_penalty=0.0, include_greedy=False)
            true = net.score(src, with_bos(tok))  # rescored independently by teacher forcing
            torch.testing.assert_close(true, score, atol=1e-4, rtol=0)
            cases += len(true)
            worse += int((true < g_score - 1e-4).sum())
            ends = [(row == EOS_ID).nonzero() for row in tok]
            assert all(len(e) <= 1 for e in ends)  # one eos at most, then padding
            with_greedy = net.beam_search(src, beam_size=k, len_penalty=0.0)[1]
            assert (with_greedy >= torch.maximum(score, g_score) - 1e-4).all()  # the repair picks the better one
    assert cases == 12 * 8 * 3 and worse <= 0.05 * cases, f"plain beam below greedy in {worse} of {cases} cases"


def test_beam_search_length_limits():
    """The output limit is ``min(max_len, max_len_a * S + max_len_b)`` tokens, for greedy and beam."""
    src, _ = random_batch(3, S=8)
    for a, b, max_len, expected in ((1.5, 10, 5, 5), (0.5, 1, 15, 5), (0.0, 2, 15, 2), (1.0, 0, 15, 8)):
        net = make_net(seed=3, max_len_a=a, max_len_b=b)
        assert net.decode_limit(src, max_len) == expected
        net.max_len = max_len
        # a net that never says <eos>: every hypothesis runs to the limit
        with torch.no_grad():
            net.generator.bias[EOS_ID] = -1e4
        tok, score, attn = net.beam_search(src, beam_size=4, len_penalty=1.0, return_attention=True)
        assert tok.size(1) == expected and attn.shape == (6, expected, src.size(1))
        assert (tok != PAD_ID).all() and torch.isfinite(score).all()
        assert net.greedy(src)[0].size(1) == expected
    with pytest.raises(ConfigError):
        net.beam_search(src, beam_size=0)


# -- data ------------------------------------------------------------------------------------------
ANKI = ("Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #1158250 (Wittydev)\r\n"
        "Hi.\tSalut !\tCC-BY 2.0 (France) Attribution: tatoeba.org #538123 (CM) & #509819 (Aiji)\r\n"
        "\r\n"
        "I'm 19.\tJ'ai 19 ans.\tCC-BY 2.0 (France) Attribution: tatoeba.org #7248820 (CK)\r\n")


def test_tsv_pairs_reader_parses_anki_files(tmp_path):
    p = tmp_path / "eng-fra.txt"
    p.write_bytes(b"\xef\xbb\xbf" + ANKI.encode())
    src, tgt = read_pairs_tsv(p)
    assert src == ["Go.", "Hi.", "I'm 19."] and tgt == ["Va !", "Salut !", "J'ai 19 ans."]
    assert read_pairs_tsv(p, reverse=True) == (tgt, src)
    bad = tmp_path / "bad.txt"
    bad.write_text("Go.\tVa !\nno tab on this line\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.txt:2"):
        read_pairs_tsv(bad)
    with pytest.raises(DataError, match="does not exist"):
        read_pairs_tsv(tmp_path / "missing.txt")


def test_tsv_data_module_splits_and_batches(tmp_path):
    p = tmp_path / "pairs.tsv"
    p.write_text("".join(f"source {i} words\tcible {i} mots\tattr\n" for i in range(200)), encoding="utf-8")
    dm = TranslationDataModule("tsv", pairs_file=str(p), data_dir=str(tmp_path), batch_size=16,
                               tokenizer={"kind": "word"}, val_fraction=0.1, test_fraction=0.1)
    dm.setup()
    sizes = {k: len(v[0]) for k, v in dm.texts.items()}
    assert sizes == {"train": 160, "val": 20, "test": 20}
    assert not set(dm.texts["train"][0]) & set(dm.texts["test"][0])
    batch = next(iter(dm.train_dataloader()))  # training batches: ids and the source lengths only
    assert (batch["tgt"][:, 0] == BOS_ID).all() and set(batch) == {"src", "tgt", "src_lengths"}
    assert batch["src_lengths"] == (batch["src"] != 0).sum(1).tolist()
    targets = set(dm.texts["train"][1])
    assert all(dm.decode_target(row[1:]) in targets for row in batch["tgt"].tolist())  # bos ... eos round trip
    assert all(EOS_ID in row for row in batch["src"].tolist())
    batch = next(iter(dm.val_dataloader()))  # evaluation batches carry the texts for BLEU and the sample files
    assert len(batch["src_text"]) == batch["src"].size(0) == len(batch["index"])


def test_dates_are_correct_distinct_and_reproducible():
    a, b = date_pairs(500, seed=3), date_pairs(500, seed=3)
    assert a == b and len(set(a[0])) == 500
    for human, iso in zip(*a):
        d = dt.date.fromisoformat(iso)
        assert any(human == human_date(d, s) for s in range(12)), human  # weekday names included: consistent
    dm = TranslationDataModule("dates", num_train=300, num_eval=50, tokenizer={"kind": "char"})
    dm.setup()
    assert not set(dm.texts["train"][0]) & (set(dm.texts["test"][0]) | set(dm.texts["val"][0]))
    tok = dm.tgt_tokenizer
    assert isinstance(tok, CharTokenizer) and tok.specials == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
    assert tok.decode(tok.encode("2001-09-30")) == "2001-09-30"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("mtdata")
    fixtures.write_multi30k(root, mp)
    yield root
    mp.undo()


def test_multi30k_pairs_are_aligned(data_dir, monkeypatch):
    monkeypatch.setenv("SEQGEN_OFFLINE", "1")
    dm = TranslationDataModule("multi30k", "de", "en", data_dir=str(data_dir),
                               tokenizer={"kind": "sentencepiece", "vocab_size": 300, "model_type": "bpe"}, shared_vocab=True)
    dm.setup()
    raw_en = gzip.decompress((data_dir / "multi30k" / "test_2016_flickr.en.gz").read_bytes()).decode().splitlines()
    raw_de = gzip.decompress((data_dir / "multi30k" / "test_2016_flickr.de.gz").read_bytes()).decode().splitlines()
    assert dm.texts["test"] == (raw_de, raw_en)  # every test pair, in file order, untouched
    assert dm.src_tokenizer is dm.tgt_tokenizer
    if shared_data_dir() is not None:
        assert len(raw_en) == 1000 and raw_de[0].startswith("Ein Mann mit einem orangefarbenen Hut")
    with pytest.raises(ConfigError, match="two different"):
        TranslationDataModule("multi30k", "de", "de")


# -- metrics, learning, the command line --------------------------------------------------------------
def test_bleu_is_sacrebleu():
    import sacrebleu
    from torchmetrics.text import SacreBLEUScore

    hyps = ["A man in an orange hat starring at something.", "A Boston Terrier is running on lush green grass.",
            "the dog runs"]
    refs = ["A man in an orange hat starring at something.", "A Boston terrier is running in lush green grass .",
            "A dog is running."]
    ours = SacreBLEUScore(tokenize="13a")
    ours.update(hyps[:2], [[r] for r in refs[:2]])
    ours.update(hyps[2:], [[r] for r in refs[2:]])  # accumulated over batches like validation
    assert float(ours.compute()) * 100 == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-4)


@pytest.fixture(scope="module")
def dates_run(tmp_path_factory):
    """dates_attn trained briefly in-process (6,000 pairs, 2 epochs)."""
    tmp = tmp_path_factory.mktemp("dates")
    cfg = make_cfg(tmp, ["task=dates_attn", "data.num_train=6000", "data.num_eval=300", "trainer.max_epochs=2",
                         "data.batch_size=64",
                         f"seed={LEARN_SEED}", "model.net.hidden_size=64", "callbacks.translations.echo=false", *FAST])
    return run(cfg), tmp / "run"


@pytest.mark.slow
@pytest.mark.learning
def test_dates_attn_learns_and_saves_translations(dates_run, lesson):
    import sacrebleu

    metrics, run_dir = dates_run
    lesson("test exact match", metrics["test/exact_match"], ">", 0.8)
    hyps = (run_dir / "translations" / "test.hyp.txt").read_text(encoding="utf-8").splitlines()
    rows = [ln.split("\t") for ln in (run_dir / "translations" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    assert len(hyps) == len(rows) == 300
    refs = date_pairs(300, seed=1)  # the test split of seed 0, in file order
    assert [r[0] for r in rows] == refs[0] and [r[1] for r in rows] == refs[1]
    exact = sum(h == r for h, r in zip(hyps, refs[1])) / 300
    assert exact == pytest.approx(metrics["test/exact_match"], abs=1e-6)  # the logged metric is what was saved
    assert sacrebleu.corpus_bleu(hyps, [refs[1]]).score == pytest.approx(metrics["test/bleu"], abs=1e-3)
    assert len(list((run_dir / "plots").glob("attention_*.png"))) == 4
    assert math.isfinite(metrics["val/ppl"]) and metrics["val/ppl"] >= 1.0


@pytest.mark.slow
def test_translate_cli_reads_text_files_and_stdin(dates_run, tmp_path):
    from seqgen.translate import TranslateArgs, translate

    _, run_dir = dates_run
    src = tmp_path / "dates.txt"
    src.write_text("the 4th of march 1997\n\n12.11.2026\n", encoding="utf-8")
    out = translate(TranslateArgs(ckpt=str(run_dir), input=str(src), beam=3, out=str(tmp_path / "iso.txt")))
    assert len(out) == 3 and out[1] == ""  # one output line per input line
    assert (tmp_path / "iso.txt").read_text().splitlines() == out
    assert translate(TranslateArgs(ckpt=str(run_dir), input="12.11.2026", beam=1)) == [out[2]]
    with pytest.raises(ConfigError, match="empty"):
        translate(TranslateArgs(ckpt=str(run_dir), input=None), stdin=["", "  "])
    with pytest.raises(CheckpointError, match="not found"):
        translate(TranslateArgs(ckpt=str(tmp_path / "nope.ckpt"), input="x"))
    with pytest.raises(ConfigError, match="empty"):
        translate(TranslateArgs(ckpt=str(run_dir), input=""))
    proc = run_script(["scripts/translate.py", f"ckpt={run_dir}", "beam=2"], cwd=ROOT, timeout=120,
                      input="the 4th of march 1997\n12.11.2026\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [out[0], out[2]]


def test_translator_casts_its_weights_once_a_step_under_lightnings_autocast(tmp_path):
    """Lightning's mixed precision runs with torch's autocast cache off, so a decoder stepping
    through the target cast its weights at every position; the translator's steps turn the cache on
    for their block and clear it after: far fewer casts, the same loss, the cache off again after
    the block, and a weight changed between two blocks is seen by the next (nothing stale)."""
    from torch.profiler import ProfilerActivity, profile

    from seqgen.train import build_datamodule, build_model

    cfg = make_cfg(tmp_path, ["task=dates_attn", "data.num_train=64", "data.num_eval=8", "model.net.hidden_size=16"])
    dm = build_datamodule(cfg)
    dm.setup("fit")
    torch.manual_seed(0)
    model = build_model(cfg, dm.dims).eval()  # no dropout: the two passes see the same net
    batch = next(iter(dm.train_dataloader()))
    src, tgt = batch["src"], batch["tgt"]

    def loss():
        return model.net(src, tgt[:, :-1], src_lengths=batch.get("src_lengths"), targets=tgt[:, 1:])

    def casts(fn):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = fn()
        return out, sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy")

    def cached():
        with model.weights_cast_once():
            assert torch.is_autocast_cache_enabled()
            return loss()

    with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):  # as Lightning enters it
        plain, n_plain = casts(loss)
        once, n_once = casts(cached)
        assert not torch.is_autocast_cache_enabled()
        # the activations are cast at every position either way: 347 casts against 539 here
        assert torch.equal(once, plain) and n_once < 0.75 * n_plain, (n_once, n_plain)
        with torch.no_grad():
            next(model.net.decoder.parameters()).add_(0.5)
        assert torch.equal(cached(), loss())  # the cast of the changed weight, not the cached one
    assert not torch.is_autocast_enabled("cpu")
