"""Text classification: readers on format-exact fixtures, sentencepiece (round trips on real
Multi30k text, cache reuse), bucketing, padding invariance of the text encoders, and learning."""

from __future__ import annotations

import io
import unicodedata

import fixtures
import pytest
import torch

from conftest import make_cfg, shared_data_dir
from seqgen.data import BucketBatchSampler, SentencePieceTokenizer, TextClassificationDataModule, pad_batch
from seqgen.data.text_classification import read_ag_news_csv, read_imdb_folder, read_table
from seqgen.data.tokenizers import SEQ_SPECIALS, Tokenizer, WordTokenizer
from seqgen.errors import CheckpointError, ConfigError, DataError
from seqgen.nets import RecurrentTextClassifier, TextCNN
from seqgen.train import run

FAST = ["callbacks.progress_bar=null", "trainer.num_sanity_val_steps=0", "trainer.enable_model_summary=false", "logger=none"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, sentencepiece_cache):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("textdata")
    for write in (fixtures.write_ag_news, fixtures.write_sst2, fixtures.write_imdb, fixtures.write_multi30k):
        write(root, mp)
    (root / "sentencepiece").symlink_to(sentencepiece_cache, target_is_directory=True)
    yield root
    mp.undo()


def multi30k_lines(data_dir, lang: str, n: int = 3000) -> list[str]:
    from seqgen.data.corpora import multi30k_lines as read

    return read(data_dir, "train", lang)[:n]


def test_readers_parse_the_original_formats(data_dir, monkeypatch):
    texts, labels = read_ag_news_csv(data_dir / "ag_news" / "train.csv")
    assert len(texts) == 80 and sorted(set(labels)) == [0, 1, 2, 3]
    assert '"quoted"' in texts[0] and "\\" not in texts[0] and "more text" in texts[0]
    bad = data_dir / "bad.csv"
    bad.write_text('"7","title","text"\n')
    with pytest.raises(DataError, match="class"):
        read_ag_news_csv(bad)
    texts, labels = read_table(io.StringIO("sentence\tlabel\nit 's \"great\"\t1\nbad\t0\n"), "sentence", "label", "\t")
    assert texts == ['it \'s "great"', "bad"] and labels == ["1", "0"]  # GLUE TSVs are unquoted
    with pytest.raises(DataError, match="no column 'text'; columns: sentence, label"):
        read_table(io.StringIO("sentence,label\na,1\n"), "text", "label")
    monkeypatch.setenv("SEQGEN_OFFLINE", "1")
    for dataset, n_classes in (("ag_news", 4), ("sst2", 2), ("imdb", 2)):
        dm = TextClassificationDataModule(dataset, data_dir=str(data_dir), tokenizer={"kind": "word", "lower": True})
        dm.prepare_data()
        dm.setup()
        assert dm.dims["num_classes"] == n_classes
        assert all(len(dm.splits[s][0]) for s in ("train", "val", "test"))
    imdb_texts, imdb_labels = read_imdb_folder(data_dir / "imdb" / "aclImdb", "test")
    assert len(imdb_texts) == 40 and imdb_labels.count(1) == 20 and "<br" not in " ".join(imdb_texts)


def test_sentencepiece_round_trips_on_multi30k_and_is_cached(data_dir, tmp_path):
    special = "Ein Mädchen über Straße — très élégant: €5, naïve façade"
    lines = multi30k_lines(data_dir, "de") + multi30k_lines(data_dir, "fr") + [special]
    for model_type in ("bpe", "unigram"):
        tok, reused = SentencePieceTokenizer.train_cached(lines, tmp_path, vocab_size=500, model_type=model_type)
        assert not reused and tok.vocab_size <= 500
        again, reused = SentencePieceTokenizer.train_cached(lines, tmp_path, vocab_size=500, model_type=model_type)
        assert reused and again.model_proto == tok.model_proto
        for line in lines[:500] + [special]:  # character_coverage=1.0: every character of the training text is kept
            assert tok.decode(tok.encode(line, eos=True)) == " ".join(unicodedata.normalize("NFKC", line).split())
        restored = Tokenizer.from_state(tok.state())
        assert restored.encode(lines[0]) == tok.encode(lines[0])
    other, reused = SentencePieceTokenizer.train_cached(lines[:-1], tmp_path, vocab_size=500, model_type="bpe")
    assert not reused  # another corpus: another cache entry
    assert len(list((tmp_path / "sentencepiece").glob("*.model"))) == 3
    with pytest.raises(ConfigError, match="bpe or unigram"):
        SentencePieceTokenizer.train(lines, model_type="word")


def test_word_vocab_specials_and_round_trip(data_dir):
    lines = multi30k_lines(data_dir, "en")
    tok = WordTokenizer.train(lines, specials=SEQ_SPECIALS, min_freq=1)
    assert tok.itos[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    for line in lines[:200]:
        assert tok.decode(tok.encode(line)) == " ".join(line.split())
    small = WordTokenizer.train(lines, specials=SEQ_SPECIALS, min_freq=3, max_size=20)
    assert small.vocab_size == 20 and small.encode("zzzunseen") == [1]


@pytest.mark.parametrize("max_tokens", [None, 60])
def test_bucketing_uses_every_example_once_per_epoch(max_tokens):
    lengths = [int(x) for x in torch.randint(1, 20, (503,), generator=torch.Generator().manual_seed(0))]
    sampler = BucketBatchSampler(lengths, batch_size=16, seed=3, pool_factor=4, max_tokens=max_tokens)
    orders = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(503)) and len(batches) == len(sampler)
        assert all(len(b) <= 16 for b in batches)
        if max_tokens:
            assert all(max(lengths[i] for i in b) * len(b) <= max_tokens for b in batches)
        orders.append(flat)
    assert orders[0] != orders[1]  # reshuffled each epoch
    sampler.set_epoch(0)
    assert [i for b in sampler for i in b] == orders[0]  # and reproducible
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert padded < 1.3 * sum(lengths)  # similar lengths together: little padding


