"""AppTest: the app shell, Home and Data pages, as a person would use them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ENTRY = str(Path(__file__).resolve().parents[2] / "app" / "main.py")

TIMEOUT = 60


@pytest.fixture(autouse=True)
def _workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("FISHERLAB_HOME", str(tmp_path / "ws"))


def _app() -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def test_home_renders_and_demo_button_opens_data_page():
    at = _app()
    assert at.title[0].value == "FisherLab"
    at.button(key="home_demo").click().run()
    assert not at.exception
    assert at.title[0].value == "Data"
    assert at.session_state["dataset"].name == "faces"


def _data_page() -> AppTest:
    at = _app()
    at.switch_page("../pages/data.py").run()
    assert not at.exception
    return at


def test_data_page_builtin_digits_and_save(tmp_path):
    at = _data_page()
    at.selectbox(key="data_builtin").select("digits")
    at.button[0].click()  # the form's submit button
    at.run()
    assert not at.exception
    assert at.session_state["dataset"].name == "digits"
    assert at.metric[0].value == "1,797"
    at.text_input(key="data_save_name").input("my-digits")
    at.button(key="data_save").click().run()
    assert not at.exception
    assert "Saved as" in at.success[0].value
    at.radio(key="data_source").set_value("Workspace").run()
    assert at.selectbox(key="data_saved").options == ["my-digits"]


def _npz_bytes(n: int = 12) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, images=rng.integers(0, 256, (n, 10, 10), dtype=np.uint8),
             labels=np.arange(n) % 3, class_names=np.array(["a", "b", "c"]))
    return buf.getvalue()


def test_data_page_upload_good_then_bad_keeps_previous():
    at = _data_page()
    at.radio(key="data_source").set_value("Upload").run()
    at.file_uploader(key="upload_file").upload("tiny.npz", _npz_bytes(), "application/zip").run()
    assert not at.exception
    ds = at.session_state["dataset"]
    assert (ds.name, len(ds), ds.class_names) == ("tiny", 12, ["a", "b", "c"])
    bad = io.BytesIO()
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../evil.png", b"x")
    at.file_uploader(key="upload_file").upload("evil.zip", bad.getvalue(), "application/zip")
    at.run()
    assert not at.exception
    assert "unsafe path" in at.error[0].value
    assert "previous dataset is still loaded" in at.error[0].value
    assert at.session_state["dataset"].name == "tiny"


def test_data_page_quantise():
    at = _data_page()
    at.number_input(key="conv_levels").set_value(4)
    at.button[1].click()  # Apply in the convert form
    at.run()
    assert not at.exception
    ds = at.session_state["dataset"]
    assert ds.levels == 4
    assert len(np.unique(ds.images)) <= 4


def test_upload_names_are_shown_as_text_not_markdown():
    """Issue 14, defect 9: a crafted upload or class name must not render as a link, an
    image or LaTeX in the page's messages and captions."""
    at = _data_page()
    at.radio(key="data_source").set_value("Upload").run()
    crafted = "[click](http://evil.example)![x](http://evil.example/x.png)$x$.npz"
    at.file_uploader(key="upload_file").upload(crafted, b"not a dataset", "application/zip")
    at.run()
    assert not at.exception
    shown = at.error[0].value
    assert "[click](" not in shown and "![x](" not in shown and "$x$" not in shown
    assert r"\[click\]\(http\://evil.example\)\!\[x\]" in shown  # every character kept

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, images=rng.integers(0, 256, (4, 10, 10), dtype=np.uint8),
             labels=np.arange(4) % 2, class_names=np.array(["[a](http://e)", "b_c_"]))
    at.file_uploader(key="upload_file").upload("ok.npz", buf.getvalue(), "application/zip")
    at.run()
    assert not at.exception
    captions = [img.caption for e in at.get("image") for img in e.proto.imgs]
    assert r"\[a\]\(http\://e\)" in captions and r"b\_c\_" in captions
    assert "[a](http://e)" not in captions
