"""Tests for the versioned artifact store: publish, verify, rollback, prune, crash safety, npz."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from recsys.artifacts import (
    MANIFEST_NAME,
    ArtifactStore,
    Manifest,
    config_hash,
    fingerprint_files,
    load_npz,
    save_npz,
    sha256_file,
)
from recsys.errors import ArtifactError, ConfigError, InputError

REPO_ROOT = Path(__file__).resolve().parents[1]
VERSION_RE = re.compile(r"^\d{8}T\d{12}Z$")


def _publish(store: ArtifactStore, files: dict[str, bytes], config: dict | None = None) -> Manifest:
    config = {"model": "lift", "min_support": 2} if config is None else config
    with store.staging() as folder:
        for rel, content in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(content)
        return store.publish(
            folder,
            config=config,
            config_hash=config_hash(config),
            inputs={"orders.parquet": {"sha256": "ab" * 32, "bytes": 10, "rows": 3}},
            metrics={"n_rules": 7},
        )


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "art")


def test_publish_writes_version_manifest_and_current(store: ArtifactStore) -> None:
    files = {"rules.json": b'{"a": 1}', "sub/vocab.bin": b"\x00\x01\x02" * 1000}
    m = _publish(store, files)

    assert VERSION_RE.match(m.version)
    assert store.current_version() == m.version
    assert (store.root / "CURRENT").read_text() == m.version + "\n"
    assert store.versions() == [m.version]
    assert store.path() == store.root / "versions" / m.version

    assert set(m.files) == set(files)
    for rel, content in files.items():
        assert m.files[rel] == {
            "sha256": hashlib.sha256(content).hexdigest(),
            "bytes": len(content),
        }
    assert m.config_hash == config_hash({"min_support": 2, "model": "lift"})
    assert m.config == {"model": "lift", "min_support": 2}
    assert m.inputs["orders.parquet"]["rows"] == 3
    assert m.metrics == {"n_rules": 7}
    created = datetime.fromisoformat(m.created_at)
    offset = created.utcoffset()
    assert offset is not None and offset.total_seconds() == 0
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert m.libraries["numpy"] == np.__version__
    assert m.git_commit is None or re.fullmatch(r"[0-9a-f]{40,64}", m.git_commit)

    text = (store.path() / MANIFEST_NAME).read_text()
    on_disk = json.loads(text)
    assert text == json.dumps(on_disk, sort_keys=True, indent=2) + "\n"
    assert Manifest.from_dict(on_disk) == m == store.manifest() == store.manifest(m.version)
    assert Manifest.from_dict(m.to_dict()) == m

    assert store.verify() == m
    assert sorted(p.name for p in store.path().iterdir()) == ["manifest.json", "rules.json", "sub"]
    assert list((store.root / ".staging").iterdir()) == []


def test_verify_names_a_tampered_file(store: ArtifactStore) -> None:
    m = _publish(store, {"a.bin": b"0123456789", "b.bin": b"xyz"})
    path = store.path(m.version) / "a.bin"
    data = bytearray(path.read_bytes())
    data[4] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"a\.bin: sha256 differs"):
        store.verify()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda folder: (folder / "a.bin").unlink(), r"a\.bin: missing"),
        (lambda folder: (folder / "extra.txt").write_text("x"), r"extra\.txt: extra file"),
        (lambda folder: (folder / "b.bin").write_bytes(b"longer!"), r"b\.bin: 7 bytes"),
    ],
    ids=["missing", "extra", "resized"],
)
def test_verify_detects_missing_extra_and_resized_files(store, change, message) -> None:
    _publish(store, {"a.bin": b"0123456789", "b.bin": b"xyz"})
    change(store.path())
    with pytest.raises(ArtifactError, match=message):
        store.verify()


def test_two_publishes_order_and_rollback(store: ArtifactStore) -> None:
    m1 = _publish(store, {"x.json": b"1"})
    m2 = _publish(store, {"x.json": b"2"})
    assert m1.version < m2.version
    assert store.versions() == [m1.version, m2.version]
    assert store.current_version() == m2.version

    assert store.rollback() == m1.version
    assert store.current_version() == m1.version
    assert (store.path() / "x.json").read_bytes() == b"1"
    with pytest.raises(ArtifactError, match="no version older"):
        store.rollback()
    assert store.rollback(m2.version) == m2.version
    assert store.current_version() == m2.version


def test_rollback_refuses_a_corrupted_version(store: ArtifactStore) -> None:
    m1 = _publish(store, {"x.json": b"1"})
    m2 = _publish(store, {"x.json": b"2"})
    (store.path(m1.version) / "x.json").write_bytes(b"9")
    with pytest.raises(ArtifactError, match=r"x\.json: sha256 differs"):
        store.rollback()
    assert store.current_version() == m2.version
    with pytest.raises(ArtifactError, match="does not exist"):
        store.rollback("20000101T000000000000Z")
    with pytest.raises(ArtifactError, match="not an artifact version name"):
        store.rollback("../../etc")
    assert store.current_version() == m2.version


def test_publish_prunes_to_keep_last(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art", keep_last=2)
    made = [_publish(store, {"x.json": str(i).encode()}).version for i in range(4)]
    assert store.versions() == made[-2:]
    assert store.current_version() == made[-1]
    assert list((store.root / ".staging").iterdir()) == []  # pruned folders are gone too


def test_prune_never_removes_current_after_rollback(tmp_path: Path) -> None:
    root = tmp_path / "art"
    store = ArtifactStore(root, keep_last=5)
    v1, v2, v3, v4 = (_publish(store, {"x.json": str(i).encode()}).version for i in range(4))
    store.rollback(v1)

    removed = ArtifactStore(root, keep_last=2).prune()
    assert removed == [v2]
    assert store.versions() == [v1, v3, v4]
    assert store.current_version() == v1
    store.verify()

    small = ArtifactStore(root, keep_last=1)
    v5 = _publish(small, {"x.json": b"5"}).version  # v1 is no longer current, so it goes
    assert small.versions() == [v5]


def test_keep_last_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="keep_last"):
        ArtifactStore(tmp_path, keep_last=0)


def test_staging_removed_on_exception(store: ArtifactStore) -> None:
    with pytest.raises(RuntimeError, match="job failed"), store.staging() as folder:
        (folder / "half.parquet").write_bytes(b"partial")
        raise RuntimeError("job failed")
    assert not folder.exists()
    assert store.versions() == []
    assert store.current_version() is None


def test_publish_failure_inside_staging_removes_folder(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactError, match="reserved"), store.staging() as folder:
        (folder / MANIFEST_NAME).write_text("{}")
        store.publish(folder, config={}, config_hash="h", inputs={})
    assert not folder.exists()
    assert store.versions() == []


def test_publish_after_the_staging_block_and_foreign_folders(
    store: ArtifactStore, tmp_path
) -> None:
    with store.staging() as folder:
        (folder / "a.txt").write_text("a")
    m = store.publish(folder, config={}, config_hash=config_hash({}), inputs={})
    assert store.verify().files == m.files
    with pytest.raises(ArtifactError, match="does not exist"):
        store.publish(folder, config={}, config_hash="h", inputs={})
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ArtifactError, match="not a staging folder"):
        store.publish(tmp_path / "elsewhere", config={}, config_hash="h", inputs={})


def test_publish_rejects_bad_config_and_symlinks(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config cannot be written as JSON"), store.staging() as f:
        store.publish(f, config={"bad": float("nan")}, config_hash="h", inputs={})
    target = tmp_path / "outside.txt"
    target.write_text("secret")
    with pytest.raises(ArtifactError, match="symlink"), store.staging() as folder:
        (folder / "link.txt").symlink_to(target)
        store.publish(folder, config={}, config_hash="h", inputs={})
    assert store.versions() == []


def test_staging_in_use_is_not_cleaned(store: ArtifactStore) -> None:
    with store.staging() as busy:
        (busy / "wip.bin").write_bytes(b"work in progress")
        _publish(store, {"x.json": b"1"})
        assert (busy / "wip.bin").exists()
    assert busy.exists()  # a normal exit leaves an unpublished folder; the next publish cleans it
    _publish(store, {"x.json": b"2"})
    assert not busy.exists()


def test_current_naming_a_missing_version_offers_rollback(store: ArtifactStore) -> None:
    m1 = _publish(store, {"x.json": b"1"})
    (store.root / "CURRENT").write_text("29991231T235959999999Z\n")
    with pytest.raises(ArtifactError, match=r"missing or incomplete.*rollback\(\)"):
        store.current_version()
    with pytest.raises(ArtifactError, match="missing or incomplete"):
        store.verify()
    assert store.rollback() == m1.version
    assert store.current_version() == m1.version

    (store.root / "CURRENT").write_text("garbage")
    with pytest.raises(ArtifactError, match="not a version name"):
        store.current_version()


def test_empty_store_reads(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "never-created")
    assert store.current_version() is None
    assert store.versions() == []
    assert store.prune() == []
    with pytest.raises(ArtifactError, match="nothing has been published"):
        store.manifest()
    assert not (tmp_path / "never-created").exists()


def test_incomplete_version_folders_are_not_listed(store: ArtifactStore) -> None:
    m1 = _publish(store, {"x.json": b"1"})
    (store.root / "versions" / "20991231T000000000000Z").mkdir()  # no manifest.json
    assert store.versions() == [m1.version]
    m2 = _publish(store, {"x.json": b"2"})
    assert m2.version > "20991231T000000000000Z"  # names stay unique and ordered
    assert store.versions() == [m1.version, m2.version]


_CRASH_SCRIPT = textwrap.dedent(
    """
    import sys
    from recsys.artifacts import ArtifactStore, config_hash

    store = ArtifactStore(sys.argv[1])
    with store.staging() as folder:
        (folder / "model.json").write_text('{"generation": 2}')
        store.publish(folder, config={"g": 2}, config_hash=config_hash({"g": 2}), inputs={})
    """
)


@pytest.mark.parametrize(
    "point", ["after_manifest", "after_rename", "before_pointer_replace", "after_pointer_replace"]
)
def test_crash_during_publish_leaves_a_verifiable_current(tmp_path: Path, point: str) -> None:
    root = tmp_path / "art"
    store = ArtifactStore(root)
    first = _publish(store, {"model.json": b'{"generation": 1}'}).version

    env = {**os.environ, "RECSYS_CRASH_AT": point}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH_SCRIPT, str(root)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    current = store.current_version()
    if point == "after_pointer_replace":
        assert current != first and current == store.versions()[-1]
        assert (store.path() / "model.json").read_text() == '{"generation": 2}'
    else:
        assert current == first
    store.verify()
    for version in store.versions():  # only complete versions are listed, and each verifies
        store.verify(version)
    if point == "after_manifest":
        assert store.versions() == [first]
        assert len(list((root / ".staging").iterdir())) == 1  # the crashed run's leftover
    else:
        assert len(store.versions()) == 2
    if point == "before_pointer_replace":
        assert list(root.glob("CURRENT.tmp-*"))

    fresh = _publish(store, {"model.json": b'{"generation": 3}'})
    assert store.current_version() == fresh.version == store.versions()[-1]
    store.verify()
    assert list((root / ".staging").iterdir()) == []
    assert list(root.glob("CURRENT.tmp-*")) == []


def test_config_hash_is_canonical() -> None:
    a = config_hash({"b": [1, 2], "a": {"y": 1, "x": "s"}})
    b = config_hash({"a": {"x": "s", "y": 1}, "b": [1, 2]})
    assert a == b == hashlib.sha256(b'{"a":{"x":"s","y":1},"b":[1,2]}').hexdigest()
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    with pytest.raises(ConfigError):
        config_hash({"when": datetime.now(UTC)})


def test_fingerprint_files(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_bytes(b"order_id\n1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "orders.csv").write_bytes(b"other")
    fp = fingerprint_files([tmp_path / "orders.csv"])
    assert fp == {
        "orders.csv": {"sha256": hashlib.sha256(b"order_id\n1\n").hexdigest(), "bytes": 11}
    }
    assert sha256_file(tmp_path / "orders.csv") == fp["orders.csv"]["sha256"]
    with pytest.raises(InputError, match="both named"):
        fingerprint_files([tmp_path / "orders.csv", tmp_path / "sub" / "orders.csv"])
    with pytest.raises(InputError, match="cannot read"):
        fingerprint_files([tmp_path / "missing.csv"])


def test_npz_round_trip(tmp_path: Path) -> None:
    arrays = {
        "ids": np.array(["sku-1", "sku-ü2", ""]),
        "scores": np.array([[0.5, 1.0], [2.0, -1.0]], dtype=np.float32),
        "counts": np.arange(5, dtype=np.int64),
        "flags": np.array([True, False]),
    }
    path = tmp_path / "model"  # no suffix: the file is written at exactly this path
    save_npz(path, **arrays)
    assert path.exists() and not (tmp_path / "model.npz").exists()
    loaded = load_npz(path)
    assert set(loaded) == set(arrays)
    for name, arr in arrays.items():
        assert loaded[name].dtype == arr.dtype
        np.testing.assert_array_equal(loaded[name], arr)


def test_npz_refuses_object_arrays(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"'ids'.*object.*astype\(str\)"):
        save_npz(tmp_path / "x.npz", ids=np.array(["a", 1], dtype=object))
    assert not (tmp_path / "x.npz").exists()
    np.savez(tmp_path / "pickled.npz", ids=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ArtifactError, match="without pickle"):
        load_npz(tmp_path / "pickled.npz")
    np.save(tmp_path / "single.npy", np.arange(3))
    with pytest.raises(ArtifactError, match="single .npy"):
        load_npz(tmp_path / "single.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="not a readable"):
        load_npz(tmp_path / "junk.npz")
