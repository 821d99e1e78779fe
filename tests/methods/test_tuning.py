"""Options that tune one method (``tuning``: --finer-comparisons, --finer-alpha, --kpca-kernel, --kpca-gamma,
--fem-sigmas): each reaches its method's constructor from the CLI, the API and evaluate, enters the run's
fingerprint, and is refused in one line for a method it does not tune."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradcam_cli.errors import OptionConflict
from gradcam_cli.methods import check_tuning, get_method, tuning_for
from tests.helpers import SHAPE, run


def test_each_option_sets_its_methods_keyword_and_is_refused_elsewhere():
    assert get_method("fem", tuning={"fem_sigmas": 3.0}).sigmas == 3.0
    finer = get_method("finercam", tuning={"finer_comparisons": 2, "finer_alpha": 0.5})
    assert (finer.comparisons, finer.alpha) == (2, 0.5)
    kpca = get_method("kpcacam", tuning={"kpca_kernel": "rbf", "kpca_gamma": 0.1})
    assert (kpca.kernel, kpca.gamma) == ("rbf", 0.1)
    with pytest.raises(OptionConflict, match="fem_sigmas does not apply to gradcam; it tunes fem only"):
        get_method("gradcam", tuning={"fem_sigmas": 3.0})
    assert tuning_for("fem", {"fem_sigmas": 1.0, "finer_alpha": 0.5}) == {"fem_sigmas": 1.0}
    check_tuning(["gradcam", "fem"], {"fem_sigmas": 1.0})
    with pytest.raises(OptionConflict, match="kpca_gamma tunes kpcacam, which is not among the methods"):
        check_tuning(["gradcam", "fem"], {"kpca_gamma": 1.0})


@pytest.mark.slow
def test_fem_sigmas_from_the_cli_equals_the_api_and_moves_the_fingerprint(tmp_path):
    from gradcam_cli import explain

    plain = run("explain", SHAPE, "--model", "demo", "--method", "fem", "-o", tmp_path / "out", "--json")
    plain_map = np.load(json.loads(plain.stdout.splitlines()[0])["heatmap"])  # the tuned run rewrites the file
    tuned = run("explain", SHAPE, "--model", "demo", "--method", "fem", "--fem-sigmas", "0.5", "-o", tmp_path / "out",
                "--json")
    assert plain.exit_code == 0 and tuned.exit_code == 0, tuned.output
    plain_row, tuned_row = (json.loads(r.stdout.splitlines()[0]) for r in (plain, tuned))
    assert plain_row["config"] != tuned_row["config"] and not tuned_row.get("resumed")
    api = explain("demo", str(SHAPE), method="fem", tuning={"fem_sigmas": 0.5})
    np.testing.assert_allclose(np.load(tuned_row["heatmap"]), api.heatmaps[0, 0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(plain_map, api.heatmaps[0, 0])  # 2 sigmas mark fewer positions
    refused = run("explain", SHAPE, "--model", "demo", "--method", "gradcam", "--fem-sigmas", "3", "-o", tmp_path / "x")
    assert refused.exit_code == 2 and refused.output.count("\n") == 1 and "Traceback" not in refused.output


@pytest.mark.slow
def test_a_run_of_several_methods_hands_each_its_own_options(tmp_path):
    result = run("evaluate", SHAPE, "--model", "demo", "--methods", "gradcam,finercam", "--finer-alpha", "0.5",
                 "--metrics", "drop", "-o", tmp_path / "ev", "-q")
    assert result.exit_code == 0, result.output
    refused = run("evaluate", SHAPE, "--model", "demo", "--methods", "gradcam,center", "--finer-alpha", "0.5",
                  "--metrics", "drop", "-o", tmp_path / "ev2", "-q")
    assert refused.exit_code == 2 and "--finer-alpha tunes finercam" in refused.output
