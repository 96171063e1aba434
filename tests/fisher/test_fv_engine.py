"""The Fisher-vector engine's fast paths: sparse statistics, tensors in and out, precision.

Each path is checked against an independent computation: a naive per-set NumPy loop with
the posterior threshold applied by hand, the dense path, scikit-image, the NumPy path.
"""

import numpy as np
import pytest
import torch
from skimage.feature import fisher_vector as skimage_fisher_vector
from sklearn.mixture import GaussianMixture as SkGMM

from fisher_core.fisher import (
    GaussianMixture,
    _fv_engine,
    _fv_stats,
    fisher_vector,
    gmm_parameters,
)
from fisher_core.fisher._fv_engine import _encode_all, _Model
from fisher_core.fisher.vectors import _as_sets

pytestmark = pytest.mark.usefixtures("single_torch_thread")

LENGTHS = (37, 120, 1, 64, 9, 250)


def _clustered(n: int, k: int, d: int, seed: int) -> np.ndarray:
    """Rows around k well-separated centres (fixed), far from the origin."""
    centres = np.random.default_rng(0).normal(size=(k, d)) * 4.0 + 3.0
    rng = np.random.default_rng(seed)
    return centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))


def _split(rows: np.ndarray) -> list[np.ndarray]:
    return np.split(rows, np.cumsum(LENGTHS)[:-1])


@pytest.fixture(scope="module")
def clustered():
    k, d = 6, 5
    gmm = GaussianMixture(k, random_state=0, dtype="float64").fit(_clustered(3000, k, d, 1))
    return gmm, _split(_clustered(sum(LENGTHS), k, d, 2))


@pytest.fixture(scope="module")
def unclustered():
    rng = np.random.default_rng(3)
    gmm = GaussianMixture(6, random_state=0, dtype="float64").fit(rng.normal(size=(3000, 5)))
    return gmm, _split(rng.normal(size=(sum(LENGTHS), 5)))


@pytest.fixture
def sparse_calls(monkeypatch):
    """Force the sparse statistics at any density; record whether each call used them."""
    calls = []
    sparse = _fv_stats.sparse_inputs

    def spy(*args):
        out = sparse(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(_fv_stats, "_DENSE_ABOVE", 1.0)
    monkeypatch.setattr(_fv_stats, "sparse_inputs", spy)  # statistics of long sets
    monkeypatch.setattr(_fv_engine, "sparse_inputs", spy)  # vectors of whole sets
    return calls


def _naive(x: np.ndarray, gmm, tau: float) -> np.ndarray:
    """Analytic FV of one set in float64, posteriors ≤ τ·max dropped by hand."""
    w, mu, var = gmm_parameters(gmm)
    sd = np.sqrt(var)
    log_joint = np.log(w) - 0.5 * (((x[:, None, :] - mu) / sd) ** 2
                                   + np.log(2 * np.pi * var)).sum(-1)  # (n, K)
    gamma = np.exp(log_joint - log_joint.max(1, keepdims=True))
    gamma /= gamma.sum(1, keepdims=True)
    if tau > 0:
        gamma *= gamma > tau * gamma.max(1, keepdims=True)
    n = len(x)
    z = (x[:, None, :] - mu) / sd  # (n, K, D)
    alpha = (gamma.sum(0) - n * w) / (n * np.sqrt(w))
    mean = np.einsum("tk,tkd->kd", gamma, z) / (n * np.sqrt(w)[:, None])
    sigma = np.einsum("tk,tkd->kd", gamma, z**2 - 1) / (n * np.sqrt(2 * w)[:, None])
    return np.concatenate([alpha, mean.ravel(), sigma.ravel()])


@pytest.mark.parametrize("tau", [1e-6, 1e-2, 0.3])
@pytest.mark.parametrize("data", ["clustered", "unclustered"])
def test_sparse_path_is_the_thresholded_computation(request, data, tau, sparse_calls):
    gmm, sets = request.getfixturevalue(data)
    expected = np.stack([_naive(x, gmm, tau) for x in sets])
    got = fisher_vector(sets, gmm, power=None, l2=False, dtype="float64",
                        posterior_threshold=tau, batch_size=100)
    assert sparse_calls and all(sparse_calls)  # the sparse product did the work
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("tau", [1e-6, 0.3])
def test_dense_path_applies_the_same_threshold(unclustered, tau):
    gmm, sets = unclustered  # 6 components: far denser than 1/32, so the dense product runs
    expected = np.stack([_naive(x, gmm, tau) for x in sets])
    got = fisher_vector(sets, gmm, power=None, l2=False, dtype="float64",
                        posterior_threshold=tau)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    if tau == 0.3:  # the threshold acts
        exact = np.stack([_naive(x, gmm, 0.0) for x in sets])
        assert np.abs(got - exact).max() > 1e-4


@pytest.mark.parametrize("batch_size", [None, 50, 7])
@pytest.mark.parametrize("tau", [0.0, 1e-8])
def test_ragged_and_long_sets_equal_one_at_a_time(clustered, batch_size, tau, sparse_calls):
    gmm, sets = clustered  # set of 250 rows > every batch_size but None: split into windows
    one_by_one = np.stack([fisher_vector(x, gmm, dtype="float64", posterior_threshold=tau)
                           for x in sets])
    batched = fisher_vector(sets, gmm, dtype="float64", posterior_threshold=tau,
                            batch_size=batch_size)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-10, atol=1e-13)
    assert all(sparse_calls) and (len(sparse_calls) > 0) == (tau > 0)


