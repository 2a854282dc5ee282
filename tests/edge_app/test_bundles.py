"""Bundle discovery and description (manifest only, no hashes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edge_app.bundles import choose_bundle, describe_bundle, discover_bundles


def test_describe_a_real_bundle(session_bundle: Path) -> None:
    info = describe_bundle(session_bundle)
    manifest = json.loads((session_bundle / "manifest.json").read_text())
    assert info.ok and info.name == session_bundle.name
    assert manifest["provenance"]["exported_at"][:10] in info.version
    assert manifest["provenance"]["checkpoint_sha256"][:8] in info.version
    assert set(info.models) == {m["name"] for m in manifest["models"]}
    assert info.title.startswith(session_bundle.name)


def test_manifest_name_and_version_win(bundle_copy: Path) -> None:
    path = bundle_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(name="chexnet-field", version="2.1")
    path.write_text(json.dumps(manifest))
    assert describe_bundle(bundle_copy).title == "chexnet-field 2.1"


def test_not_a_bundle_is_described_with_the_reason(tmp_path: Path) -> None:
    info = describe_bundle(tmp_path / "missing")
    assert not info.ok and "does not exist" in info.error
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    info = describe_bundle(tmp_path / "broken")
    assert not info.ok and "not valid JSON" in info.error


def test_discover_and_choose(tmp_path: Path, session_bundle: Path) -> None:
    root = tmp_path / "bundles"
    assert discover_bundles(root) == []
    choice = choose_bundle(None, None, root)
    assert choice.path is None and str(root) in choice.reason
    shutil.copytree(session_bundle, root / "b-second")
    shutil.copytree(session_bundle, root / "a-first")
    (root / "a-first" / "manifest.json").write_text("[]")  # unusable, listed with its error
    (root / "notes").mkdir()
    found = discover_bundles(root)
    assert [i.path.name for i in found] == ["a-first", "b-second"] and not found[0].ok
    assert choose_bundle(None, None, root).path == root / "b-second"
    assert choose_bundle(None, "/saved", root).path == Path("/saved")
    assert choose_bundle(Path("/flag"), "/saved", root).source == "command line / environment"


def test_a_site_revision_is_listed_beside_its_parent_and_either_can_be_chosen(
    tmp_path: Path, session_bundle: Path
) -> None:
    """cxr-calibrate writes a revision as a sibling folder: the app lists both; switching back is choosing."""
    import csv

    from cxr_core.recalibrate import recalibrate_bundle
    from tests.cxr_core.test_input_gate import chest
    from tests.file_factory import write_png

    bundles = tmp_path / "bundles"
    bundles.mkdir()
    parent = bundles / "chexnet"
    shutil.copytree(session_bundle, parent)
    site = tmp_path / "site"
    site.mkdir()
    with open(site / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "Atelectasis"])
        for i in range(24):
            write_png(site / f"{i}.png", chest(300 + i, 290))
            writer.writerow([f"{i}.png", int(i % 2)])
    result = recalibrate_bundle(parent, site, "Clinic A", resamples=50)
    assert result.path == bundles / "chexnet-rev2"
    found = {info.path.name: info for info in discover_bundles(bundles)}
    assert set(found) == {"chexnet", "chexnet-rev2"}
    assert found["chexnet-rev2"].version.startswith("rev 2 (Clinic A, ")
    assert not found["chexnet"].version.startswith("rev")
    assert found["chexnet-rev2"].ok and found["chexnet"].ok
