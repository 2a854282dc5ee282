"""A bundle cannot be forged without detection and never reads outside itself (issue 15, item 3).

Real bundles exported by cxr-export (the suite's ``session_bundle``, signed by the suite's trusted
key, see tests/conftest.py), real Ed25519 signatures, real ONNX Runtime.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from cxr_core.bundle import BundleError, BundleIntegrityError, load_bundle, sha256_file
from cxr_core.bundle.signing import (
    SIGNATURE_NAME,
    BundleSignatureError,
    BundleUnsignedError,
    BundleUntrustedKeyError,
    generate_key,
    sign_manifest,
)
from cxr_core.keys_cli import main as keys_main
from cxr_core.predict_cli import main as predict_main
from cxr_core.predictor import Predictor
from quantize.cli import main as export_main
from tests.cxr_core.test_input_gate import chest
from tests.file_factory import write_png
from tests.signing import resign


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _write(bundle: Path, manifest: dict) -> None:
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _rehash(bundle: Path, name: str) -> None:
    """Record ``name``'s new sha256 in the manifest, as a forger would (no re-signing)."""
    manifest = _manifest(bundle)
    digest = sha256_file(bundle / name)
    manifest["files"][name]["sha256"] = digest
    for model in manifest["models"]:
        if model["file"] == name:
            model["sha256"] = digest
    _write(bundle, manifest)


# ----------------------------------------------------------------------------- signature and trust


def test_a_signed_bundle_from_a_trusted_key_loads(session_bundle: Path, suite_keys: str) -> None:
    bundle = load_bundle(session_bundle)
    assert bundle.trust is not None and bundle.trust.trusted
    assert bundle.trust.key_id == suite_keys
    assert json.loads((session_bundle / SIGNATURE_NAME).read_text())["key_id"] == suite_keys


def test_an_unsigned_bundle_is_refused_naming_the_remedy(bundle_copy: Path) -> None:
    (bundle_copy / SIGNATURE_NAME).unlink()
    with pytest.raises(BundleUnsignedError, match="not signed") as caught:
        load_bundle(bundle_copy)
    assert "--allow-untrusted" in str(caught.value) and "cxr-keys trust" in str(caught.value)
    with pytest.raises(BundleUnsignedError):
        Predictor.load(bundle_copy, threads=1)
    assert load_bundle(bundle_copy, allow_untrusted=True).trust.state == "unsigned"


def test_a_bundle_signed_by_an_untrusted_key_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    other = generate_key(tmp_path / "other" / "key.pem")
    kid = sign_manifest(bundle_copy, key_path=other)
    with pytest.raises(BundleUntrustedKeyError, match=f"signed by key {kid}, which is not among the trusted"):
        load_bundle(bundle_copy)
    status = load_bundle(bundle_copy, allow_untrusted=True).trust
    assert (status.state, status.key_id) == ("untrusted", kid)
    assert f"UNTRUSTED key {kid}" in status.describe()


def test_a_forged_classifier_with_its_hash_rewritten_is_detected(bundle_copy: Path) -> None:
    """The fuzzing finding: bias +8 and the manifest's sha256 rewritten used to be scored."""
    path = bundle_copy / "classifier.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["bias"] = arrays["bias"] + 8.0
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    _rehash(bundle_copy, "classifier.npz")
    with pytest.raises(BundleSignatureError, match="does not match its signature"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(operating_points=[0.01] * len(m["labels"])),
        lambda m: m["models"][0].update(sha256="0" * 64),
        lambda m: m.update(labels=list(reversed(m["labels"]))),
        lambda m: m.update(extra_field=1),
    ],
    ids=["operating-points", "model-hash", "label-order", "added-field"],
)
def test_any_manifest_edit_after_signing_is_refused(bundle_copy: Path, edit) -> None:
    manifest = _manifest(bundle_copy)
    edit(manifest)
    _write(bundle_copy, manifest)
    with pytest.raises(BundleError):  # the signature (or an earlier consistency check) refuses it
        load_bundle(bundle_copy)
    with pytest.raises(BundleError):
        Predictor.load(bundle_copy, threads=1)


