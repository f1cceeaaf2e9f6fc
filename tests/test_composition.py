"""Recipes compose: every task's fully composed config equals the snapshot taken before the task
files were made to build on one another (tests/composed.py writes it), so the refactor of
conf/task/ changed no run. A change of a recipe is made on purpose: rewrite the snapshot with
``python tests/composed.py --write`` and say in the commit which keys changed."""

from __future__ import annotations

import json

import pytest
import yaml
from composed import SNAPSHOT, all_tasks, composed, differences

from conftest import CONF

SNAP = json.loads(SNAPSHOT.read_text())

# The intended differences from the snapshot taken before the refactor, each with its reason.
INTENDED = {
    # the level comes from the data's dims (sentencepiece here); a model config restating it is
    # now an error when it contradicts the data, as "word" did (the data said sentencepiece)
    "lm_multi30k_langid": ["model.level"],
}


def test_the_snapshot_holds_every_task():
    assert sorted(SNAP) == all_tasks()


@pytest.mark.parametrize("task", all_tasks())
def test_task_composes_to_its_snapshot(task):
    diff = differences(SNAP[task], composed(task))
    assert diff == INTENDED.get(task, []), f"{task}: composed config differs from the snapshot at {diff}"


def test_differences_sees_values_missing_keys_and_callback_order():
    base = {"a": {"b": 1}, "callbacks": {"x": {}, "y": {}}}
    assert differences(base, {"a": {"b": 2}, "callbacks": {"x": {}, "y": {}}}) == ["a.b"]
    assert differences(base, {"a": {}, "callbacks": {"x": {}, "y": {}}}) == ["a.b"]
    assert differences(base, {"a": {"b": 1}, "callbacks": {"y": {}, "x": {}}}) == ["callbacks (order)"]


def test_variants_state_only_what_differs():
    """A task that builds on another names it in ``defaults``; the PTB trio differs in one key."""
    for kind in ("gru", "rnn"):
        spec = yaml.safe_load((CONF / "task" / f"lm_ptb_{kind}.yaml").read_text())
        assert spec == {"defaults": ["lm_ptb_lstm"], "model": {"net": {"kind": kind}}}
