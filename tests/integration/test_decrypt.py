"""SOPS decryption with the real sops binary: documents encrypted here by sops with a real age
identity (from age-keygen) and a real PGP key (from gpg), decrypted as Flux does."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.envtest import ensure_binaries
from controllers.kinds import SECRET
from controllers.kube import KubeClient
from kustomize.decrypt import (
    DecryptionError,
    DecryptionKeys,
    decrypt_objects,
    decrypt_tree,
    keys_from_secret,
    load_keys,
)
from tests.sops import (
    SECRET_REGEX,
    AgeIdentity,
    PgpKey,
    new_age_identity,
    pgp_key,
    sops_encrypt,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def binaries() -> dict[str, Path]:
    return ensure_binaries()


@pytest.fixture(scope="module")
def age(binaries: dict[str, Path]) -> AgeIdentity:
    return new_age_identity(binaries)


@pytest.fixture(scope="module")
def other_age(binaries: dict[str, Path]) -> AgeIdentity:
    return new_age_identity(binaries)


@pytest.fixture(scope="module")
def pgp() -> Iterator[PgpKey]:
    with pgp_key() as key:
        yield key


def secret_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db"},
        "type": "Opaque",
        "stringData": {"password": "hunter2", "port": "5432"},
        "data": {"token": base64.b64encode(b"s3cr3t-token").decode()},
    }


def encrypted_object(binaries: dict[str, Path], obj: dict[str, Any], **recipients: Any) -> Any:
    """``obj`` encrypted as a user would commit it, then changed as kustomize would build it."""
    document = sops_encrypt(
        binaries, yaml.safe_dump(obj).encode(), "yaml", encrypted_regex=SECRET_REGEX, **recipients
    )
    built = yaml.safe_load(document)
    built["metadata"]["namespace"] = "apps"
    built["metadata"]["labels"] = {"kustomize.toolkit.fluxcd.io/name": "apps"}
    return built


def age_keys(identity: AgeIdentity) -> DecryptionKeys:
    return DecryptionKeys(age={"identity.agekey": identity.identity})


# Objects after the build


async def test_an_age_encrypted_secret_is_decrypted(
    binaries: dict[str, Path], age: AgeIdentity
) -> None:
    encrypted = encrypted_object(binaries, secret_manifest(), age=age)
    assert encrypted["stringData"]["password"].startswith("ENC[")

    [decrypted] = await decrypt_objects([encrypted], age_keys(age))

    expected = secret_manifest()
    expected["metadata"] = encrypted["metadata"]
    assert decrypted == expected


async def test_a_pgp_encrypted_secret_is_decrypted(binaries: dict[str, Path], pgp: PgpKey) -> None:
    encrypted = encrypted_object(binaries, secret_manifest(), pgp=pgp)

    [decrypted] = await decrypt_objects(
        [encrypted], DecryptionKeys(pgp={"identity.asc": pgp.private})
    )

    assert decrypted["stringData"] == {"password": "hunter2", "port": "5432"}
    assert base64.b64decode(decrypted["data"]["token"]) == b"s3cr3t-token"
    assert "sops" not in decrypted


async def test_either_recipient_can_decrypt(
    binaries: dict[str, Path], age: AgeIdentity, pgp: PgpKey, other_age: AgeIdentity
) -> None:
    encrypted = encrypted_object(binaries, secret_manifest(), age=age, pgp=pgp)
    keys = DecryptionKeys(
        age={"wrong.agekey": other_age.identity}, pgp={"identity.asc": pgp.private}
    )

    [decrypted] = await decrypt_objects([encrypted], keys)

    assert decrypted["stringData"]["password"] == "hunter2"


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param("other-age", id="another-age-identity"),
        pytest.param("none", id="no-keys"),
    ],
)
async def test_the_wrong_key_is_an_error_naming_the_object_only(
    binaries: dict[str, Path], age: AgeIdentity, other_age: AgeIdentity, keys: str
) -> None:
    encrypted = encrypted_object(binaries, secret_manifest(), age=age)
    plain = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fine"}}
    chosen = age_keys(other_age) if keys == "other-age" else DecryptionKeys()

    with pytest.raises(DecryptionError) as caught:
        await decrypt_objects([plain, encrypted], chosen)

    message = str(caught.value)
    assert message == (
        "cannot decrypt Secret/apps/db: no key in the decryption Secret can decrypt its data key"
    )
    assert "ENC[" not in message
    assert "hunter2" not in message


async def test_a_pgp_key_that_is_not_the_recipient_is_an_error(
    binaries: dict[str, Path], age: AgeIdentity, pgp: PgpKey
) -> None:
    encrypted = encrypted_object(binaries, secret_manifest(), age=age)

    with pytest.raises(DecryptionError, match="no key in the decryption Secret"):
        await decrypt_objects([encrypted], DecryptionKeys(pgp={"identity.asc": pgp.private}))


async def test_a_tampered_value_is_an_error(binaries: dict[str, Path], age: AgeIdentity) -> None:
    encrypted = encrypted_object(binaries, secret_manifest(), age=age)
    value = encrypted["stringData"]["password"]
    # Flip the first character of the ciphertext: AES-GCM's tag no longer matches.
    start = value.index("data:") + len("data:")
    flipped = "B" if value[start] == "A" else "A"
    encrypted["stringData"]["password"] = value[:start] + flipped + value[start + 1 :]

    with pytest.raises(DecryptionError) as caught:
        await decrypt_objects([encrypted], age_keys(age))

    assert str(caught.value) == (
        "cannot decrypt Secret/apps/db: a value cannot be decrypted (corrupt or tampered)"
    )


async def test_the_mac_is_only_checked_on_request(
    binaries: dict[str, Path], age: AgeIdentity
) -> None:
    built = encrypted_object(binaries, secret_manifest(), age=age)  # kustomize added metadata
    committed = yaml.safe_load(
        sops_encrypt(
            binaries,
            yaml.safe_dump(secret_manifest()).encode(),
            "yaml",
            age=age,
            encrypted_regex=SECRET_REGEX,
        )
    )

    [as_flux] = await decrypt_objects([built], age_keys(age))
    [unchanged] = await decrypt_objects([committed], age_keys(age), check_mac=True)
    with pytest.raises(DecryptionError, match="its MAC does not match its content"):
        await decrypt_objects([built], age_keys(age), check_mac=True)

    assert as_flux["stringData"]["password"] == unchanged["stringData"]["password"] == "hunter2"


async def test_any_kind_with_sops_metadata_is_decrypted(
    binaries: dict[str, Path], age: AgeIdentity
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"a": "1"},
    }
    encrypted = encrypted_object(binaries, config, age=age)

    [decrypted] = await decrypt_objects([encrypted], age_keys(age))

    assert decrypted["data"] == {"a": "1"}


async def test_objects_that_are_not_encrypted_pass_unchanged(
    binaries: dict[str, Path], age: AgeIdentity
) -> None:
    encrypted = encrypted_object(binaries, secret_manifest(), age=age)
    opted_out = {
        **encrypted,
        "metadata": {
            **encrypted["metadata"],
            "annotations": {"kustomize.toolkit.fluxcd.io/decrypt": "Disabled"},
        },
    }
    plain_secret = {**secret_manifest(), "metadata": {"name": "plain"}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    objects = [plain_secret, opted_out, deployment, encrypted]

    result = await decrypt_objects(objects, age_keys(age))

    assert result[:3] == objects[:3]
    assert result[3]["stringData"]["password"] == "hunter2"


async def test_encrypted_values_in_a_secrets_data_are_decrypted(
    binaries: dict[str, Path], age: AgeIdentity
) -> None:
    """What a secretGenerator makes from encrypted files it was not given decrypted."""
    token = sops_encrypt(binaries, b"s3cr3t-token", "binary", age=age)
    env = sops_encrypt(binaries, b"USER=admin\nPASSWORD=hunter2\n", "dotenv", age=age)
    settings = sops_encrypt(binaries, b'{"level": 3}', "json", age=age)
    generated = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "generated-5f8h2", "namespace": "apps"},
        "data": {
            key: base64.b64encode(value).decode()
            for key, value in [
                ("token", token),
                ("app.env", env),
                ("settings.json", settings),
                ("plain", b"not encrypted"),
            ]
        },
    }

    [decrypted] = await decrypt_objects([generated], age_keys(age))

    values = {key: base64.b64decode(value) for key, value in decrypted["data"].items()}
    assert values["token"] == b"s3cr3t-token"
    assert values["app.env"] == b"USER=admin\nPASSWORD=hunter2\n"
    assert json.loads(values["settings.json"]) == {"level": 3}
    assert values["plain"] == b"not encrypted"


async def test_an_undecryptable_data_value_names_the_key(
    binaries: dict[str, Path], age: AgeIdentity, other_age: AgeIdentity
) -> None:
    token = sops_encrypt(binaries, b"s3cr3t-token", "binary", age=age)
    generated = {
        "kind": "Secret",
        "metadata": {"name": "generated"},
        "data": {"token": base64.b64encode(token).decode()},
    }

    with pytest.raises(DecryptionError) as caught:
        await decrypt_objects([generated], age_keys(other_age))

    assert str(caught.value).startswith("cannot decrypt data key 'token' of Secret/generated:")


# Files before the build


def write(path: Path, content: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)


@pytest.fixture
def tree(binaries: dict[str, Path], age: AgeIdentity, tmp_path: Path) -> Path:
    """A temporary copy of a repository: an overlay with a secretGenerator of encrypted files
    and a base of its own with an encrypted env file and an encrypted patch."""
    root = tmp_path / "source"
    write(
        root / "apps" / "kustomization.yaml",
        yaml.safe_dump(
            {
                "resources": ["../base", "https://example.invalid/remote.yaml", "configmap.yaml"],
                "secretGenerator": [
                    {
                        "name": "app",
                        "envs": ["secret.env"],
                        "files": ["token=token.encrypted", "config.json=config.encrypted"],
                    }
                ],
            }
        ),
    )
    write(root / "apps" / "configmap.yaml", "kind: ConfigMap\n")
    write(
        root / "apps" / "secret.env",
        sops_encrypt(binaries, b"USER=admin\nPASSWORD=hunter2\n", "dotenv", age=age),
    )
    write(root / "apps" / "token.encrypted", sops_encrypt(binaries, b"tok", "binary", age=age))
    write(
        root / "apps" / "config.encrypted",
        sops_encrypt(binaries, b'{"a": 1}', "json", age=age),
    )
    write(
        root / "base" / "kustomization.yml",
        yaml.safe_dump(
            {
                "secretGenerator": [{"name": "base", "envs": ["plain.env", "base.env"]}],
                "patches": [{"path": "patch.yaml"}],
            }
        ),
    )
    write(root / "base" / "plain.env", "PLAIN=1\n")
    write(root / "base" / "base.env", sops_encrypt(binaries, b"BASE=secret\n", "dotenv", age=age))
    write(
        root / "base" / "patch.yaml",
        sops_encrypt(binaries, b"kind: Secret\nstringData:\n  x: y\n", "yaml", age=age),
    )
    return root


async def test_encrypted_generator_files_are_decrypted_in_place(
    tree: Path, age: AgeIdentity
) -> None:
    decrypted = await decrypt_tree(tree, age_keys(age), "apps")

    assert sorted(map(str, decrypted)) == [
        "apps/config.encrypted",
        "apps/secret.env",
        "apps/token.encrypted",
        "base/base.env",
        "base/patch.yaml",
    ]
    assert (tree / "apps" / "secret.env").read_text() == "USER=admin\nPASSWORD=hunter2\n"
    assert (tree / "apps" / "token.encrypted").read_bytes() == b"tok"
    assert json.loads((tree / "apps" / "config.encrypted").read_text()) == {"a": 1}
    assert (tree / "base" / "base.env").read_text() == "BASE=secret\n"
    assert yaml.safe_load((tree / "base" / "patch.yaml").read_text()) == {
        "kind": "Secret",
        "stringData": {"x": "y"},
    }
    assert (tree / "base" / "plain.env").read_text() == "PLAIN=1\n"


async def test_a_tree_without_encrypted_files_is_left_alone(tmp_path: Path) -> None:
    kustomization = yaml.safe_dump({"secretGenerator": [{"name": "x", "envs": ["plain.env"]}]})
    write(tmp_path / "kustomization.yaml", kustomization)
    write(tmp_path / "plain.env", "PLAIN=1\n")
    write(tmp_path / "nested" / "deeper" / "kustomization.yaml", "resources: [../..]\n")

    assert await decrypt_tree(tmp_path, DecryptionKeys()) == []
    assert (tmp_path / "plain.env").read_text() == "PLAIN=1\n"


async def test_a_directory_without_kustomization_has_nothing_to_decrypt(tmp_path: Path) -> None:
    write(tmp_path / "deployment.yaml", "kind: Deployment\n")

    assert await decrypt_tree(tmp_path, DecryptionKeys()) == []


async def test_a_file_the_keys_cannot_decrypt_is_an_error_naming_it(
    tree: Path, other_age: AgeIdentity
) -> None:
    with pytest.raises(DecryptionError) as caught:
        await decrypt_tree(tree, age_keys(other_age), "base")

    assert str(caught.value) == (
        "cannot decrypt 'base/base.env': no key in the decryption Secret can decrypt its data key"
    )


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        pytest.param("../../outside.env", "outside the source", id="dot-dot"),
        pytest.param("/etc/hostname", "outside the source", id="absolute"),
        pytest.param("missing.env", "which does not exist", id="missing"),
        pytest.param("subdir", "which is not a regular file", id="directory"),
    ],
)
async def test_a_bad_file_reference_is_an_error(
    tree: Path, age: AgeIdentity, reference: str, message: str
) -> None:
    (tree / "base" / "subdir").mkdir()
    (tree.parent / "outside.env").write_text("OUTSIDE=1\n")
    (tree / "base" / "kustomization.yml").write_text(
        yaml.safe_dump({"secretGenerator": [{"name": "x", "envs": [reference]}]})
    )

    with pytest.raises(
        DecryptionError, match=re.escape(f"'base' refers to '{reference}', {message}")
    ):
        await decrypt_tree(tree, age_keys(age), "base")


async def test_a_link_out_of_the_source_is_refused(tree: Path, age: AgeIdentity) -> None:
    (tree.parent / "outside.env").write_text("OUTSIDE=1\n")
    (tree / "base" / "linked.env").symlink_to(tree.parent / "outside.env")
    (tree / "base" / "kustomization.yml").write_text(
        yaml.safe_dump({"secretGenerator": [{"name": "x", "envs": ["linked.env"]}]})
    )

    with pytest.raises(DecryptionError, match="outside the source"):
        await decrypt_tree(tree, age_keys(age), "base")


# Keys


def secret_with(entries: dict[str, str]) -> dict[str, Any]:
    return {
        "data": {name: base64.b64encode(value.encode()).decode() for name, value in entries.items()}
    }


def test_keys_come_from_agekey_and_asc_entries(age: AgeIdentity, pgp: PgpKey) -> None:
    secret = secret_with(
        {"identity.agekey": age.identity, "team.asc": pgp.private, "sops.vault-token": "t"}
    )

    keys = keys_from_secret(secret)

    assert dict(keys.pgp) == {"team.asc": pgp.private}
    assert list(keys.age) == ["identity.agekey"]
    assert keys.age["identity.agekey"].startswith("AGE-SECRET-KEY-1")
    assert repr(keys) == "DecryptionKeys(age=['identity.agekey'], pgp=['team.asc'])"


def test_an_agekey_entry_that_is_no_identity_is_an_error() -> None:
    with pytest.raises(DecryptionError, match=r"entry 'bad\.agekey' .* is not age identities"):
        keys_from_secret(secret_with({"bad.agekey": "# only a comment\nnot a key\n"}))


async def test_a_pgp_entry_gpg_refuses_is_an_error(
    binaries: dict[str, Path], age: AgeIdentity
) -> None:
    encrypted = encrypted_object(binaries, secret_manifest(), age=age)
    keys = DecryptionKeys(age={"a.agekey": age.identity}, pgp={"broken.asc": "not a key"})

    with pytest.raises(DecryptionError, match=r"cannot import PGP key 'broken\.asc'"):
        await decrypt_objects([encrypted], keys)


async def test_keys_are_loaded_from_the_decryption_secret(
    kube: KubeClient, namespace: str, age: AgeIdentity, binaries: dict[str, Path]
) -> None:
    body = {"metadata": {"name": "sops-keys", "namespace": namespace}}
    await kube.create(SECRET, {**body, **secret_with({"identity.agekey": age.identity})})
    encrypted = encrypted_object(binaries, secret_manifest(), age=age)

    keys = await load_keys(kube, namespace, "sops-keys")
    [decrypted] = await decrypt_objects([encrypted], keys)
    with pytest.raises(DecryptionError, match=f"decryption Secret '{namespace}/absent' not found"):
        await load_keys(kube, namespace, "absent")

    assert decrypted["stringData"]["password"] == "hunter2"
