"""SOPS decryption for a Kustomization's ``spec.decryption`` (provider ``sops``), as Flux does it.

Keys come from the Secret ``decryption.secretRef`` names (:func:`load_keys`): entries ending in
``.agekey`` hold age identities, entries ending in ``.asc`` armored PGP private keys. Each call
decrypts with those keys only: the real ``sops`` binary runs with a private ``HOME``, a throwaway
GnuPG home holding just the PGP keys, ``SOPS_AGE_KEY`` holding just the age identities, and no
other environment, so no key of the controller or of another Kustomization can take part.

Two passes, as in Flux's kustomize-controller:

- before the build, :func:`decrypt_tree` decrypts in place the SOPS-encrypted files that
  ``secretGenerator`` ``files`` and ``envs`` and ``patches`` refer to, in the kustomization at
  the path and in every kustomization its ``resources`` and ``components`` lead to;
- after the build, :func:`decrypt_objects` decrypts every object that carries SOPS metadata
  (``sops.mac``), whatever its kind, and the SOPS-encrypted values in a Secret's ``data``
  (what a ``secretGenerator`` made from an encrypted file left encrypted).

Like Flux, neither checks the SOPS MAC by default: kustomize changes the objects the MAC covers
(a namespace, labels, a name prefix), while each value's own AES-GCM tag still rejects a
tampered or corrupt value. An object opted out with the annotation
``kustomize.toolkit.fluxcd.io/decrypt: disabled`` is left alone.

Anything that cannot be decrypted raises :class:`DecryptionError` naming the object, data key
or file, never its content, and nothing is returned: the caller applies nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from controllers import child, safeyaml
from controllers.binaries import find_binary
from controllers.gnupg import GnuPGError, gnupg_home
from controllers.kube import KubeClient
from controllers.secrets import SecretData, SecretError, read_secret

__all__ = [
    "DECRYPT_KEY",
    "MAX_FILE_SIZE",
    "DecryptionError",
    "DecryptionKeys",
    "decrypt_objects",
    "decrypt_tree",
    "keys_from_secret",
    "load_keys",
]

DECRYPT_KEY = "kustomize.toolkit.fluxcd.io/decrypt"
# Flux's limit on an encrypted file.
MAX_FILE_SIZE = 5 << 20
TIMEOUT_SECONDS = 30.0
AGE_SUFFIX = ".agekey"
PGP_SUFFIX = ".asc"

_KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# What SOPS leaves in an encrypted document of each format (binary is a JSON envelope).
_MARKERS = {
    "yaml": b"mac: ENC[",
    "json": b'"mac": "ENC[',
    "binary": b'"mac": "ENC[',
    "dotenv": b"sops_mac=ENC[",
    "ini": b"[sops]",
}
# sops exit codes (cmd/sops/codes) and what they mean here; anything else is reported by code.
_SOPS_FAILURES = {
    1: "it is not a valid SOPS document",
    24: "its MAC cannot be decrypted",
    25: "a value cannot be decrypted (corrupt or tampered)",
    51: "its MAC does not match its content",
    52: "it has no MAC",
    128: "no key in the decryption Secret can decrypt its data key",
}


class DecryptionError(Exception):
    """Keys could not be loaded, or an object or file could not be decrypted; the message names
    it, never its content."""


@dataclass(frozen=True, repr=False)
class DecryptionKeys:
    """The keys of a decryption Secret by entry name: age identities and armored PGP keys."""

    age: Mapping[str, str] = field(default_factory=dict)
    pgp: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Names only: a repr ends up in logs and tracebacks.
        return f"DecryptionKeys(age={sorted(self.age)}, pgp={sorted(self.pgp)})"


def keys_from_secret(secret: SecretData | Mapping[str, Any]) -> DecryptionKeys:
    """The age and PGP keys in a Secret's data, or in a Secret object's (other entries are
    ignored)."""
    data = secret if isinstance(secret, SecretData) else SecretData.from_object(secret)
    age, pgp = {}, {}
    for name in sorted(data):
        if not name.endswith((AGE_SUFFIX, PGP_SUFFIX)):
            continue
        try:
            value = data.text(name)
        except SecretError:
            raise DecryptionError(f"entry '{name}' of the decryption Secret is not text") from None
        if name.endswith(PGP_SUFFIX):
            pgp[name] = value
            continue
        lines = [line.strip() for line in value.splitlines()]
        identities = [line for line in lines if line and not line.startswith("#")]
        if not identities or not all(
            line.startswith(("AGE-SECRET-KEY-1", "AGE-PLUGIN-")) for line in identities
        ):
            raise DecryptionError(f"entry '{name}' of the decryption Secret is not age identities")
        age[name] = "\n".join(identities)
    return DecryptionKeys(age=age, pgp=pgp)


async def load_keys(client: KubeClient, namespace: str, name: str) -> DecryptionKeys:
    """The keys in the decryption Secret ``namespace/name``."""
    try:
        secret = await read_secret(client, namespace, name)
    except SecretError as err:
        raise DecryptionError(f"decryption Secret '{namespace}/{name}' {err.problem}") from None
    return keys_from_secret(secret)


# Objects, after the build


async def decrypt_objects(
    objects: Iterable[Mapping[str, Any]], keys: DecryptionKeys, *, check_mac: bool = False
) -> list[dict[str, Any]]:
    """``objects`` in the same order, each SOPS-encrypted one (or encrypted Secret value)
    decrypted; the others as they are. ``check_mac`` also verifies SOPS MACs, which Flux never
    does."""
    copies = [dict(obj) for obj in objects]
    if not any(_is_encrypted(obj) or _encrypted_data(obj) for obj in copies):
        return copies
    result = []
    async with _sops_session(keys) as sops:
        for obj in copies:
            if _is_encrypted(obj):
                result.append(await _decrypt_object(sops, obj, check_mac))
            elif encrypted := _encrypted_data(obj):
                result.append(await _decrypt_data(sops, obj, encrypted, check_mac))
            else:
                result.append(obj)
    return result


def refuse_encrypted_secrets(objects: Iterable[Mapping[str, Any]]) -> None:
    """Without ``spec.decryption``, a SOPS-encrypted Secret is never applied (Flux)."""
    for obj in objects:
        if obj.get("kind") == "Secret" and _is_encrypted(obj):
            raise DecryptionError(
                f"{_object_id(obj)} is SOPS encrypted, configuring decryption is required for "
                "this secret to be reconciled"
            )


def _decryption_disabled(obj: Mapping[str, Any]) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(DECRYPT_KEY, "")).lower() == "disabled"


def _is_encrypted(obj: Mapping[str, Any]) -> bool:
    metadata = obj.get("sops")
    return (
        isinstance(metadata, Mapping)
        and bool(metadata.get("mac"))
        and not _decryption_disabled(obj)
    )


def _encrypted_data(obj: Mapping[str, Any]) -> dict[str, tuple[bytes, str]]:
    """A Secret's ``data`` values that are SOPS documents: key -> (document, input format)."""
    if (
        obj.get("kind") != "Secret"
        or not isinstance(obj.get("data"), Mapping)
        or _decryption_disabled(obj)
    ):
        return {}
    data = SecretData.from_object(obj)
    found = {}
    for key in data:
        try:
            document = data.binary(key)
        except SecretError:
            continue  # not ours to judge: the API server rejects it on apply
        for input_format in ("yaml", "json", "dotenv", "ini"):
            if _MARKERS[input_format] in document:
                found[key] = (document, input_format)
                break
    return found