def test_default_threshold_matches_dense_and_scikit_image(monkeypatch):
    k, d = 40, 8  # well separated: ≈ 1 posterior pair per row, the sparse path by itself
    rng_sets = _clustered(60 * 50, k, d, 5).reshape(60, 50, d)
    sk = SkGMM(k, covariance_type="diag", random_state=0).fit(_clustered(8000, k, d, 4))
    calls = []
    sparse = _fv_stats.sparse_inputs
    monkeypatch.setattr(_fv_engine, "sparse_inputs",
                        lambda *a: calls.append(sparse(*a)) or calls[-1])
    ours = fisher_vector(rng_sets, sk)  # float32, posterior_threshold 1e-8
    assert calls and all(c is not None for c in calls)  # the compiled sparse path
    # the documented bound: the error of the float32 dense path, give or take 2×
    dense32 = fisher_vector(rng_sets, sk, posterior_threshold=0)
    exact = fisher_vector(rng_sets, sk, dtype="float64", posterior_threshold=0)
    assert np.abs(ours - exact).max() < 2 * np.abs(dense32 - exact).max()
    assert np.abs(ours - exact).max() < 2e-4 * np.abs(exact).max()
    ref = np.stack([skimage_fisher_vector(x, sk, improved=True) for x in rng_sets])
    ref[:, k + k * d :] *= -1  # scikit-image's σ block has the opposite sign
    assert np.abs(ours - ref).max() < 2 * np.abs(dense32 - ref).max()
    np.testing.assert_allclose(exact, ref, rtol=1e-9, atol=1e-12)


def test_too_dense_falls_back_with_the_same_result(unclustered, monkeypatch):
    gmm, sets = unclustered
    dense = fisher_vector(sets, gmm, dtype="float64", posterior_threshold=1e-3)
    monkeypatch.setattr(_fv_stats, "_DENSE_ABOVE", 1.0)
    sparse = fisher_vector(sets, gmm, dtype="float64", posterior_threshold=1e-3)
    np.testing.assert_allclose(sparse, dense, rtol=1e-10, atol=1e-13)


def test_nan_is_caught_on_the_sparse_path(clustered, sparse_calls):
    gmm, sets = clustered
    bad = [x.copy() for x in sets]
    bad[3][5, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values \(set 3 is the first\)"):
        fisher_vector(bad, gmm, posterior_threshold=1e-6)


# --------------------------------------------------------------------------- tensors
def test_tensor_in_tensor_out_equals_numpy(clustered):
    gmm, sets = clustered
    arrays = [x.astype(np.float32) for x in sets]
    expected = fisher_vector(arrays, gmm)
    got = fisher_vector([torch.from_numpy(x) for x in arrays], gmm)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), expected)
    cube = np.stack([x[:9] for x in arrays if len(x) >= 9])  # (S, n, D)
    got = fisher_vector(torch.from_numpy(cube), gmm, dtype="float64")
    assert got.dtype == torch.float64
    np.testing.assert_array_equal(got.numpy(), fisher_vector(cube, gmm, dtype="float64"))
    one = fisher_vector(torch.from_numpy(arrays[1]), gmm)  # one set → one vector
    assert one.shape == (6 + 2 * 6 * 5,)
    np.testing.assert_array_equal(one.numpy(), expected[1])


def test_output_option_overrides_the_input_kind(clustered):
    gmm, sets = clustered
    expected = fisher_vector(sets, gmm)
    as_tensor = fisher_vector(sets, gmm, output="torch")
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.device.type == "cpu"
    np.testing.assert_array_equal(as_tensor.numpy(), expected)
    tensors = [torch.from_numpy(x) for x in sets]  # float64 tensors, cast on the device
    as_array = fisher_vector(tensors, gmm, output="numpy")
    assert isinstance(as_array, np.ndarray)
    np.testing.assert_array_equal(as_array, expected)


def test_integer_and_half_tensors_are_cast(clustered):
    gmm, _ = clustered
    x = np.random.default_rng(0).integers(-3, 12, size=(40, 5))
    expected = fisher_vector(x.astype(np.float32), gmm)
    for tensor in (torch.from_numpy(x), torch.from_numpy(x).half()):
        np.testing.assert_allclose(fisher_vector(tensor, gmm).numpy(), expected, rtol=1e-6,
                                   atol=1e-7)


