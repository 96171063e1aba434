"""AppTest: the Train page offers the EBM-GAN's objective options and they reach the model."""

from __future__ import annotations

import pytest

from app.train_ui import CHOICES, LABELS
from fisher_core.models.ebgan import OBJECTIVES

from .test_pages import _on, _rerun_until

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(autouse=True)
def _workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("FISHERLAB_HOME", str(tmp_path / "ws"))


def test_train_page_ebgan_log_loss_g_steps_and_real_mix_reach_the_saved_model(tmp_path):
    from fisher_core import Workspace
    from fisher_core.workspace import load_saved_model

    assert CHOICES["objective"] == OBJECTIVES
    at = _on("train.py")
    at.selectbox(key="train_family").select("ebgan").run()
    objective = at.selectbox(key="cfg_ebgan_objective")
    assert objective.options == list(OBJECTIVES) and objective.value == "least_squares"
    assert objective.label == LABELS["objective"]
    assert at.number_input(key="cfg_ebgan_g_steps").label == LABELS["g_steps"]
    assert at.number_input(key="cfg_ebgan_real_mix").label == LABELS["real_mix"]
    assert at.number_input(key="cfg_ebgan_entropy_weight").value == pytest.approx(0.1)
    objective.select("log_loss")
    at.number_input(key="cfg_ebgan_g_steps").set_value(2)
    at.number_input(key="cfg_ebgan_real_mix").set_value(0.25)
    for field, value in (("g_width", 4), ("d_width", 3), ("latent_dim", 4)):
        at.number_input(key=f"cfg_ebgan_{field}").set_value(value)
    at.number_input(key="train_epochs").set_value(1)
    at.text_input(key="train_name").input("gan-ll")
    at.button[0].click()  # the form's "Train"
    at.run()
    assert not at.exception, at.exception
    _rerun_until(at, lambda a: len(a.success) > 0, timeout=120)
    assert "Saved model **gan-ll**" in at.success[0].value
    model, _ = load_saved_model(Workspace(tmp_path / "ws"), "gan-ll")
    cfg = model.config
    assert (cfg.objective, cfg.g_steps, cfg.real_mix, cfg.g_width) == ("log_loss", 2, 0.25, 4)
