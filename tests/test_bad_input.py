"""The bad-input catalogue (README, "Bad input and faults"): one row per case, each must give a
clear error naming what is wrong, leave no partial output in its run folder, and leave an
earlier run untouched. Rows run in-process (``seqgen.train.run`` raises the ``SeqgenError`` the
command line turns into ``error: ...`` and exit status 2, tested in test_cli)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException

from conftest import make_cfg
from seqgen.errors import CheckpointError, ChecksumError, ConfigError, DataError, DataNotFoundError
from seqgen.train import run

FAST = ["callbacks.progress_bar=null", "trainer.num_sanity_val_steps=0", "trainer.enable_model_summary=false", "logger=none"]


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """A finished digits_mlp run: its files must never change, whatever later runs do."""
    root = tmp_path_factory.mktemp("earlier")
    run(make_cfg(root, ["task=digits_mlp", "trainer.max_epochs=1", *FAST]))
    return root / "run"


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _corrupt_multi30k(tmp: Path) -> list[str]:
    d = tmp / "data" / "multi30k"
    d.mkdir(parents=True)
    for split in ("train", "val", "test_2016_flickr"):
        (d / f"{split}.en.gz").write_bytes(gzip.compress(b"not the real captions\n"))
    return ["task=lm_multi30k_lstm", f"paths.data_dir={tmp / 'data'}"]


def _empty_corpus(tmp: Path) -> list[str]:
    (tmp / "empty.txt").write_text("")
    return ["task=char_lm", "data=text_files", f"data.train={tmp / 'empty.txt'}"]


def _malformed_pairs(tmp: Path) -> list[str]:
    (tmp / "pairs.tsv").write_text("Go.\tVa !\nHi.\tSalut !\nthis line has no tab\n" + "A.\tB.\n" * 30, encoding="utf-8")
    return ["task=dates_attn", "data=tsv_pairs", f"data.pairs_file={tmp / 'pairs.tsv'}", "data.tokenizer.kind=char"]


def _other_task_checkpoint(tmp: Path, earlier: Path) -> list[str]:
    return ["task=digits_vae", f"ckpt_path={earlier}"]


def _truncated_checkpoint(tmp: Path, earlier: Path) -> list[str]:
    data = (earlier / "checkpoints" / "last.ckpt").read_bytes()
    (tmp / "cut.ckpt").write_bytes(data[: len(data) // 3])
    return ["task=digits_mlp", f"ckpt_path={tmp / 'cut.ckpt'}"]


def _output_dir_is_a_file(tmp: Path) -> list[str]:
    (tmp / "blocker").write_text("a file where a folder should be")  # the run folder goes under it (see BASE)
    return ["task=digits_mlp"]


CATALOGUE = {
    # row: (overrides or a function building them, exception, words the message must contain)
    "unknown task": (["task=digits_mpl"], MissingConfigException, "digits_mlp"),
    "misspelled key": (["task=digits_mlp", "trainer.max_epoch=3"], ConfigCompositionException, "max_epoch"),
    # a key no constructor accepts, anywhere in the tree (a model, a net, a catalogue net, the data, a callback)
    "misspelt model key": (["task=digits_mlp", "+model.dropuot=0.5"], ConfigError, "unknown key model.dropuot"),
    "misspelt net key": (["task=char_lm", "+model.net.hiden_size=8"], ConfigError, "unknown key model.net.hiden_size"),
    "misspelt catalogue net key": (["task=digits_lenet", "+model.net.dropuot=0.5"], ConfigError,
                                   "unknown key model.net.dropuot"),
    "misspelt data key": (["task=digits_mlp", "+data.batchsize=8"], ConfigError, "unknown key data.batchsize"),
    "misspelt callback key": (["task=digits_mlp", "+callbacks.early_stopping.patiense=3"], ConfigError,
                              "unknown key callbacks.early_stopping.patiense"),
    "misspelt augmentation key": (["task=digits_lenet", "+model.augment.0.degres=3"], ConfigError,
                                  "unknown key model.augment[0].degres"),
    "wrong value type": (["task=digits_mlp", "data.batch_size=abc"], ConfigError, "data.batch_size"),
    "negative size": (["task=digits_mlp", "model.net.hidden_sizes=[64,-3]"], ConfigError, "hidden"),
    "zero size": (["task=char_lm", "data.bptt=0"], ConfigError, "data.bptt"),
    "negative checkpoint interval": (["task=digits_mlp", "callbacks.last_checkpoint.min_interval_s=-1"], ConfigError,
                                     "callbacks.last_checkpoint.min_interval_s must be a number of seconds >= 0"),
    "data dir that does not exist, offline": (["task=lm_ptb_lstm", "paths.data_dir=/nonexistent/seqgen-data"],
                                              DataNotFoundError, "ptb.train.txt"),
    "checksum mismatch": (_corrupt_multi30k, ChecksumError, "md5"),
    "empty text corpus": (_empty_corpus, DataError, "empty"),
    "pairs file with a malformed line": (_malformed_pairs, DataError, "pairs.tsv:3"),
    "checkpoint from another task": (_other_task_checkpoint, CheckpointError, "digits_mlp"),
    "truncated checkpoint": (_truncated_checkpoint, CheckpointError, "truncated or corrupt"),
    "checkpoint path that does not exist": (["task=digits_mlp", "ckpt_path=/nonexistent/last.ckpt"], CheckpointError,
                                            "not found"),
    "output folder that cannot be written": (_output_dir_is_a_file, ConfigError, "blocker/run is not writable"),
}


BASE = {"output folder that cannot be written": "blocker"}  # rows whose run folder is not tmp_path/run


@pytest.mark.parametrize("row", sorted(CATALOGUE))
def test_bad_input_gives_a_clear_error_and_leaves_nothing(row, tmp_path, earlier, monkeypatch):
    monkeypatch.setenv("SEQGEN_OFFLINE", "1")
    before = digest(earlier)
    build, exc, words = CATALOGUE[row]
    if callable(build):
        args = build(tmp_path, earlier) if build.__code__.co_argcount == 2 else build(tmp_path)
    else:
        args = build
    base = tmp_path / BASE[row] if row in BASE else tmp_path
    with pytest.raises(exc) as info:
        run(make_cfg(base, [*args, *FAST]))
    assert words in str(info.value), str(info.value)
    out = base / "run"  # the run folder this row's run was given
    assert not list(out.rglob("*.ckpt")) and not (out / "metrics.json").exists()  # no partial output
    assert digest(earlier) == before  # the earlier run is untouched


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    """The second epoch's last.ckpt cannot be put in place (ENOSPC, on the checkpoint writer's thread):
    the run stops with a message saying so, no temporary file is left, and last.ckpt still holds the
    first epoch, loadable."""
    import errno
    import os

    import seqgen.train as train_mod

    real_replace, calls = os.replace, {"last": 0}

    def failing_replace(src, dst, *a, **kw):
        if Path(dst).name == "last.ckpt":
            calls["last"] += 1
            if calls["last"] == 2:
                assert Path(src).exists()  # written and fsynced, not yet renamed
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(train_mod.os, "replace", failing_replace)
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        run(make_cfg(tmp_path, ["task=digits_mlp", "trainer.max_epochs=3", *FAST]))
    assert "intact" in str(info.value)
    ckpts = tmp_path / "run" / "checkpoints"
    assert not list(ckpts.glob("*.tmp"))
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and calls["last"] == 2


def test_prompt_characters_outside_the_vocabulary_error_drop_or_unk():
    """generate.py's oov=error|drop|unk on a character vocabulary."""
    from seqgen.data import CharTokenizer
    from seqgen.generate import encode_prompt

    tok = CharTokenizer.train("abc def\n")
    with pytest.raises(ConfigError, match="outside the model's vocabulary"):
        encode_prompt(tok, "ab漢c", "error")
    assert encode_prompt(tok, "ab漢c", "drop") == tok.encode("abc")
    unk = encode_prompt(tok, "ab漢c", "unk")
    assert len(unk) == 4 and unk[:2] == tok.encode("ab") and unk[3:] == tok.encode("c")
    assert tok.decode([unk[2]]) != "漢" and unk[2] not in tok.encode("abc def\n")  # the <unk> id
    with pytest.raises(ConfigError, match="nothing of the prompt is left"):
        encode_prompt(tok, "漢字", "drop")


