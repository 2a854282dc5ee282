"""The per-device tuning cache on the suite's real tiny bundle, and backends opened with settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxr_core.bundle import load_bundle, load_golden
from cxr_core.runtime import RuntimeSettings, open_backend
from cxr_core.runtime.tuning import (
    TUNING_DIR_ENV,
    TunedChoice,
    TuningCacheError,
    cache_path,
    load_choice,
    machine_key,
    save_choice,
)
from tests.signing import resign


def _choice(model: str = "onnx-int8", **settings: object) -> TunedChoice:
    return TunedChoice(
        model=model,
        runtime="onnxruntime",
        threads=1,
        settings=RuntimeSettings(**settings),  # type: ignore[arg-type]
        p50_ms=1.5,
        golden_max_abs_dp=0.01,
        tuned_at="2026-01-01T00:00:00+00:00",
    )


def test_choice_round_trips_and_other_machines_are_kept(bundle_copy: Path, tmp_path: Path) -> None:
    bundle = load_bundle(bundle_copy, allow_untrusted=True)
    path = save_choice(bundle, _choice(optimization="extended"), tmp_path)
    data = json.loads(path.read_text())
    data["machines"]["Some ARM | aarch64 | 4 cpus"] = _choice("onnx").to_dict()
    path.write_text(json.dumps(data))
    save_choice(bundle, _choice(spinning=True), tmp_path)  # re-tune here: the other machine stays
    data = json.loads(path.read_text())
    assert set(data["machines"]) == {machine_key(), "Some ARM | aarch64 | 4 cpus"}
    loaded = load_choice(bundle, tmp_path)
    assert loaded is not None and loaded.settings == RuntimeSettings(spinning=True)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


def test_unusable_cache_is_ignored_never_fatal(bundle_copy: Path, tmp_path: Path) -> None:
    bundle = load_bundle(bundle_copy, allow_untrusted=True)
    path = cache_path(bundle, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    assert load_choice(bundle, tmp_path) is None
    save_choice(bundle, _choice(), tmp_path)
    data = json.loads(path.read_text())
    data["machines"][machine_key()]["threads"] = 0
    path.write_text(json.dumps(data))
    assert load_choice(bundle, tmp_path) is None
    data["machines"][machine_key()] = _choice("no-such-model").to_dict()
    path.write_text(json.dumps(data))
    assert load_choice(bundle, tmp_path) is None
    with pytest.raises(TuningCacheError, match="threads=0"):
        TunedChoice.from_dict({**_choice().to_dict(), "threads": 0})


def test_a_changed_bundle_does_not_use_the_old_choice(bundle_copy: Path, tmp_path: Path) -> None:
    bundle = load_bundle(bundle_copy, allow_untrusted=True)
    save_choice(bundle, _choice(), tmp_path)
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["recommended"] = {"onnxruntime": "onnx"}
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    resign(bundle_copy)
    changed = load_bundle(bundle_copy, allow_untrusted=True)
    assert load_choice(changed, tmp_path) is None  # new manifest hash: another cache file


def test_open_backend_tuned_uses_the_cache_and_settings_keep_outputs(
    bundle_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TUNING_DIR_ENV, str(tmp_path))
    bundle = load_bundle(bundle_copy, allow_untrusted=True)
    golden = load_golden(bundle)
    with open_backend(bundle, model="onnx") as plain:
        expected = plain(golden["inputs"])["probabilities"]
    save_choice(bundle, _choice("onnx", optimization="basic"))
    with open_backend(bundle, tuned=True) as tuned:
        assert tuned.model_name == "onnx"
        assert tuned.settings == RuntimeSettings(optimization="basic")  # type: ignore[attr-defined]
        got = tuned(golden["inputs"])["probabilities"]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    with open_backend(bundle, model="onnx", threads=2, settings=RuntimeSettings(spinning=True)) as spinning:
        np.testing.assert_allclose(spinning(golden["inputs"])["probabilities"], expected, atol=1e-5)
    with open_backend(bundle, tuned=False) as untuned:
        assert untuned.settings == RuntimeSettings()  # type: ignore[attr-defined]
