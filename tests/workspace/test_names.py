"""Names derived from dataset keys and model names: unique, bounded, checked before the work."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from fisher_core.data import load_builtin
from fisher_core.embeddings import pixel_embedding
from fisher_core.explore.decode import Decoder, DecoderConfig
from fisher_core.explore.decoder_io import save_decoder
from fisher_core.metrics.features import (
    DomainFeatureExtractor,
    FeatureExtractorConfig,
    save_feature_extractor,
)
from fisher_core.training import ProgressEvent
from fisher_core.workspace import (
    EntryError,
    Workspace,
    edit_scores,
    extractor_entry,
    extractor_name,
    fid_curves,
    list_models,
    load_extractor,
    train_and_save,
)
from fisher_core.workspace.store import _NAME

LONG_A = "upload:" + "a" * 73 + "-first-dataset-of-100-chars"[:20]
LONG_B = LONG_A[:80] + "b" * (len(LONG_A) - 80)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def faces():
    return load_builtin("faces", n=40, size=16, seed=0)


def _save_extractor(ws: Workspace, ds, name: str, meta: dict) -> None:
    torch.manual_seed(0)
    ext = DomainFeatureExtractor(FeatureExtractorConfig(
        channels=1, height=16, width=16, n_classes=len(ds.class_names),
        n_attributes=len(ds.attribute_names), feature_dim=4, hidden=4))
    with ws.writer("extractors", name, meta) as folder:
        save_feature_extractor(ext.eval(), folder)


@pytest.fixture
def decoded(tmp_path, faces):
    """A workspace with the pixel embedding of ``faces`` and an (untrained) decoder of it."""
    ws = Workspace(tmp_path / "ws")
    ws.save_embedding(pixel_embedding(faces, dataset_key=LONG_A), "px")
    torch.manual_seed(0)
    dec = Decoder(DecoderConfig(in_dim=256, height=16, width=16, hidden=8, base_channels=8,
                                min_channels=4))
    with ws.writer("decoders", "px", {"embedding": "px", "dataset": LONG_A}) as folder:
        save_decoder(dec.eval(), folder)
    return ws


def test_long_keys_sharing_80_characters_get_distinct_valid_names():
    assert len(LONG_A) == len(LONG_B) == 100 and LONG_A[:80] == LONG_B[:80] != LONG_A
    a, b = extractor_name(LONG_A), extractor_name(LONG_B)
    assert a != b
    for n in (a, b):
        assert _NAME.fullmatch(n) and _NAME.fullmatch(f"fid-alpha-{n}")
        assert n.startswith("upload-aaaa")  # still readable


@pytest.mark.parametrize("pair", [("builtin:faces(x=-1)", "builtin:faces(x=1)"),
                                  ("a:b", "a-b"), ("a b", "a/b"), ("data", "data.")])
def test_keys_that_clean_up_to_one_name_get_distinct_names(pair):
    names = [extractor_name(k) for k in pair]
    assert names[0] != names[1]
    assert all(_NAME.fullmatch(f"edits-{n}") for n in names)


def test_clean_short_keys_keep_their_name():
    """Keys that are valid names already keep them: existing saved results stay found."""
    assert extractor_name("k") == "k"
    assert extractor_name("faces-50_v2.1") == "faces-50_v2.1"
    assert extractor_name("") != "" and _NAME.fullmatch(extractor_name(""))
    assert extractor_name(":::") != extractor_name("::")


@pytest.mark.parametrize("name", ["name\n", "x\n", "a\r", "ok\x00"])
def test_name_pattern_matches_whole_names_only(tmp_path, name):
    ws = Workspace(tmp_path)
    with pytest.raises(EntryError, match="invalid name"):
        ws.save_result(name, {"a": 1})
    assert not (tmp_path / "results").exists()


def test_extractor_for_another_dataset_is_refused(tmp_path, faces, decoded):
    """An extractor trained on A and found under B's name (the old truncated name) is not used
    for B: load_extractor says None, the FID computation says whose it is (defect 7)."""
    ws = decoded
    legacy = re.sub(r"[^A-Za-z0-9_.\-]+", "-", LONG_B).strip("-.")[:80]  # what B would use
    _save_extractor(ws, faces, legacy, {"dataset": LONG_A})
    assert load_extractor(ws, LONG_B) is None and extractor_entry(ws, LONG_B) is None
    with pytest.raises(EntryError, match=f"was trained for dataset '{LONG_A}'"):
        fid_curves(ws, faces, LONG_B, ["px"], n_pairs=4, alphas=[0.0, 1.0])
    assert ws.names("results") == []


def test_extractor_saved_without_its_dataset_still_loads(tmp_path, faces):
    """Extractors saved before the dataset was recorded load under their (old) name."""
    ws = Workspace(tmp_path)
    _save_extractor(ws, faces, "builtin-faces", {"metrics": {}})
    assert isinstance(load_extractor(ws, "builtin:faces"), DomainFeatureExtractor)
    assert extractor_entry(ws, "builtin:faces").name == "builtin-faces"
    _save_extractor(ws, faces, "k", {"dataset": "k"})
    assert isinstance(load_extractor(ws, "k"), DomainFeatureExtractor)


def test_long_dataset_key_gives_valid_result_names(faces, decoded):
    """fid-alpha-… and edits-… of a 100-character dataset key are saved (defect 7)."""
    ws = decoded
    _save_extractor(ws, faces, extractor_name(LONG_A), {"dataset": LONG_A})
    rows = fid_curves(ws, faces, LONG_A, ["px"], n_pairs=4, alphas=[0.0, 1.0])
    assert ws.load_result(f"fid-alpha-{extractor_name(LONG_A)}")[0]["rows"] == rows
    rows = edit_scores(ws, faces, LONG_A, ["px"], attribute=faces.attribute_names[0],
                       strengths=(1.0,), n_sources=4)
    assert ws.load_result(f"edits-{extractor_name(LONG_A)}")[0]["rows"] == rows


def test_fid_fails_before_computing_when_a_space_has_no_decoder(faces, decoded, monkeypatch):
    ws = decoded
    _save_extractor(ws, faces, extractor_name(LONG_A), {"dataset": LONG_A})
    ws.save_embedding(pixel_embedding(faces, dataset_key=LONG_A), "nope")  # no decoder
    import fisher_core.metrics.evaluate as evaluate

    def boom(*args, **kwargs):
        raise AssertionError("computed before checking the names")

    monkeypatch.setattr(evaluate, "fid_vs_alpha", boom)
    with pytest.raises(ValueError, match="'nope' has no decoder; train one first"):
        fid_curves(ws, faces, LONG_A, ["px", "nope"], n_pairs=4, alphas=[0.0, 1.0])


@pytest.mark.parametrize("name", ["bad/name", "m" * 81, "name\n"])
def test_invalid_model_name_fails_before_training(tmp_path, name):
    ds = load_builtin("digits").subset(np.arange(120))
    events: list[ProgressEvent] = []
    with pytest.raises(EntryError, match="invalid name"):
        train_and_save(ds, "pixelcnn", config={"hidden": 4, "n_blocks": 1}, epochs=1,
                       workspace=Workspace(tmp_path), name=name, callback=events.append)
    assert events == []


def test_long_gan_name_gets_a_valid_best_model(tmp_path):
    """An 80-character GAN name: the model and its "-best" twin are both saved (defect 7)."""
    ws = Workspace(tmp_path)
    ds = load_builtin("digits").subset(np.arange(100))
    name = "g" * 80
    train_and_save(ds, "ebgan", config={"g_width": 4, "d_width": 4, "latent_dim": 2},
                   epochs=1, batch_size=16, workspace=ws, name=name, monitor_every=1,
                   dataset_key="d", n_samples=0)
    names = sorted(e.name for e in list_models(ws, "d"))
    assert len(names) == 2 and name in names
    best = next(n for n in names if n != name)
    assert best.endswith("-best") and best.startswith("g" * 60) and _NAME.fullmatch(best)
    assert ws.entry("models", best).meta["best_of"] == name
    # distinct long names keep distinct "-best" twins
    other = "g" * 79 + "h"
    train_and_save(ds, "ebgan", config={"g_width": 4, "d_width": 4, "latent_dim": 2},
                   epochs=1, batch_size=16, workspace=ws, name=other, monitor_every=1,
                   dataset_key="d", n_samples=0)
    assert len(list_models(ws, "d")) == 4
