"""Ed25519 signatures over a bundle's manifest, and the device's list of trusted keys.

The manifest records the sha256 of every bundle file, so a signature over the manifest's exact
bytes covers the whole bundle. ``cxr-export`` signs ``manifest.json`` into ``manifest.sig`` with a
private key it creates on first use; a device loads a bundle only when ``manifest.sig`` verifies
with a public key in its trusted-key folder, unless the caller opts in to an untrusted bundle
(``--allow-untrusted``), in which case the :class:`TrustStatus` says what was accepted and every
prediction carries it as a warning. docs/bundle-format.md ("Signature and trust") is the reference.

Where keys live (each overridable by an environment variable, so a demo or a test suite does not
touch the user's own configuration):

* the signing key: ``$CXR_EDGE_KEY_DIR`` or ``$XDG_CONFIG_HOME/cxr-edge/keys`` (``~/.config/...``),
  files ``signing-key.pem`` (PKCS#8, mode 0600) and ``signing-key.pub``;
* the trusted keys: ``$CXR_EDGE_TRUSTED_KEYS`` or ``$XDG_CONFIG_HOME/cxr-edge/trusted-keys``, one
  ``<key id>.pub`` file per key.

A ``.pub`` file is one line: ``cxr-edge-ed25519 <base64 of the 32-byte raw public key> <key id>``.
The key id is the first 16 hex digits of the sha256 of the raw public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cxr_core.bundle.errors import BundleError
from cxr_core.errors import CxrEdgeError, MissingDependencyError
from cxr_core.optional import require

logger = logging.getLogger(__name__)

SIGNATURE_NAME = "manifest.sig"
SIGNATURE_FORMAT = "cxr-edge-signature-1"
PUB_PREFIX = "cxr-edge-ed25519"
KEY_DIR_ENV = "CXR_EDGE_KEY_DIR"
TRUSTED_KEYS_ENV = "CXR_EDGE_TRUSTED_KEYS"
PRIVATE_KEY_NAME = "signing-key.pem"
PUBLIC_KEY_NAME = "signing-key.pub"

TrustState = Literal["trusted", "unsigned", "untrusted", "invalid", "unchecked"]


class BundleTrustError(BundleError):
    """The bundle's manifest is not signed by a trusted key (and no opt-in was given)."""


class BundleUnsignedError(BundleTrustError):
    """The bundle has no ``manifest.sig``."""


class BundleUntrustedKeyError(BundleTrustError):
    """The manifest is signed, by a key that is not in the trusted-key list."""


class BundleSignatureError(BundleTrustError):
    """``manifest.sig`` does not verify: the manifest was modified after signing, or the file is damaged."""


class SignatureFileError(CxrEdgeError, ValueError):
    """``manifest.sig`` cannot be read as a cxr-edge signature (reported as an invalid signature)."""


class SigningKeyError(CxrEdgeError, ValueError):
    """A signing or public key file is missing, unreadable or not an Ed25519 key of cxr-edge."""


REMEDY = (
    "Install the exporter's public key on this device (cxr-keys trust KEY.pub), re-export or re-sign the "
    "bundle with a trusted key (cxr-keys sign BUNDLE), or load it anyway with --allow-untrusted (the app: "
    "--allow-untrusted or allow_untrusted_bundles in its settings.json); an untrusted bundle is marked "
    "in every result"
)


def _crypto() -> Any:
    return require(
        "cryptography.hazmat.primitives.asymmetric.ed25519",
        extra="runtime",
        purpose="checking a bundle's signature",
    )


def _config_home() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME")
    return Path(base) if base else Path.home() / ".config"


def key_dir() -> Path:
    """Folder of this user's signing key (``$CXR_EDGE_KEY_DIR`` or ``~/.config/cxr-edge/keys``)."""
    env = os.environ.get(KEY_DIR_ENV)
    return Path(env).expanduser() if env else _config_home() / "cxr-edge" / "keys"


def trusted_keys_dir() -> Path:
    """Folder of trusted ``.pub`` files: ``$CXR_EDGE_TRUSTED_KEYS`` or ``~/.config/cxr-edge/trusted-keys``."""
    env = os.environ.get(TRUSTED_KEYS_ENV)
    return Path(env).expanduser() if env else _config_home() / "cxr-edge" / "trusted-keys"