@pytest.mark.parametrize("net", ["lstm_last", "gru_mean", "lstm_max", "gru_attention", "cnn"])
def test_padding_never_changes_outputs(net):
    torch.manual_seed(0)
    if net == "cnn":
        model = TextCNN(50, 3, embedding_dim=8, filter_sizes=[2, 3], num_filters=4)
    else:
        kind, pooling = net.split("_")
        model = RecurrentTextClassifier(50, 3, embedding_dim=8, hidden_size=6, kind=kind, pooling=pooling,
                                        bidirectional=True)
    model.eval()
    seqs = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    tokens, lengths = pad_batch(seqs)
    assert tokens.shape == (3, 6) and lengths.tolist() == [3, 6, 1]
    out = model(tokens)
    longer = torch.nn.functional.pad(tokens, (0, 7))  # more padding
    assert torch.allclose(model(longer), out, atol=1e-6)
    alone = torch.cat([model(torch.tensor([s])) for s in seqs])  # each sentence with no padding at all
    assert torch.allclose(alone, out, atol=1e-5)
    # the token counts a text batch carries (on the host): the same outputs, exactly, with no count on the device
    assert torch.equal(model(tokens, lengths=lengths.tolist()), out)


@pytest.mark.slow
@pytest.mark.learning
def test_langid_learns_on_multi30k(data_dir, tmp_path, monkeypatch, learn_seed, lesson):
    monkeypatch.setenv("SEQGEN_OFFLINE", "1")
    real = shared_data_dir() is not None and (shared_data_dir() / "multi30k").is_dir()
    overrides = ["task=langid_multi30k_bigru", f"paths.data_dir={data_dir}", "trainer.max_epochs=1", f"seed={learn_seed}", *FAST]
    if real:  # 87k real captions: a slice of an epoch is plenty
        overrides += ["data.train_size=6000"]
    metrics = run(make_cfg(tmp_path, overrides))
    lesson(f"test accuracy, {'real' if real else 'fixture'} captions (chance 1/3)", metrics["test/acc"], ">",
           0.95 if real else 0.6)


@pytest.mark.slow
def test_lm_initialises_the_text_classifier_ulmfit(data_dir, tmp_path, monkeypatch):
    """lm_multi30k_langid -> langid_transfer_from_lm: the same sentencepiece model (shared cache),
    embedding and LSTM copied exactly, the frozen backbone unchanged by the first epoch, and a
    classifier with another vocabulary refused."""
    from seqgen.data import LMDataModule
    from seqgen.models import Classifier
    from seqgen.train import apply_init_from

    monkeypatch.setenv("SEQGEN_OFFLINE", "1")
    lm_dir = tmp_path / "lm"
    run(make_cfg(lm_dir, ["task=lm_multi30k_langid", f"paths.data_dir={data_dir}", "trainer.max_epochs=1",
                          "trainer.limit_train_batches=5", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", *FAST]))
    lm_state = torch.load(lm_dir / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    lm_data = LMDataModule("multi30k_langid", level="sentencepiece", data_dir=str(data_dir),
                           tokenizer={"vocab_size": 4000, "model_type": "unigram"})
    lm_data.setup()
    clf_data = TextClassificationDataModule("langid_multi30k", data_dir=str(data_dir), train_size=90,
                                            tokenizer={"kind": "sentencepiece", "vocab_size": 4000, "model_type": "unigram"})
    clf_data.setup()
    assert lm_data.tokenizer.model_proto == clf_data.tokenizer.model_proto  # few labels, same vocabulary

    overrides = ["task=langid_transfer_from_lm", f"paths.data_dir={data_dir}", f"model.init_from={lm_dir / 'run'}",
                 "data.train_size=90", "trainer.max_epochs=1", *FAST]
    cfg = make_cfg(tmp_path / "clf", overrides)
    model = Classifier(**{k: v for k, v in __import__("omegaconf").OmegaConf.to_container(cfg.model).items() if k != "_target_"},
                       num_classes=3, vocab_size=clf_data.tokenizer.vocab_size)
    apply_init_from(model, resuming=False, datamodule=clf_data)
    assert {"embedding.weight", "rnn.rnn.weight_ih_l0", "rnn.rnn.weight_hh_l0"} <= set(model.loaded_from_init)
    for name in model.loaded_from_init:
        assert torch.equal(model.net.state_dict()[name], lm_state[f"net.{name}"])
    run(cfg)  # one epoch, backbone frozen throughout (unfreeze_at_epoch=1)
    after = torch.load(tmp_path / "clf" / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name in ("embedding.weight", "rnn.rnn.weight_ih_l0"):
        assert torch.equal(after[f"net.{name}"], lm_state[f"net.{name}"])
    assert not torch.equal(after["net.head.weight"], model.net.head.weight)  # the head did train

    other = TextClassificationDataModule("langid_multi30k", data_dir=str(data_dir),
                                         tokenizer={"kind": "sentencepiece", "vocab_size": 4000, "model_type": "bpe"})
    other.setup()
    with pytest.raises(CheckpointError, match="tokenizer"):
        apply_init_from(model, resuming=False, datamodule=other)