def test_far_from_origin_is_centred_for_every_source():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(2000, 3)) + 1e3  # centring needed for the float32 x² expansion
    gmm = GaussianMixture(2, random_state=0, dtype="float64").fit(train)
    x = rng.normal(size=(50, 3)) + 1e3
    exact = fisher_vector(x, gmm, dtype="float64", posterior_threshold=0)
    for source in (x, x.astype(np.float32), torch.from_numpy(x)):
        got = fisher_vector(source, gmm, output="numpy")
        np.testing.assert_allclose(got, exact, atol=2e-4 * np.abs(exact).max())


def test_reduced_precision_costs_what_the_docstring_says(clustered):
    # components far from the data centre: the σ block's cancellation S2·p + S1·q + S0·r
    # made plain bfloat16 statistics 84 % wrong here before γ was rounded once for all three
    gmm, sets = clustered
    exact = fisher_vector(sets, gmm, dtype="float64", posterior_threshold=0)
    scale = np.abs(exact).max()
    low = fisher_vector(sets, gmm, precision="bf16")
    assert 1e-4 < np.abs(low - exact).max() / scale < 5.4e-3  # documented, clustered data
    model = _Model(gmm, "analytic", torch.float32, torch.device("cpu"), precision="tf32")
    flat, lengths, _ = _as_sets(sets, 5)  # TF32 is CUDA-only: its rounding, emulated
    tf32 = _encode_all(model, flat, lengths, 0.5, True, None)
    assert 1e-5 < np.abs(tf32 - exact).max() / scale < 1.7e-3


def test_tf32_rounding_keeps_ten_mantissa_bits():
    x = torch.from_numpy(np.random.default_rng(0).normal(size=1000).astype(np.float32))
    x[:3] = torch.tensor([1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-11 + 2**-20])  # ties, above
    r = _fv_stats._round_tf32(x)
    assert not (r.view(torch.int32) & 0x1FFF).any()  # the 13 low mantissa bits are zero
    assert torch.all((r - x).abs() <= x.abs() * 2**-11)
    assert r[:3].tolist() == [1.0, 1 + 4 * 2**-11, 1 + 2 * 2**-11]  # to nearest, ties to even


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"posterior_threshold": -0.1}, ValueError, r"posterior_threshold must be None or a "
         r"float in \[0, 1\) \(0: dense and exact\), got -0.1"),
        ({"posterior_threshold": 1.0}, ValueError, r"posterior_threshold must be .* got 1.0"),
        ({"posterior_threshold": True}, ValueError, r"posterior_threshold must be .* got True"),
        ({"precision": "fp16"}, ValueError,
         r"precision must be one of \['highest', 'tf32', 'bf16'\], got 'fp16'"),
        ({"precision": "tf32"}, ValueError,
         r"precision='tf32' is a CUDA mode .* the working device is 'cpu'; use 'highest' or "
         r"'bf16' there"),
        ({"precision": "bf16", "dtype": "float64"}, ValueError,
         r"precision='bf16' needs dtype='float32'"),
        ({"output": "list"}, ValueError, r"output must be None, 'numpy' or 'torch', got 'list'"),
    ],
)
def test_bad_engine_options_raise(clustered, kwargs, error, match):
    gmm, sets = clustered
    with pytest.raises(error, match=match):
        fisher_vector(sets, gmm, **kwargs)


def test_bad_tensor_inputs_raise(clustered):
    gmm, sets = clustered
    x = torch.from_numpy(sets[0])
    with pytest.raises(ValueError, match=r"all sets must be on one device, got \['cpu', "
                                         r"'meta'\]; move them to one device first"):
        fisher_vector([x, torch.empty(3, 5, device="meta")], gmm)
    with pytest.raises(TypeError, match=r"descriptors must be real numbers, got dtype "
                                        r"torch.complex64"):
        fisher_vector(torch.zeros(4, 5, dtype=torch.complex64), gmm)
    with pytest.raises(ValueError, match=r"descriptors must be one \(n, D\) set, an \(S, n, "
                                         r"D\) array .* got an array of shape \(1, 2, 3, 5\)"):
        fisher_vector(torch.zeros(1, 2, 3, 5), gmm)
    with pytest.raises(ValueError, match=r"each set of descriptors must be a 2-D \(n_i, D\) "
                                         r"array; set 1 has shape \(5,\)"):
        fisher_vector([x, torch.zeros(5)], gmm)
    with pytest.raises(ValueError, match=r"all sets must have the same D, got D values "
                                         r"\[4, 5\]"):
        fisher_vector([x, torch.zeros(3, 4)], gmm)
    with pytest.raises(ValueError, match=r"set 1 has no descriptors"):
        fisher_vector([x, torch.zeros(0, 5)], gmm)