def key_id(raw_public: bytes) -> str:
    """First 16 hex digits of the sha256 of a raw 32-byte public key."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def public_line(raw_public: bytes) -> str:
    """The one-line ``.pub`` text of a raw public key."""
    return f"{PUB_PREFIX} {base64.b64encode(raw_public).decode('ascii')} {key_id(raw_public)}\n"


#: Marks of a private key file: PEM/PKCS#8, OpenSSH and PuTTY. Such a file is never echoed.
PRIVATE_MARKS = ("PRIVATE KEY-----", "PuTTY-User-Key-File", "Private-Lines:")


def looks_private(text: str) -> bool:
    """Whether ``text`` is (or holds) a private key rather than a ``.pub`` line."""
    return any(mark in text for mark in PRIVATE_MARKS)


def parse_public(text: str, where: str) -> bytes:
    """The raw public key of a ``.pub`` line; :class:`SigningKeyError` naming ``where`` otherwise.

    The error never quotes the file: it may be a private key given by mistake, whose bytes must not
    reach a terminal or a log. It says what kind of file it got and what was expected.
    """
    expected = f"expected a .pub file: one line '{PUB_PREFIX} <base64 key> <key id>'"
    if looks_private(text):
        raise SigningKeyError(
            f"{where}: this is a private key; trust the .pub file instead (the public half, written "
            f"beside it by cxr-keys new or cxr-export) and keep this file secret; {expected}"
        )
    parts = text.strip().split()
    if len(parts) < 2 or parts[0] != PUB_PREFIX:
        lines = len(text.splitlines())
        raise SigningKeyError(
            f"{where}: got {len(text)} characters on {lines} line(s) that do not start with "
            f"'{PUB_PREFIX}' (contents not shown); {expected}"
        )
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SigningKeyError(f"{where}: the key is not valid base64 ({exc}); {expected}") from exc
    if len(raw) != 32:
        raise SigningKeyError(f"{where}: the key has {len(raw)} bytes; expected 32 (Ed25519)")
    return raw


def read_public(path: str | Path) -> bytes:
    path = Path(path)
    try:
        return parse_public(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(
            f"cannot read public key {path} ({type(exc).__name__}); expected a .pub text file"
        ) from exc


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate_key(path: str | Path | None = None, overwrite: bool = False) -> Path:
    """Create a new Ed25519 signing key at ``path`` (default: :func:`key_dir`) and its ``.pub``."""
    ed = _crypto()
    from cryptography.hazmat.primitives import serialization

    path = Path(path) if path is not None else key_dir() / PRIVATE_KEY_NAME
    if path.exists() and not overwrite:
        raise SigningKeyError(f"{path} exists; refusing to overwrite a signing key (pass overwrite)")
    private = ed.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(path, pem)
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    path.with_suffix(".pub").write_text(public_line(raw), encoding="utf-8")
    logger.info("created signing key %s (key id %s)", path, key_id(raw))
    return path


def load_private(path: str | Path | None = None, create: bool = True) -> Any:
    """The Ed25519 private key at ``path`` (default: the user's, created on first use when ``create``)."""
    ed = _crypto()
    from cryptography.hazmat.primitives import serialization

    default = path is None
    path = key_dir() / PRIVATE_KEY_NAME if path is None else Path(path)
    if not path.exists():
        if not (default and create):
            raise SigningKeyError(
                f"signing key {path} does not exist; expected an Ed25519 key: create one with cxr-keys new "
                "(cxr-export also creates one on first use) or name another with --key KEY.pem"
            )
        generate_key(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"cannot read signing key {path} ({exc}); expected a PKCS#8 PEM") from exc
    if not isinstance(key, ed.Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}; expected an Ed25519 private key")
    return key


def raw_public_of(private: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def manifest_bytes(root: str | Path, validate: bool = False) -> bytes:
    """The exact bytes of ``root/manifest.json``; with ``validate``, refused unless the bundle schema
    reads them (:func:`cxr_core.bundle.reader.parse_manifest`). :class:`BundleError` naming the file."""
    from cxr_core.bundle.reader import manifest_path, parse_manifest

    path = manifest_path(Path(root))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {path} ({exc}); expected a readable manifest") from exc
    if validate:
        parse_manifest(data, str(path))
    return data


def sign_manifest(
    root: str | Path,
    private: Any | None = None,
    key_path: str | Path | None = None,
    *,
    validate: bool = False,
) -> str:
    """Sign ``root/manifest.json``'s bytes into ``root/manifest.sig``; return the key id.

    With ``validate`` (``cxr-keys sign``) a manifest the bundle schema refuses is not signed. The
    bytes validated are the bytes signed; ``manifest.sig`` is replaced atomically (temp file + rename),
    so an interrupted signing leaves the old signature or the new one, never half of one.
    """
    from cxr_core.atomic import atomic_write

    root = Path(root)
    data = manifest_bytes(root, validate)
    if private is None:
        private = load_private(key_path)
    raw = raw_public_of(private)
    document = {
        "format": SIGNATURE_FORMAT,
        "algorithm": "ed25519",
        "key_id": key_id(raw),
        "public_key": base64.b64encode(raw).decode("ascii"),
        "manifest_sha256": hashlib.sha256(data).hexdigest(),
        "signature": base64.b64encode(private.sign(data)).decode("ascii"),
    }
    text = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    atomic_write(root / SIGNATURE_NAME, lambda handle: handle.write(text))
    return document["key_id"]


def signed_by(root: str | Path) -> str | None:
    """The key id ``root/manifest.sig`` names (not verified), or None when there is none."""
    try:
        return _signature_fields(Path(root) / SIGNATURE_NAME)[0]
    except SignatureFileError:
        return None


def trusted_keys(folder: str | Path | None = None) -> dict[str, bytes]:
    """``{key id: raw public key}`` of every ``*.pub`` in the trusted-key folder (a bad file is skipped).

    A folder that does not exist trusts nothing; so does a path that is not a folder (with a warning).
    """
    folder = Path(folder) if folder is not None else trusted_keys_dir()
    keys: dict[str, bytes] = {}
    if not folder.is_dir():
        if folder.exists():
            logger.warning("trusted-key path %s is not a folder; no key is trusted", folder)
        return keys
    for path in sorted(folder.glob("*.pub")):
        try:
            raw = read_public(path)
        except SigningKeyError as exc:
            logger.warning("ignoring trusted key file: %s", exc)
            continue
        keys[key_id(raw)] = raw
    return keys


def check_trusted_folder(folder: Path) -> None:
    """Refuse a trusted-key path that exists but is not a folder (:class:`SigningKeyError`)."""
    if folder.exists() and not folder.is_dir():
        raise SigningKeyError(
            f"trusted-key path {folder} is a file, not a folder; expected a folder of .pub files "
            f"(--trusted-dir or ${TRUSTED_KEYS_ENV})"
        )


def _install(raw: bytes, folder: Path) -> Path:
    """Write ``raw``'s ``.pub`` line into ``folder`` as ``<key id>.pub`` (the folder is created)."""
    check_trusted_folder(folder)
    target = folder / f"{key_id(raw)}.pub"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target.write_text(public_line(raw), encoding="utf-8")
    except OSError as exc:
        raise SigningKeyError(
            f"cannot install trusted key into {folder} ({type(exc).__name__}: {exc}); expected a "
            "writable folder"
        ) from exc
    return target


def install_trusted(public: str | Path, folder: str | Path | None = None) -> Path:
    """Copy a ``.pub`` file into the trusted-key folder as ``<key id>.pub``; return its path."""
    raw = read_public(public)
    return _install(raw, Path(folder) if folder is not None else trusted_keys_dir())


def trust_own_key(folder: str | Path | None = None, key_path: str | Path | None = None) -> Path:
    """Install the public half of this user's signing key (or ``key_path``) into a trusted-key folder."""
    raw = raw_public_of(load_private(key_path))
    return _install(raw, Path(folder) if folder is not None else trusted_keys_dir())


@dataclass(frozen=True)
class TrustStatus:
    """Whether a bundle's manifest is signed by a trusted key; ``state`` is ``trusted`` only then."""

    state: TrustState
    key_id: str | None = None
    detail: str = ""

    @property
    def trusted(self) -> bool:
        return self.state == "trusted"

    def describe(self) -> str:
        """One line for a table, a report or the app header."""
        if self.state == "trusted":
            return f"signed by trusted key {self.key_id}"
        if self.state == "unsigned":
            return "UNSIGNED bundle (loaded with --allow-untrusted)"
        if self.state == "untrusted":
            return f"signed by UNTRUSTED key {self.key_id} (loaded with --allow-untrusted)"
        if self.state == "unchecked":
            return (
                f"signature by key {self.key_id} NOT CHECKED (no cryptography; loaded with --allow-untrusted)"
            )
        return f"INVALID signature: {self.detail} (loaded with --allow-untrusted)"

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "key_id": self.key_id, "detail": self.detail or None}


def _signature_fields(path: Path) -> tuple[str, bytes, bytes]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("format") != SIGNATURE_FORMAT:
            raise SignatureFileError(f"expected an object with format {SIGNATURE_FORMAT!r}")
        raw = base64.b64decode(str(document["public_key"]), validate=True)
        signature = base64.b64decode(str(document["signature"]), validate=True)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, binascii.Error) as exc:
        raise SignatureFileError(f"{path.name} is unreadable ({type(exc).__name__}: {exc})") from exc
    if len(raw) != 32 or len(signature) != 64:
        raise SignatureFileError(
            f"{path.name} holds a {len(raw)}-byte key and a {len(signature)}-byte signature"
        )
    return key_id(raw), raw, signature


