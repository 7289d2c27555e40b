"""The package's process-wide stores (ptyanalysis.state): named, switchable, clearable."""

import pytest

from ptyanalysis import state
from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.pipeline.modelcache import ModelCache, shared_model_cache


def test_the_model_store_is_one_cache_and_can_be_turned_off(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"1")
    loads = []
    shared = shared_model_cache()
    assert shared is shared_model_cache() and isinstance(shared, ModelCache)
    shared.load(tmp_path / "m", loader=lambda p: loads.append(p) or object())
    shared.load(tmp_path / "m", loader=lambda p: loads.append(p) or object())
    assert len(loads) == 1 and state.describe()["models"]["entries"] >= 1
    monkeypatch.setenv(state.CACHES_ENV, "off")
    off = shared_model_cache()
    assert off is not shared and off.max_models == 0 and not state.enabled("models")
    monkeypatch.delenv(state.CACHES_ENV)
    with state.caching_disabled("models"):
        assert shared_model_cache().max_models == 0
    assert shared_model_cache() is shared
    state.clear_caches()
    assert state.describe()["models"]["entries"] == 0


def test_unknown_store_names_are_refused_with_a_hint():
    with pytest.raises(PtyAnalysisError, match="did you mean 'models'"):
        state.enabled("model")
    with pytest.raises(PtyAnalysisError, match="unknown store"):
        state.clear_caches("everything")