def test_whitespace_only_edit_breaks_the_signature_too(bundle_copy: Path) -> None:
    """The signature covers the exact bytes: no canonicalisation a forger could exploit."""
    path = bundle_copy / "manifest.json"
    path.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(BundleSignatureError):
        load_bundle(bundle_copy)


def test_a_damaged_signature_file_is_an_invalid_signature(bundle_copy: Path) -> None:
    (bundle_copy / SIGNATURE_NAME).write_text("{not json")
    with pytest.raises(BundleSignatureError, match="unreadable"):
        load_bundle(bundle_copy)
    assert load_bundle(bundle_copy, allow_untrusted=True).trust.state == "invalid"


def test_a_cached_trusted_bundle_is_refused_once_its_key_is_removed(
    bundle_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Predictor.load(bundle_copy, threads=1).close()
    monkeypatch.setenv("CXR_EDGE_TRUSTED_KEYS", str(tmp_path / "empty"))
    with pytest.raises(BundleUntrustedKeyError):
        Predictor.load(bundle_copy, threads=1)


def test_opt_in_shows_the_trust_status_in_cxr_predict_json_and_table(
    bundle_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (bundle_copy / SIGNATURE_NAME).unlink()
    image = write_png(tmp_path / "a.png", chest(320, 288))
    code = predict_main([str(image), "--bundle", str(bundle_copy), "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 2 and "not signed" in err and "--allow-untrusted" in err
    out_json = tmp_path / "out.json"
    base = [str(image), "--bundle", str(bundle_copy), "--threads", "1", "--allow-untrusted"]
    code = predict_main([*base, "--json", str(out_json)])
    out, err = capsys.readouterr()
    assert code == 0
    assert "bundle trust: UNSIGNED bundle (loaded with --allow-untrusted)" in out  # the table
    document = json.loads(out_json.read_text())
    assert document["bundle_trust"]["state"] == "unsigned"
    assert any(w.startswith("bundle trust: UNSIGNED") for w in document["results"][0]["warnings"])


def test_a_trusted_bundle_says_so_in_the_json(
    session_bundle: Path, tmp_path: Path, suite_keys: str, capsys: pytest.CaptureFixture[str]
) -> None:
    image = write_png(tmp_path / "a.png", chest(320, 288))
    assert predict_main([str(image), "--bundle", str(session_bundle), "--threads", "1", "--json", "-"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["bundle_trust"] == {
        "state": "trusted",
        "key_id": suite_keys,
        "description": f"signed by trusted key {suite_keys}",
    }
    assert not any("bundle trust" in w for w in document["results"][0]["warnings"])


def test_cxr_keys_creates_trusts_signs_and_checks(
    bundle_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kiosk's trust list: a fresh device trusts nothing until the exporter's .pub is installed."""
    monkeypatch.setenv("CXR_EDGE_KEY_DIR", str(tmp_path / "exporter"))
    monkeypatch.setenv("CXR_EDGE_TRUSTED_KEYS", str(tmp_path / "device-trust"))
    assert keys_main(["new"]) == 0
    assert keys_main(["sign", str(bundle_copy)]) == 0
    assert keys_main(["check", str(bundle_copy)]) == 1
    with pytest.raises(BundleUntrustedKeyError):
        load_bundle(bundle_copy)
    pub = tmp_path / "exporter" / "signing-key.pub"
    assert keys_main(["trust", str(pub)]) == 0
    assert keys_main(["check", str(bundle_copy)]) == 0
    assert keys_main(["list"]) == 0
    out = capsys.readouterr().out
    kid = pub.read_text().split()[2]
    assert f"signed by trusted key {kid}" in out and "1 trusted key(s)" in out
    assert load_bundle(bundle_copy).trust.key_id == kid
    assert oct((tmp_path / "exporter" / "signing-key.pem").stat().st_mode & 0o777) == "0o600"
    assert keys_main(["new"]) == 2  # never overwrites a signing key silently
    assert keys_main(["trust", str(bundle_copy / "manifest.json")]) == 2


def test_cxr_export_verify_refuses_unsigned_unless_opted_in(
    bundle_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (bundle_copy / SIGNATURE_NAME).unlink()
    assert export_main(["verify", str(bundle_copy), "--skip-golden"]) == 2
    assert "not signed" in capsys.readouterr().err
    assert export_main(["verify", str(bundle_copy), "--skip-golden", "--allow-untrusted"]) == 0
    assert "UNSIGNED bundle" in capsys.readouterr().out


# ----------------------------------------------------------------------------- staying inside the bundle


def test_a_symlinked_model_outside_the_bundle_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.onnx"
    (bundle_copy / "model.onnx").rename(outside)
    os.symlink(outside, bundle_copy / "model.onnx")  # same bytes, same hash: only the link gives it away
    with pytest.raises(BundleError, match="model.onnx is a symbolic link"):
        load_bundle(bundle_copy)


def test_a_symlinked_folder_inside_the_bundle_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    """Any link is refused, even one that stays inside (the rule is simple: regular files only)."""
    (bundle_copy / "sub").mkdir()
    (bundle_copy / "golden.npz").rename(bundle_copy / "sub" / "golden.npz")
    os.symlink("sub", bundle_copy / "link")
    manifest = _manifest(bundle_copy)
    manifest["files"]["link/golden.npz"] = manifest["files"].pop("golden.npz")
    manifest["golden"]["file"] = "link/golden.npz"
    _write(bundle_copy, manifest)
    resign(bundle_copy)
    with pytest.raises(BundleError, match="link is a symbolic link"):
        load_bundle(bundle_copy)


def test_a_link_to_the_bundle_folder_itself_is_fine(session_bundle: Path, tmp_path: Path) -> None:
    os.symlink(session_bundle, tmp_path / "current")
    assert load_bundle(tmp_path / "current").trust.trusted


@pytest.mark.parametrize("field", ["golden", "cam"])
@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "a/../../x.npz", "./x.npz"])
def test_golden_and_cam_files_cannot_leave_the_bundle(bundle_copy: Path, field: str, name: str) -> None:
    manifest = _manifest(bundle_copy)
    manifest[field]["file"] = name
    _write(bundle_copy, manifest)
    resign(bundle_copy)
    with pytest.raises(BundleError, match=rf"{field}\.file: file name .* leaves the bundle"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(("field", "source"), [("golden", "golden.npz"), ("cam", "classifier.npz")])
def test_golden_and_cam_files_must_be_listed_and_hashed(bundle_copy: Path, field: str, source: str) -> None:
    """An unlisted file (so never hash-checked) named by golden.file / cam.file is refused."""
    (bundle_copy / "unlisted.npz").write_bytes((bundle_copy / source).read_bytes())
    manifest = _manifest(bundle_copy)
    manifest[field]["file"] = "unlisted.npz"
    _write(bundle_copy, manifest)
    resign(bundle_copy)
    with pytest.raises(BundleIntegrityError, match=rf"{field}\.file 'unlisted.npz' is in the bundle but not"):
        load_bundle(bundle_copy)
    (bundle_copy / "unlisted.npz").unlink()  # absent: loads, but using it is refused
    bundle = load_bundle(bundle_copy)
    from cxr_core.bundle import load_cam_weights, load_golden

    with pytest.raises(BundleIntegrityError, match="is not listed under 'files'"):
        (load_golden if field == "golden" else load_cam_weights)(bundle)


# ----------------------------------------------------------------------------- verify and non-finite values


def _nan_golden(bundle: Path) -> None:
    path = bundle / "golden.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["probabilities"][0, 0] = np.nan
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    manifest = _manifest(bundle)
    manifest["files"]["golden.npz"]["sha256"] = sha256_file(path)
    _write(bundle, manifest)


def _nan_tolerance(bundle: Path) -> None:
    manifest = _manifest(bundle)
    manifest["models"][0]["golden_tolerance"]["max_abs_dp"] = math.nan
    _write(bundle, manifest)


def _nan_point(bundle: Path) -> None:
    manifest = _manifest(bundle)
    manifest["operating_points"][0] = math.nan
    _write(bundle, manifest)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_nan_golden, "non-finite values"),
        (_nan_tolerance, r"golden_tolerance\.max_abs_dp: got nan; expected a finite number"),
        (_nan_point, r"operating_points\[0\]: got nan; expected a finite number"),
    ],
    ids=["nan-golden-output", "nan-tolerance", "nan-operating-point"],
)
def test_cxr_export_verify_fails_on_non_finite_values(
    bundle_copy: Path, damage, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    damage(bundle_copy)
    resign(bundle_copy)  # signed by the exporter: only the values are wrong
    assert export_main(["verify", str(bundle_copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cxr-export: error:")
    import re

    assert re.search(reason, err), err


def test_without_cryptography_a_signed_bundle_is_refused_unless_opted_in(
    bundle_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device without the package (e.g. an Android build) fails closed, and says why."""
    import sys

    from cxr_core.bundle.signing import BundleTrustError

    for name in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(BundleTrustError, match="cannot be checked here.*cryptography"):
        load_bundle(bundle_copy)
    status = load_bundle(bundle_copy, allow_untrusted=True).trust
    assert status.state == "unchecked" and "NOT CHECKED" in status.describe()


# ----------------------------------------------------------------------------- damaged array files


def _replace_signed(bundle: Path, name: str, data: bytes) -> None:
    """Replace ``name`` with ``data``, record its hash and re-sign: an exporter that published a bad file."""
    (bundle / name).write_bytes(data)
    _rehash(bundle, name)
    resign(bundle)


@pytest.mark.parametrize("name", ["classifier.npz", "golden.npz"])
def test_cxr_export_verify_refuses_a_cut_array_file(
    bundle_copy: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify used to pass a cut classifier.npz (it only hashed it) and crash on a cut golden.npz."""
    data = (bundle_copy / name).read_bytes()
    _replace_signed(bundle_copy, name, data[: len(data) // 2])
    for flags in ([], ["--skip-golden"]):
        assert export_main(["verify", str(bundle_copy), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cxr-export: error:") and f"{bundle_copy / name}" in err
        assert "is not a readable .npz archive" in err and "Traceback" not in err


def test_cxr_predict_refuses_a_cut_classifier_as_an_unusable_bundle(
    bundle_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 (a refused bundle) naming the file, where it used to be exit 4 (BadZipFile, a 'bug')."""
    data = (bundle_copy / "classifier.npz").read_bytes()
    _replace_signed(bundle_copy, "classifier.npz", data[: len(data) // 2])
    image = write_png(tmp_path / "a.png", chest(320, 288))
    assert predict_main([str(image), "--bundle", str(bundle_copy), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "classifier.npz" in err and "not a readable .npz archive" in err and "Traceback" not in err


def test_nan_cam_weights_are_refused_by_verify_and_the_predictor(
    bundle_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NaN classifier weights used to verify and then draw a blank heat map without a word."""
    with np.load(bundle_copy / "classifier.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["weight"] = np.full_like(arrays["weight"], np.nan)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _replace_signed(bundle_copy, "classifier.npz", buffer.getvalue())
    assert export_main(["verify", str(bundle_copy), "--skip-golden"]) == 2
    err = capsys.readouterr().err
    assert "classifier.npz: array 'weight' holds" in err and "non-finite values" in err
    with pytest.raises(BundleError, match=r"classifier\.npz: array 'weight' holds \d+ non-finite"):
        Predictor.load(bundle_copy, threads=1)


def test_cxr_export_verify_reports_the_array_files_it_read(
    session_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export_main(["verify", str(session_bundle), "--skip-golden", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arrays"] == ["classifier.npz", "golden.npz"]


# ----------------------------------------------------------------------------- cxr-keys errors


def test_cxr_keys_trust_never_echoes_a_private_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The error used to quote the first 60 characters of the file: 8 of the 32 secret seed bytes."""
    private = generate_key(tmp_path / "k" / "signing-key.pem")
    body = "".join(private.read_text().splitlines()[1:-1])
    assert keys_main(["trust", str(private), "--trusted-dir", str(tmp_path / "td")]) == 2
    err = capsys.readouterr().err
    assert f"{private}: this is a private key; trust the .pub file instead" in err
    assert body[:8] not in err and "BEGIN" not in err
    assert not (tmp_path / "td").exists()
    (tmp_path / "notes.txt").write_text("secret words here\nmore\n")
    assert keys_main(["trust", str(tmp_path / "notes.txt"), "--trusted-dir", str(tmp_path / "td")]) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "secret" not in err and "expected a .pub file" in err


def test_cxr_keys_refuses_a_trusted_key_path_that_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """trust used to end in a FileExistsError traceback, list in '0 trusted key(s)' without a word."""
    pub = generate_key(tmp_path / "k" / "signing-key.pem").with_suffix(".pub")
    (tmp_path / "tdfile").write_text("")
    assert keys_main(["trust", str(pub), "--trusted-dir", str(tmp_path / "tdfile")]) == 2
    assert "tdfile is a file, not a folder; expected a folder of .pub files" in capsys.readouterr().err
    monkeypatch.setenv("CXR_EDGE_TRUSTED_KEYS", str(tmp_path / "tdfile"))
    assert keys_main(["list"]) == 2
    out, err = capsys.readouterr()
    assert "trusted key(s)" not in out and "tdfile is a file, not a folder" in err
    monkeypatch.setenv("CXR_EDGE_TRUSTED_KEYS", str(tmp_path / "fresh"))
    assert keys_main(["list"]) == 0
    assert "0 trusted key(s)" in capsys.readouterr().out and not (tmp_path / "fresh").exists()


def test_cxr_keys_sign_refuses_what_is_not_a_valid_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing bundle or manifest used to be a FileNotFoundError traceback; non-JSON was signed."""
    key = generate_key(tmp_path / "k" / "signing-key.pem")
    assert keys_main(["sign", str(tmp_path / "nowhere"), "--key", str(key)]) == 2
    assert "does not exist or is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert keys_main(["sign", str(tmp_path / "empty"), "--key", str(key)]) == 2
    assert "has no manifest.json" in capsys.readouterr().err
    (tmp_path / "empty" / "manifest.json").write_text('{"trunc\n')
    assert keys_main(["sign", str(tmp_path / "empty"), "--key", str(key)]) == 2
    assert "manifest.json is not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "empty" / SIGNATURE_NAME).exists()


def test_cxr_keys_sign_refuses_a_manifest_the_schema_refuses(
    bundle_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(bundle_copy)
    manifest["labels"][1] = manifest["labels"][0]
    _write(bundle_copy, manifest)
    before = (bundle_copy / SIGNATURE_NAME).read_bytes()
    assert keys_main(["sign", str(bundle_copy)]) == 2
    assert "appear more than once" in capsys.readouterr().err
    assert (bundle_copy / SIGNATURE_NAME).read_bytes() == before


def test_cxr_keys_sign_replaces_the_signature_atomically(bundle_copy: Path, tmp_path: Path) -> None:
    """manifest.sig is written beside and renamed into place: a hard-linked copy of the bundle (cp -al)
    keeps its own signature, where a write in place changed both."""
    snapshot = tmp_path / "snapshot.sig"
    os.link(bundle_copy / SIGNATURE_NAME, snapshot)
    before = snapshot.read_bytes()
    other = generate_key(tmp_path / "other" / "key.pem")
    assert keys_main(["sign", str(bundle_copy), "--key", str(other)]) == 0
    assert snapshot.read_bytes() == before
    assert (bundle_copy / SIGNATURE_NAME).read_bytes() != before
    assert not [p for p in bundle_copy.iterdir() if p.name.endswith(".tmp")]


def test_cxr_keys_show_does_not_create_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CXR_EDGE_KEY_DIR", str(tmp_path / "keys"))
    assert keys_main(["show"]) == 2
    err = capsys.readouterr().err
    assert "signing-key.pem does not exist" in err and "cxr-keys new" in err
    assert not (tmp_path / "keys").exists()
    assert keys_main(["new"]) == 0 and keys_main(["show"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("cxr-edge-ed25519 ")