def check_signature(
    root: str | Path, manifest_bytes: bytes, trusted: dict[str, bytes] | None = None
) -> TrustStatus:
    """The :class:`TrustStatus` of ``manifest_bytes`` (the manifest as read) and ``root/manifest.sig``."""
    root = Path(root)
    path = root / SIGNATURE_NAME
    if not path.exists() and not path.is_symlink():
        return TrustStatus("unsigned", detail=f"{root} has no {SIGNATURE_NAME}")
    if path.is_symlink() or not path.is_file():
        return TrustStatus("invalid", detail=f"{path} is not a regular file")
    try:
        kid, raw, signature = _signature_fields(path)
    except SignatureFileError as exc:
        return TrustStatus("invalid", detail=str(exc))
    try:
        ed = _crypto()
    except MissingDependencyError as exc:  # e.g. an Android build without cryptography: fail closed
        return TrustStatus("unchecked", kid, f"the signature by key {kid} cannot be checked here: {exc}")
    from cryptography.exceptions import InvalidSignature

    try:
        ed.Ed25519PublicKey.from_public_bytes(raw).verify(signature, manifest_bytes)
    except InvalidSignature:
        return TrustStatus(
            "invalid",
            kid,
            f"manifest.json does not match its signature by key {kid} (modified after signing)",
        )
    trusted = trusted_keys() if trusted is None else trusted
    if trusted.get(kid) == raw:
        return TrustStatus("trusted", kid)
    return TrustStatus("untrusted", kid, f"key {kid} is not in {trusted_keys_dir()}")


def enforce_trust(root: str | Path, status: TrustStatus, allow_untrusted: bool) -> TrustStatus:
    """Raise the :class:`BundleTrustError` subclass for ``status`` unless trusted or ``allow_untrusted``."""
    if status.trusted:
        return status
    if allow_untrusted:
        logger.warning("bundle %s: %s", root, status.describe())
        return status
    if status.state == "unsigned":
        raise BundleUnsignedError(f"bundle {root} is not signed (no {SIGNATURE_NAME}); refused. {REMEDY}")
    if status.state == "untrusted":
        raise BundleUntrustedKeyError(
            f"bundle {root} is signed by key {status.key_id}, which is not among the trusted keys in "
            f"{trusted_keys_dir()}; refused. {REMEDY}"
        )
    if status.state == "unchecked":
        raise BundleTrustError(f"bundle {root}: {status.detail}; refused. {REMEDY}")
    raise BundleSignatureError(f"bundle {root}: {status.detail}; refused as possibly forged. {REMEDY}")