def _object_id(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    kind, name = obj.get("kind") or "?", metadata.get("name") or "?"
    namespace = metadata.get("namespace")
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


async def _decrypt_object(sops: _Sops, obj: dict[str, Any], check_mac: bool) -> dict[str, Any]:
    where = _object_id(obj)
    try:
        plain = await sops.decrypt(json.dumps(obj).encode(), "json", "json", check_mac)
    except _SopsFailed as err:
        raise DecryptionError(f"cannot decrypt {where}: {err}") from None
    try:
        decrypted = json.loads(plain)
    except ValueError:
        decrypted = None
    if not isinstance(decrypted, dict):
        raise DecryptionError(f"cannot decrypt {where}: sops did not return an object")
    return decrypted


async def _decrypt_data(
    sops: _Sops, obj: dict[str, Any], encrypted: dict[str, tuple[bytes, str]], check_mac: bool
) -> dict[str, Any]:
    data = dict(obj["data"])
    for key, (document, input_format) in encrypted.items():
        try:
            plain = await sops.decrypt(document, input_format, _format_for(key), check_mac)
        except _SopsFailed as err:
            raise DecryptionError(
                f"cannot decrypt data key '{key}' of {_object_id(obj)}: {err}"
            ) from None
        data[key] = base64.b64encode(plain).decode()
    return {**obj, "data": data}


def _format_for(path: str) -> str:
    """The SOPS format a file name implies, as sops (and Flux, for ``.dockerconfigjson``)."""
    if path.endswith((".yaml", ".yml")):
        return "yaml"
    if path.endswith((".json", ".dockerconfigjson")):
        return "json"
    if path.endswith(".env"):
        return "dotenv"
    if path.endswith(".ini"):
        return "ini"
    return "binary"


# Files, before the build


async def decrypt_tree(
    root: Path, keys: DecryptionKeys, path: str = ".", *, check_mac: bool = False
) -> list[Path]:
    """Decrypt in place the SOPS-encrypted files the kustomization at ``root/path`` (and every
    kustomization its ``resources`` and ``components`` lead to) uses in ``secretGenerator``
    ``files`` and ``envs`` and in ``patches``; return them, relative to ``root``.

    Files that are not SOPS documents are left alone. A reference outside ``root``, to a missing
    or irregular file, or to a file over :data:`MAX_FILE_SIZE` is an error; a directory without a
    kustomization file has nothing to decrypt.
    """
    # The walk and the file I/O run off the event loop.
    root = await asyncio.to_thread(root.resolve)
    encrypted = await asyncio.to_thread(_encrypted_files, root, path)
    if not encrypted:
        return []
    async with _sops_session(keys) as sops:
        for file, file_format in encrypted.items():
            document = await asyncio.to_thread(file.read_bytes)
            try:
                plain = await sops.decrypt(document, file_format, file_format, check_mac)
            except _SopsFailed as err:
                raise DecryptionError(f"cannot decrypt '{file.relative_to(root)}': {err}") from None
            await asyncio.to_thread(file.write_bytes, plain)
    return [file.relative_to(root) for file in encrypted]


def _inside(root: Path, candidate: Path) -> Path | None:
    """``candidate`` with every link resolved, or None when that is outside ``root``."""
    resolved = candidate.resolve()
    return resolved if resolved == root or resolved.is_relative_to(root) else None


def _encrypted_files(root: Path, path: str) -> dict[Path, str]:
    """Every encrypted file the kustomizations from ``root/path`` use, with its SOPS format."""
    start = _inside(root, root / path)
    if start is None:
        raise DecryptionError(f"path '{path}' is outside the source")
    found: dict[Path, str] = {}
    pending, visited = [start], set()
    while pending:
        directory = pending.pop(0)
        if directory in visited:
            continue
        visited.add(directory)
        kustomization = _load_kustomization(root, directory)
        if kustomization is None:
            continue
        where = directory.relative_to(root)
        for reference, file_format in _file_references(kustomization):
            file = _referenced_file(root, directory, reference, where)
            if file not in found and _MARKERS[file_format] in file.read_bytes():
                found[file] = file_format
        for entry in _strings(kustomization.get("resources")) + _strings(
            kustomization.get("components")
        ):
            if urlparse(entry).scheme:
                continue
            target = _inside(root, directory / entry)
            if target is not None and target.is_dir():
                pending.append(target)
    return found


def _load_kustomization(root: Path, directory: Path) -> dict[str, Any] | None:
    present = [directory / name for name in _KUSTOMIZATION_FILES if (directory / name).exists()]
    if not present:
        return None
    where = directory.relative_to(root)
    if len(present) > 1:
        raise DecryptionError(f"'{where}' has more than one kustomization file")
    file = present[0]
    if file.is_symlink() or not file.is_file() or file.stat().st_size > MAX_FILE_SIZE:
        raise DecryptionError(f"'{file.relative_to(root)}' is not a regular file within limits")
    return _parse_kustomization(file.read_bytes(), f"'{file.relative_to(root)}'")


def _parse_kustomization(data: bytes, what: str) -> dict[str, Any]:
    try:
        loaded = safeyaml.load(data, what=what)
    except safeyaml.YAMLLoadError as err:
        raise DecryptionError(f"cannot parse {err}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise DecryptionError(f"{what} is not a kustomization")
    return loaded


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _file_references(kustomization: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(path, SOPS format) of every file a secretGenerator or a patch reads."""
    references = []
    for generator in kustomization.get("secretGenerator") or []:
        if not isinstance(generator, Mapping):
            continue
        for source in _strings(generator.get("files")):
            # "key=path" or "path"; the key names the format, as it names the data entry.
            key, _, file = source.partition("=")
            references.append((file or key, _format_for(key)))
        for env in _strings(generator.get("envs")):
            env_format = _format_for(env)
            references.append((env, "dotenv" if env_format == "binary" else env_format))
    for patch in kustomization.get("patches") or []:
        path = patch.get("path") if isinstance(patch, Mapping) else None
        if isinstance(path, str) and not urlparse(path).netloc:
            references.append((path, _format_for(path)))
    return references


def _referenced_file(root: Path, directory: Path, reference: str, where: Path) -> Path:
    file = _inside(root, directory / reference)
    if file is None:
        raise DecryptionError(f"'{where}' refers to '{reference}', outside the source")
    if not file.exists():
        raise DecryptionError(f"'{where}' refers to '{reference}', which does not exist")
    if not file.is_file():
        raise DecryptionError(f"'{where}' refers to '{reference}', which is not a regular file")
    if file.stat().st_size > MAX_FILE_SIZE:
        raise DecryptionError(
            f"'{where}' refers to '{reference}', larger than {MAX_FILE_SIZE} bytes"
        )
    return file


# Running sops


class _SopsFailed(Exception):
    """sops did not decrypt; the message says why, from its exit code alone."""


@dataclass(frozen=True)
class _Sops:
    binary: Path
    workdir: Path
    env: dict[str, str]

    async def decrypt(
        self, document: bytes, input_format: str, output_format: str, check_mac: bool
    ) -> bytes:
        args = ["decrypt", "--input-type", input_format, "--output-type", output_format]
        if not check_mac:
            args.append("--ignore-mac")
        # Never keeps stderr: sops may quote the document in its errors. Decrypted text is
        # shorter than its encrypted form (base64 and metadata); the cap leaves sops room to
        # re-emit it in another style.
        try:
            done = await child.run(
                [str(self.binary), *args],
                stdin=document,
                timeout=TIMEOUT_SECONDS,
                env=self.env,
                cwd=self.workdir,
                max_output=2 * len(document) + MAX_FILE_SIZE,
            )
        except child.ChildError as err:
            raise _SopsFailed(str(err)) from None
        if code := done.returncode:
            raise _SopsFailed(_SOPS_FAILURES.get(code, f"sops failed with exit code {code}"))
        return done.stdout


def _sops_binary() -> Path:
    found = find_binary("sops") or shutil.which("sops")
    if not found:
        raise DecryptionError(
            "the sops binary is missing: build it with `python -m controllers.envtest build` "
            "or set WEIR_SOPS"
        )
    return Path(found)


@contextlib.asynccontextmanager
async def _sops_session(keys: DecryptionKeys) -> AsyncIterator[_Sops]:
    """sops with ``keys`` and nothing else: the PGP keys in a throwaway GnuPG home, the age
    identities in ``SOPS_AGE_KEY``, a private ``HOME`` (sops also looks for ``~/.ssh`` keys and
    ``~/.config/sops/age/keys.txt``), no inherited environment (cloud credentials, Vault)."""
    binary = _sops_binary()
    async with gnupg_home() as gnupg:
        for name, armored in sorted(keys.pgp.items()):
            try:
                imported = await gnupg.import_key(armored)
            except GnuPGError as err:
                raise DecryptionError(f"cannot import PGP key '{name}': {err}") from None
            if not imported:
                raise DecryptionError(f"cannot import PGP key '{name}' from the decryption Secret")
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(gnupg.root),
            "XDG_CONFIG_HOME": str(gnupg.root / "config"),
            "GNUPGHOME": str(gnupg.home),
        }
        if keys.age:
            env["SOPS_AGE_KEY"] = "\n".join(keys.age[name] for name in sorted(keys.age))
        yield _Sops(binary, gnupg.root, env)
