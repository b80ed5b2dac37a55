"""The demo, ``python -m skdcgmm``: runs offline, prints the table and writes the PNG."""

import numpy as np
import pytest

from skdcgmm.__main__ import main


def test_demo_prints_a_table_and_writes_samples(tmp_path, capsys):
    out = tmp_path / "samples.png"
    results = main(["--max-iter", "3", "--n-components", "5", "--output", str(out)])
    assert set(results) == {
        "DeepConvGMM (deep, auto)",
        "DeepConvGMM (flat, SGD)",
        "GaussianMixture (diag, EM)",
    }
    for name, row in results.items():
        assert 0 <= row["accuracy"] <= 1 and -1 <= row["ari"] <= 1 and row["fit_seconds"] > 0
        assert np.isnan(row["test_log_likelihood"]) == ("deep" in name)
    printed = capsys.readouterr().out
    assert "GaussianMixture (diag, EM)" in printed and "Wrote" in printed
    assert out.read_bytes()[1:4] == b"PNG"
    plt = pytest.importorskip("matplotlib.pyplot")
    assert plt.imread(out).shape[:2] == (44, 140)  # three 5x5 grids of 8x8 digits
