"""AppTest: the local-descriptor baselines form on the Embeddings page, on 100 small faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fisher_core.workspace import Workspace

ENTRY = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
BASELINES = "Local-descriptor baselines (SIFT/ORB, VLAD, BoW)"

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(autouse=True)
def _workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("FISHERLAB_HOME", str(tmp_path / "ws"))


def _faces_embeddings_page() -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.run()
    at.switch_page("../pages/data.py").run()
    at.selectbox(key="data_builtin").select("faces").run()
    at.number_input(key="faces_n").set_value(100)
    at.button[0].click().run()  # the built-in form's "Load"
    assert len(at.session_state["dataset"]) == 100
    at.switch_page("../pages/embeddings.py").run()
    at.radio(key="emb_method").set_value(BASELINES).run()
    assert not at.exception, at.exception
    return at


def test_sift_vlad_is_computed_saved_and_selected(tmp_path):
    at = _faces_embeddings_page()
    assert any("Jégou et al. 2010" in c.value for c in at.caption)
    at.selectbox(key="base_desc").select("SIFT keypoints")
    at.selectbox(key="base_enc").select("VLAD")
    at.number_input(key="base_k").set_value(4)
    at.number_input(key="base_pca").set_value(8)
    at.button(key="base_go").click().run()
    assert not at.exception, at.exception
    assert not at.error
    name = "faces-sift-vlad-k4-pca8"
    assert at.session_state["embedding_name"] == name
    emb = Workspace(tmp_path / "ws").load_embedding(name)
    assert emb.kind == "vlad" and emb.vectors.shape == (100, 4 * 10)
    assert emb.params["descriptors"] == "sift" and emb.params["n_empty"] == 0
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, rtol=1e-5)
    assert at.selectbox(key="emb_pick").value == name  # shown below at once


def test_a_library_error_is_shown_not_raised():
    at = _faces_embeddings_page()
    at.selectbox(key="base_desc").select("SIFT keypoints")
    at.number_input(key="base_pca").set_value(200)  # SIFT has 128 dimensions
    at.button(key="base_go").click().run()
    assert not at.exception, at.exception
    assert at.error[0].value.startswith("pca must be None or an integer in \\[1, 128\\] for "
                                        "SIFT descriptors, got 200")
    assert "embedding_name" not in at.session_state
