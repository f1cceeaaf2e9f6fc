"""One tokenizer protocol (seqgen.contracts.Tokenizer) for the char, word and sentencepiece
tokenizers: the same calls, the same meaning of bos/eos/specials, the same state round trip, so no
caller branches on the kind."""

from __future__ import annotations

import pytest

from seqgen.contracts import Tokenizer as TokenizerProtocol
from seqgen.data.tokenizers import (
    SEQ_SPECIALS,
    CharTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    WordTokenizer,
    train_seq_tokenizer,
)
from seqgen.errors import DataError

LINES = ["the cat sat on the mat", "a dog ran in the park", "the bird sang a song"] * 20


def _all(tmp_path):
    return {
        "char (LM)": CharTokenizer.train("\n".join(LINES)),
        "char (seq)": train_seq_tokenizer(LINES, {"kind": "char"}, tmp_path),
        "word (LM)": WordTokenizer.train(LINES),
        "word (seq)": train_seq_tokenizer(LINES, {"kind": "word"}, tmp_path),
        "sentencepiece": train_seq_tokenizer(LINES, {"kind": "sentencepiece", "vocab_size": 40, "model_type": "bpe"},
                                             tmp_path),
    }


def test_every_kind_follows_the_protocol(tmp_path):
    for name, tok in _all(tmp_path).items():
        assert isinstance(tok, TokenizerProtocol), name
        text = LINES[0]
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids).replace("\n", "") == text, name
        assert [tok.piece(i) for i in ids] and all(isinstance(tok.piece(i), str) for i in ids)
        again = Tokenizer.from_state(tok.state())
        assert type(again) is type(tok) and again.encode(text) == ids and again.specials == tok.specials, name
        tok.save(tmp_path / "tok.json")
        assert Tokenizer.load(tmp_path / "tok.json").encode(text) == ids


def test_bos_and_eos_only_when_asked_and_only_if_the_vocabulary_has_them(tmp_path):
    for name, tok in _all(tmp_path).items():
        ids = tok.encode("the cat")
        sp = tok.specials
        assert "unk" in sp, name
        if "eos" in sp:
            assert tok.encode("the cat", eos=True) == [*ids, sp["eos"]]
        else:
            with pytest.raises(DataError, match="no <eos>"):
                tok.encode("the cat", eos=True)
        if "bos" in sp:
            assert tok.encode("the cat", bos=True, eos=True) == [sp["bos"], *ids, sp["eos"]]
            assert tok.decode([sp["bos"], *ids, sp["eos"], sp["pad"]]).strip() == tok.decode(ids).strip()


def test_sequence_vocabularies_share_the_special_ids(tmp_path):
    toks = _all(tmp_path)
    for name in ("char (seq)", "word (seq)", "sentencepiece"):
        assert toks[name].specials == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}, name
    assert toks["char (LM)"].specials == {"unk": 0}
    assert toks["word (LM)"].specials == {"unk": 0, "eos": 1}


def test_char_means_one_class_whatever_its_specials(tmp_path):
    lm, seq = CharTokenizer.train("abcab"), CharTokenizer.train(["abcab"], specials=SEQ_SPECIALS, by_frequency=True)
    assert lm.itos == ["<unk>", "a", "b", "c"]  # sorted: the language model's layout
    assert seq.itos == ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b", "c"]  # by frequency, ties alphabetical
    assert lm.decode(lm.encode("abz")) == "ab\ufffd" and seq.decode(seq.encode("abz")) == "ab\ufffd"


def test_character_vocabularies_written_by_the_old_word_tokenizer_still_load():
    old = {"kind": "word", "itos": ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b"],
           "specials": ["<pad>", "<unk>", "<bos>", "<eos>"], "lower": False, "split": "char"}
    tok = Tokenizer.from_state(old)
    assert isinstance(tok, CharTokenizer) and tok.encode("ab") == [4, 5] and tok.decode([2, 4, 5, 3]) == "ab"
    assert isinstance(SentencePieceTokenizer, type)
