"""Data-parallel training on torch.distributed (gloo, 2 CPU processes) equals one process."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from skdcgmm import DeepConvGMM

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed/gloo"
)


def _data():
    rng = np.random.RandomState(0)
    X = rng.rand(240, 36) * 0.2
    X[:120, :18] += 0.7  # two kinds of 6x6 images
    return X


def _params(**kw):
    return {"n_components": 3, "max_iter": 4, "batch_size": 25, "random_state": 0, **kw}


def _worker(rank, world, init_file, out_dir, params, rows):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        X = _data()[: rows[rank]]
        model = DeepConvGMM(**params)
        if rank == 1:  # a different seed: rank 0's initialisation and order must win
            model.set_params(random_state=params["random_state"] + 1)
        model.fit(X)
        np.savez(
            os.path.join(out_dir, f"rank{rank}.npz"),
            means=model.means_,
            loss=np.asarray(model.loss_curve_),
            scores=model.score_samples(X),
        )
    except Exception as exc:  # reported to the test, which shows it
        np.save(os.path.join(out_dir, f"error{rank}.npy"), np.array(f"{type(exc).__name__}: {exc}"))
    finally:
        dist.barrier()  # no rank leaves while the other still talks to it
        dist.destroy_process_group()


def _spawn(tmp_path, params, rows=(240, 240)):
    try:
        mp.spawn(
            _worker,
            args=(2, str(tmp_path / "init"), str(tmp_path), params, rows),
            nprocs=2,
            join=True,
        )
    except mp.ProcessExitedException:
        # Rarely (seen 2 in ~20 runs) gloo aborts a process while the group is torn down,
        # after the ranks wrote their results; only a crash before that fails the test.
        written = list(tmp_path.glob("rank*.npz")) + list(tmp_path.glob("error*.npy"))
        if len(written) < 2:
            raise


@pytest.mark.parametrize(
    "params",
    [_params(layers="flat"), _params(layers="auto", batch_size=24)],
    ids=["flat", "deep"],
)
def test_two_processes_give_the_single_process_model(tmp_path, params):
    _spawn(tmp_path, params)
    errors = [str(np.load(p)) for p in sorted(tmp_path.glob("error*.npy"))]
    assert not errors, errors
    single = DeepConvGMM(**params).fit(_data())
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    for result in ranks:  # every rank ends with the same model, equal to one process's
        np.testing.assert_allclose(result["means"], single.means_, rtol=0, atol=1e-4)
        np.testing.assert_allclose(result["loss"], single.loss_curve_, rtol=1e-4)
        np.testing.assert_allclose(result["scores"], single.score_samples(_data()), atol=1e-3)
    np.testing.assert_array_equal(ranks[0]["means"], ranks[1]["means"])


def test_different_data_on_the_ranks_is_refused(tmp_path):
    _spawn(tmp_path, _params(layers="flat"), rows=(240, 200))
    for rank in (0, 1):
        message = str(np.load(tmp_path / f"error{rank}.npy"))
        assert "same data on every rank" in message
