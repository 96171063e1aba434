"""Fisher scores sharded over a 2-worker Dask LocalCluster equal the single-process run."""

from __future__ import annotations

import numpy as np
import pytest

from fisher_core.data import load_builtin
from fisher_core.embeddings import fisher_score_embedding
from fisher_core.workspace import Workspace, distributed_fisher_scores, train_and_save

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    ds = load_builtin("digits").subset(np.arange(300))
    run = train_and_save(ds, "pixelcnn", config={"hidden": 4, "n_blocks": 2, "head_hidden": 4},
                         epochs=1, workspace=ws, name="px", dataset_key="d", monitor=False)
    return ws, ds, run.model


def test_two_workers_give_the_single_process_result(saved):
    ws, ds, model = saved
    seen = []
    got = distributed_fisher_scores(ws, "px", ds.images, dim=32, n_workers=2, shard_size=64,
                                    power=0.5, l2=True, dataset_key="d",
                                    progress=lambda f, m: seen.append((f, m)))
    ref = fisher_score_embedding(model, ds.images, dim=32, power=0.5, l2=True,
                                 dataset_key="d", model_name="px")
    np.testing.assert_allclose(got.vectors, ref.vectors, rtol=1e-4, atol=1e-5)
    assert got.metadata() | {"params": {}} == ref.metadata() | {"params": {}}
    assert got.params["sharded"] == 5  # 300 rows in shards of 64, gathered in order
    assert seen[0][1] == "5 shards on 2 worker(s)" and seen[-1] == (1.0, "done")
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)


def test_what_cannot_be_sharded_is_refused(saved):
    ws, ds, _ = saved
    with pytest.raises(ValueError, match="normalize='fim_diag_exact' cannot be sharded"):
        distributed_fisher_scores(ws, "px", ds.images, normalize="fim_diag_exact")
    with pytest.raises(ValueError, match="n_workers must be a positive integer; got 0"):
        distributed_fisher_scores(ws, "px", ds.images, n_workers=0)


def test_progress_comes_from_the_workers_batch_by_batch(saved):
    ws, ds, _ = saved
    seen = []
    distributed_fisher_scores(ws, "px", ds.images[:128], dim=16, n_workers=2, shard_size=64,
                              batch_size=16, progress=lambda f, m: seen.append((f, m)))
    counts = [int(m.split("/")[0].replace(",", "")) for _, m in seen if m.endswith("examples")]
    assert counts == sorted(counts) and counts[-1] == 128
    # a count inside a shard (not a multiple of its 64 rows) was sent by a worker mid-shard
    assert any(c % 64 for c in counts), counts
