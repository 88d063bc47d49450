"""Shared runtime helpers (``jaxnas.runtime``)."""

import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxnas.runtime import RunError, checkpoint_manager, restore_for_eval


def _save(folder, step, value):
    mngr = checkpoint_manager(str(folder), 10)
    mngr.save(step, args=ocp.args.StandardSave({"w": np.full(3, value, np.float32)}))
    mngr.wait_until_finished()
    mngr.close()


def test_restore_for_eval_best_latest_step_and_fallback(tmp_path):
    best, latest = tmp_path / "best", tmp_path / "checkpoints"
    target = {"w": np.zeros(3, np.float32)}
    with pytest.raises(RunError, match="run1 has no checkpoints yet"):
        restore_for_eval(str(best), str(latest), target, root="run1")
    _save(latest, 3, 3.0)
    _save(latest, 5, 5.0)
    # no best state yet: "best" falls back to the newest checkpoint
    state, folder, step = restore_for_eval(str(best), str(latest), target)
    assert (folder, step, float(state["w"][0])) == (str(latest), 5, 5.0)
    _save(best, 2, 2.0)
    state, folder, step = restore_for_eval(str(best), str(latest), target)
    assert (folder, step, float(state["w"][0])) == (str(best), 2, 2.0)
    state, folder, step = restore_for_eval(str(best), str(latest), target, which="latest")
    assert (step, float(state["w"][0])) == (5, 5.0)
    state, _, step = restore_for_eval(str(best), str(latest), target, which="latest", step=3)
    assert (step, float(state["w"][0])) == (3, 3.0)
    with pytest.raises(RunError, match="does not match"):  # a checkpoint of another shape
        restore_for_eval(str(best), str(latest), {"w": np.zeros(4, np.float32)})
