"""Each value has one judge: the constructor it is passed to (ranges), after the builder checked it
against the constructor's annotations (types); the run's and the Trainer's own keys, which no
seqgen constructor receives, are checked by seqgen.config. Every bad value below fails before
training with an error that names the key."""

from __future__ import annotations

import pytest

from conftest import make_cfg
from seqgen.errors import ConfigError
from seqgen.train import run

FAST = ["callbacks.progress_bar=null", "logger=none", "trainer.enable_model_summary=false"]

BAD = [  # (task, override, words the message must contain)
    ("digits_mlp", "data.batch_size=abc", "data.batch_size"),
    ("digits_mlp", "data.batch_size=0", "batch_size"),
    ("digits_mlp", "data.eval_batch_size=-1", "eval_batch_size"),
    ("digits_mlp", "data.val_fraction=1.5", "val_fraction"),
    ("digits_mlp", "model.net.hidden_sizes=[64,-3]", "hidden"),
    ("digits_mlp", "model.net.dropout=1.5", "dropout"),
    ("digits_mlp", "model.net.input_dropout=-0.1", "input_dropout"),
    ("digits_mlp", "model.net.activation=maxout model.net.pieces=1", "pieces"),
    ("digits_mlp", "model.label_smoothing=1.0", "label_smoothing"),
    ("digits_mlp", "model.optimizer.lr=0", "lr"),
    ("digits_mlp", "model.optimizer.lr=-0.1", "lr"),
    ("digits_mlp", "model.optimizer.weight_decay=-1", "weight_decay"),
    ("digits_dbn_pretrain", "model.optimizer.momentum=-0.5", "momentum"),
    ("char_lm", "data.bptt=0", "bptt"),
    ("char_lm", "model.net.hidden_size=0", "hidden_size"),
    ("char_lm", "model.net.num_layers=0", "num_layers"),
    ("char_lm", "model.net.embedding_dim=-4", "embedding_dim"),
    ("char_lm", "+model.net.emb_dropout=2", "emb_dropout"),
    ("char_lm", "model.net.tie_weights=maybe", "tie_weights"),
    ("char_lm", "callbacks.text_samples.max_new_tokens=0", "max_new_tokens"),
    ("char_lm", "callbacks.text_samples.temperature=0", "temperature"),
    ("char_lm", "callbacks.text_samples.num_samples=0", "num_samples"),
    ("tagging_gru", "model.net.bidirectional=yes", "bidirectional"),
    ("dates_attn", "model.beam_size=0", "beam_size"),
    ("dates_attn", "model.net.max_len=0", "max_len"),
    ("digits_vae", "model.net.latent_dim=0", "latent_dim"),
    ("digits_vae", "callbacks.image_grids.every_n_epochs=0", "every_n_epochs"),
    ("digits_lenet", "model.scheduler.name=step +model.scheduler.step_size=0", "step_size"),
    ("digits_mlp", "trainer.max_epochs=1.5", "trainer.max_epochs"),
    ("digits_mlp", "trainer.max_steps=-3", "trainer.max_steps"),
    ("digits_mlp", "trainer.log_every_n_steps=0", "trainer.log_every_n_steps"),
    ("digits_mlp", "trainer.gradient_clip_val=-1", "trainer.gradient_clip_val"),
    ("digits_mlp", "trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches"),
    ("digits_mlp", "trainer.deterministic=maybe", "trainer.deterministic"),
    ("digits_mlp", "seed=abc", "seed"),
    ("digits_mlp", "train=maybe", "train"),
]


@pytest.mark.parametrize("task,override,words", BAD, ids=[f"{t}:{o}" for t, o, _ in BAD])
def test_a_bad_value_names_its_key_before_training(task, override, words, tmp_path, monkeypatch):
    import seqgen.train

    def no_fit(*args, **kwargs):
        raise AssertionError("training started with a bad value")

    monkeypatch.setattr(seqgen.train, "fit", no_fit)
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        run(make_cfg(tmp_path, [f"task={task}", *override.split(), *FAST]))
