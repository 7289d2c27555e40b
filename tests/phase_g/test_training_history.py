"""Training histories (Lightning metrics.csv, history.json in both forms, ptyanalysis params.json) and the verdict."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

import ptyanalysis.training_history as T
from ptyanalysis.errors import PtyAnalysisError

DATA = Path(__file__).parent / "data"
_spec = importlib.util.spec_from_file_location("ptychopinn_study_fixture", DATA / "ptychopinn_study_fixture.py")
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)


def test_a_real_lightning_csvlogger_file_is_read_per_epoch():
    """A metrics.csv written by lightning 2.6.6's CSVLogger (PtychoPINN's log names, manual optimisation)."""
    h = T.read_training_history(DATA / "lightning_csvlogger_2.6.6_metrics.csv")
    assert h.format == "lightning_csv" and h.history_form == "lightning"
    tr, va = h.train_loss(), h.val_loss()
    assert tr.name == "poisson_train_Amp_loss_epoch" and va.name == "poisson_val_Amp_loss"
    assert list(tr.x) == [0, 1, 2, 3] == list(va.x)  # one value per epoch despite the interleaved empty cells
    assert np.isclose(tr.values[0], 2.033635377883911) and np.isclose(va.values[-1], 0.05791418)
    step = h.series["poisson_train_Amp_loss_step"]
    assert step.per == "step" and list(step.x[:3]) == [9, 19, 29]
    assert h.series["learning_rate"].role == "other"
    rep = T.judge_histories([h.path])
    assert rep.under_trained is True and rep.verdicts[0].series == tr.name


def test_lightning_rows_as_ptychopinn_logs_them(tmp_path):
    rows = F.lightning_rows([1.0, 0.5, 0.4, 0.39, 0.39, 0.39], [1.1, 0.6, 0.5, 0.5, 0.5, 0.5],
                            loss_name="mae_train_Phase_loss", val_name="mae_val_Phase_loss")
    rows[-1]["mae_train_Phase_loss_epoch"] = float("nan")  # a NaN loss is written as 'nan'
    p = F.write_lightning_csv(tmp_path / "lightning_logs" / "version_0" / "metrics.csv", rows)
    assert "nan" in p.read_text() and ",," in p.read_text()
    h = T.read_lightning_metrics(p)
    tr = h.train_loss()
    assert tr.name == "mae_train_Phase_loss_epoch" and len(tr.values) == 6 and math.isnan(tr.values[-1])
    v = T.loss_still_falling(tr)
    assert v.n_epochs == 5 and v.still_falling is False  # the NaN epoch is left out; flat before it


def test_history_json_keras_form(tmp_path):
    p = tmp_path / "history.json"
    p.write_text(json.dumps(F.keras_history([1.0, 0.7, 0.5, 0.35, 0.25], [1.2, 0.8, 0.6, 0.5, 0.4]), indent=2))
    h = T.read_training_history(p)
    assert h.history_form == "keras" and h.train_loss().name == "loss" and h.val_loss().name == "val_loss"
    assert "intensity_scaler_inv_loss" in h.series and list(h.train_loss().x) == [0, 1, 2, 3, 4]
    rep = T.judge_histories([p])
    assert rep.under_trained is True and [v.series for v in rep.verdicts] == ["loss", "val_loss"]


def test_history_json_torch_runner_form(tmp_path):
    p = tmp_path / "history.json"
    # the loss callback also records Lightning's sanity-check validation: one val value more than train
    p.write_text(json.dumps({"train_loss": [3.0, 2.0, 1.9, 1.9, 1.9], "val_loss": [5.0, 3.1, 2.1, 2.0, 2.0, 2.0]}))
    h = T.read_training_history(p)
    assert h.history_form == "torch_runner" and list(h.val_loss().values) == [3.1, 2.1, 2.0, 2.0, 2.0]
    assert any("sanity-check" in n for n in h.notes)
    assert T.judge_histories([p]).under_trained is False
    p.write_text(json.dumps({"train_loss": [3.0, 2.0], "val_loss": None}))
    h = T.read_training_history(p)
    assert h.val_loss() is None and any("'val_loss' is null" in n for n in h.notes)


def test_ptyanalysis_params_json(tmp_path):
    p = tmp_path / "params.json"
    p.write_text(json.dumps({"arm": "Baseline", "training": {"epochs": 5, "loss": [0.9, 0.6, 0.48, 0.43, 0.37]}}))
    h = T.read_training_history(p)
    assert h.format == "ptyanalysis_params" and T.judge_histories([p]).under_trained is True
    assert T.find_training_histories(tmp_path)[0] == [p]


def test_find_reads_the_newest_lightning_version(tmp_path):
    for v in (0, 1, 10):
        F.write_lightning_csv(tmp_path / "lightning_logs" / f"version_{v}" / "metrics.csv", F.lightning_rows([1, 0.5], [1, 0.5]))
    (tmp_path / "history.json").write_text("{}")
    paths, notes = T.find_training_histories(tmp_path)
    assert paths == [tmp_path / "history.json", tmp_path / "lightning_logs" / "version_10" / "metrics.csv"]
    assert "2 older version(s)" in notes[0]


def _s(values):
    return T.LossSeries("loss", np.arange(len(values), dtype=float), np.asarray(values, float), "epoch", "train")


def test_verdict_rule_and_its_thresholds():
    rng = np.random.default_rng(0)
    converged = 1 + np.exp(-np.arange(100) / 8)
    assert T.loss_still_falling(_s(converged)).still_falling is False
    falling = 1 + np.exp(-np.arange(100) / 60)
    v = T.loss_still_falling(_s(falling))
    assert v.still_falling is True and v.tail_epochs == 20 and "still falling" in v.message
    noisy_flat = 1 + 0.05 * rng.standard_normal(50)
    assert T.loss_still_falling(_s(noisy_flat)).still_falling is False
    # offset- and sign-invariant (a Poisson NLL is negative)
    assert T.loss_still_falling(_s(falling - 10)).still_falling is True
    assert T.loss_still_falling(_s([0.5])).still_falling is None
    assert T.loss_still_falling(_s([0.5, 0.4])).still_falling is True  # 2 points: the range test alone
    # thresholds are keywords
    assert T.loss_still_falling(_s(falling), min_drop=0.5).still_falling is False
    assert T.loss_still_falling(_s(converged), tail_fraction=1.0).still_falling is True
    assert "20%" in T.rule_text()
    with pytest.raises(PtyAnalysisError, match="tail_fraction"):
        T.loss_still_falling(_s(falling), tail_fraction=0)


def test_bad_history_files_name_file_and_key(tmp_path):
    p = tmp_path / "history.json"
    p.write_text('{"loss": [1.0, "abc"]}')
    with pytest.raises(PtyAnalysisError, match=r"history\.json: key 'loss', item 1: expected a number"):
        T.read_training_history(p)
    p.write_text("[1, 2]")
    with pytest.raises(PtyAnalysisError, match="expected a JSON object of per-epoch lists"):
        T.read_training_history(p)
    c = tmp_path / "metrics.csv"
    c.write_text("step,loss\n0,1.0\n")
    with pytest.raises(PtyAnalysisError, match=r"metrics\.csv: no 'epoch' column"):
        T.read_training_history(c)
    c.write_text("epoch,loss,step\n0,x,1\n")
    with pytest.raises(PtyAnalysisError, match=r"row 2, column 'loss': expected a number"):
        T.read_training_history(c)
    q = tmp_path / "params.json"
    q.write_text('{"arm": "Baseline"}')
    with pytest.raises(PtyAnalysisError, match="training.loss"):
        T.read_training_history(q)
    rep = T.judge_histories([q, p])  # a bad file is a note, the others are still judged
    assert rep.under_trained is None and len(rep.notes) == 2
