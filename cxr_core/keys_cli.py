"""``cxr-keys``: the Ed25519 keys that sign model bundles and the device's list of trusted keys.

    cxr-keys new [--key KEY.pem] [--force]     create a signing key (cxr-export creates one on first use)
    cxr-keys show [--key KEY.pem]              print the public key line and its key id (never creates one)
    cxr-keys trust KEY.pub [--trusted-dir DIR] install a public key into the trusted list
    cxr-keys list [--trusted-dir DIR]          list the trusted keys
    cxr-keys sign BUNDLE [--key KEY.pem]       sign (again) a bundle's manifest.json, once it validates
    cxr-keys check BUNDLE                      print the bundle's trust status (exit 1 unless trusted)

Keys live in ``$CXR_EDGE_KEY_DIR`` (default ``~/.config/cxr-edge/keys``), trusted keys in
``$CXR_EDGE_TRUSTED_KEYS`` (default ``~/.config/cxr-edge/trusted-keys``); see
:mod:`cxr_core.bundle.signing` and docs/bundle-format.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxr_core.bundle.signing import (
    PRIVATE_KEY_NAME,
    check_signature,
    check_trusted_folder,
    generate_key,
    install_trusted,
    key_dir,
    key_id,
    load_private,
    public_line,
    raw_public_of,
    sign_manifest,
    trusted_keys,
    trusted_keys_dir,
)
from cxr_core.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_progress_flag,
    add_version,
    error_exit,
    exit_codes_epilog,
    optional_dependencies,
)
from cxr_core.errors import CxrEdgeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-keys",
        description="Create the key that signs model bundles, install trusted public keys on a device, "
        "sign or check a bundle. Keys: $CXR_EDGE_KEY_DIR (~/.config/cxr-edge/keys); trusted keys: "
        "$CXR_EDGE_TRUSTED_KEYS (~/.config/cxr-edge/trusted-keys).",
        epilog=exit_codes_epilog(
            {
                EXIT_OK: "done (check: the bundle is signed by a trusted key)",
                EXIT_FAILED: "check: the bundle is unsigned, untrusted or its signature is invalid",
                EXIT_USAGE: "usage error, an unreadable key or bundle, or the cryptography package missing",
            }
        ),
    )
    add_version(parser)
    add_progress_flag(parser, default=False, help="accepted like every command's; cxr-keys draws none")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="create a signing key")
    new.add_argument("--key", type=Path, default=None, help="where (default: the key folder)")
    new.add_argument("--force", action="store_true", help="replace an existing key")
    show = sub.add_parser(
        "show", help="print the public key line and its id (no key is an error: cxr-keys new creates one)"
    )
    show.add_argument("--key", type=Path, default=None)
    trust = sub.add_parser("trust", help="install a public key (.pub) into the trusted list")
    trust.add_argument("public", type=Path, metavar="KEY.pub")
    trust.add_argument("--trusted-dir", type=Path, default=None)
    listing = sub.add_parser("list", help="list the trusted keys")
    listing.add_argument("--trusted-dir", type=Path, default=None)
    sign = sub.add_parser(
        "sign", help="validate a bundle's manifest.json (the bundle schema), then sign it into manifest.sig"
    )
    sign.add_argument("bundle", type=Path)
    sign.add_argument("--key", type=Path, default=None)
    check = sub.add_parser("check", help="print a bundle's trust status")
    check.add_argument("bundle", type=Path)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "new":
        path = args.key or key_dir() / PRIVATE_KEY_NAME
        generate_key(path, overwrite=args.force)
        raw = raw_public_of(load_private(path, create=False))
        print(f"created {path} (key id {key_id(raw)}); public key: {path.with_suffix('.pub')}")
        return EXIT_OK
    if args.command == "show":
        raw = raw_public_of(load_private(args.key, create=False))
        print(public_line(raw), end="")
        return EXIT_OK
    if args.command == "trust":
        target = install_trusted(args.public, args.trusted_dir)
        print(f"trusted key {target.stem} installed as {target}")
        return EXIT_OK
    if args.command == "list":
        folder = args.trusted_dir or trusted_keys_dir()
        check_trusted_folder(folder)
        keys = trusted_keys(folder)
        note = "" if folder.is_dir() else " (no such folder yet: cxr-keys trust KEY.pub creates it)"
        print(f"{len(keys)} trusted key(s) in {folder}{note}")
        for kid in sorted(keys):
            print(f"  {kid}")
        return EXIT_OK
    if args.command == "sign":
        kid = sign_manifest(args.bundle, key_path=args.key, validate=True)
        print(f"signed {args.bundle / 'manifest.json'} with key {kid}")
        return EXIT_OK
    manifest = args.bundle / "manifest.json"
    try:
        data = manifest.read_bytes()
    except OSError as exc:
        return error_exit("cxr-keys", f"cannot read {manifest} ({exc})")
    status = check_signature(args.bundle, data)
    print(f"{args.bundle}: {status.describe() if status.trusted else status.state + ': ' + status.detail}")
    return EXIT_OK if status.trusted else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        with optional_dependencies("cxr-keys", "runtime"):
            return run(args)
    except CxrEdgeError as exc:
        return error_exit("cxr-keys", exc)


if __name__ == "__main__":
    sys.exit(main())