def test_translate_refuses_a_checkpoint_that_is_not_a_translator(tmp_path, earlier):
    from seqgen.translate import TranslateArgs, translate

    with pytest.raises(CheckpointError, match="translate.py needs one written by a") as info:
        translate(TranslateArgs(ckpt=str(earlier), input="der Hund"))
    assert "Classifier" in str(info.value)


def test_unwritable_sentencepiece_cache_warns_and_still_trains(tmp_path):
    from seqgen.data.tokenizers import SentencePieceTokenizer

    (tmp_path / "sentencepiece").write_text("a file where the cache folder should be")
    lines = [f"line number {i} of a small corpus with some words" for i in range(200)]
    with pytest.warns(UserWarning, match="not cached .* trained again next run"):
        tok, reused = SentencePieceTokenizer.train_cached(lines, tmp_path, vocab_size=40, model_type="unigram")
    assert not reused and tok.decode(tok.encode(lines[0])) == lines[0]
    with pytest.warns(UserWarning, match="not cached"):
        _, reused = SentencePieceTokenizer.train_cached(lines, tmp_path, vocab_size=40, model_type="unigram")
    assert not reused and (tmp_path / "sentencepiece").is_file()  # nothing written, nothing broken


@pytest.mark.parametrize("kind", ["garbage", "truncated", "holds code"])
def test_unreadable_checkpoints_say_what_is_wrong_and_never_advise_an_unsafe_load(tmp_path, earlier, kind):
    path = tmp_path / "bad.ckpt"
    if kind == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "truncated":
        data = (earlier / "checkpoints" / "last.ckpt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        torch.save({"state_dict": {}, "hook": print}, path)  # a pickled callable: code on load
    with pytest.raises(CheckpointError) as info:
        run(make_cfg(tmp_path, ["task=digits_mlp", f"ckpt_path={path}", *FAST]))
    msg = str(info.value)
    assert str(path) in msg and "weights_only=False" not in msg and "trusted source" not in msg, msg
    assert ("holds a Python object (print)" if kind == "holds code" else "truncated or corrupt") in msg, msg


def test_tokenizer_settings_are_checked_per_kind():
    from seqgen.data.tokenizers import train_seq_tokenizer

    lines = ["a small corpus", "of a few lines"]
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) vocab_sise; kind=sentencepiece takes vocab_size"):
        train_seq_tokenizer(lines, {"kind": "sentencepiece", "vocab_sise": 50}, "/nonexistent")
    with pytest.warns(UserWarning, match="kind=char: model_type=bpe, vocab_size=8000 not used"):
        tok = train_seq_tokenizer(lines, {"kind": "char", "vocab_size": 8000, "model_type": "bpe"}, "/nonexistent")
    assert tok.decode(tok.encode("a few")) == "a few"


def test_a_misspelt_key_fails_before_any_data_is_read(tmp_path, monkeypatch):
    import seqgen.train

    def no_data(cfg):
        raise AssertionError("the data module was built before the config was checked")

    monkeypatch.setattr(seqgen.train, "build_datamodule", no_data)
    with pytest.raises(ConfigError, match="unknown key model.net.hiden_sizes for seqgen.nets.MLP; it accepts: "):
        run(make_cfg(tmp_path, ["task=digits_mlp", "+model.net.hiden_sizes=[8]", *FAST]))


def test_a_misspelt_key_in_a_task_file_names_it(tmp_path):
    """The same check holds for a key written in a recipe (here a user's task file that builds on
    digits_mlp), not only for command-line overrides."""
    import shutil

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from conftest import CONF

    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "task" / "my_mlp.yaml").write_text("# @package _global_\ndefaults:\n  - digits_mlp\n\n"
                                                "model:\n  net:\n    activaton: tanh\n")
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(conf)):
        cfg = compose("train", overrides=["task=my_mlp", *FAST], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "run"), str(tmp_path / "outputs")
    with pytest.raises(ConfigError, match=r"unknown key model\.net\.activaton .*it accepts: .*activation"):
        run(cfg)
