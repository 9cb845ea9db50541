"""lens_steer._io: atomic writes, safetensors reads that name the file, tensor bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lens_steer import _io
from lens_steer._io import (
    fingerprint,
    load_tensor_bundle,
    load_tensors,
    read_json,
    save_tensor_bundle,
    tensor_digest,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)

FORMAT = "test.Bundle/1"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------- atomic writes


def test_atomic_text_and_json_writes_replace_the_file_and_are_world_readable(tmp_path: Path):
    path = tmp_path / "deep" / "out.json"
    write_json_atomic(path, {"b": [1, 2], "a": "우리나라"})
    assert read_json(path) == {"b": [1, 2], "a": "우리나라"}
    assert "우리나라" in path.read_text(encoding="utf-8")  # not \u-escaped
    write_text_atomic(path, "second")
    assert path.read_text() == "second"
    assert path.stat().st_mode & 0o777 == 0o644
    write_jsonl_atomic(tmp_path / "rows.jsonl", [{"i": 1}, {"i": 2}])
    assert (tmp_path / "rows.jsonl").read_text() == '{"i": 1}\n{"i": 2}\n'
    assert _leftovers(path.parent) == [] and _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path: Path):
    path = tmp_path / "out.json"
    write_json_atomic(path, {"kept": True})
    with pytest.raises(ValueError, match="Out of range float values"):
        write_json_atomic(path, {"bad": float("nan")})  # NaN is refused before any write
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json_atomic(path, {"bad": object()})

    def crash(tmp: Path) -> None:
        tmp.write_text("half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _io._atomic(path, crash)
    assert read_json(path) == {"kept": True}
    assert _leftovers(tmp_path) == []


def test_an_interrupted_write_leaves_no_temporary_file(tmp_path: Path):
    def interrupted(tmp: Path) -> None:
        tmp.write_bytes(b"\0" * 100)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _io._atomic(tmp_path / "never.bin", interrupted)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- safetensors files


def test_load_tensors_reads_what_was_saved(tmp_path: Path):
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2)}
    _io.save_tensors_atomic(tmp_path / "t.safetensors", tensors)
    back = load_tensors(tmp_path / "t.safetensors")
    assert set(back) == {"a", "b"}
    assert torch.equal(back["a"], tensors["a"]) and torch.equal(back["b"], tensors["b"])


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_safetensors_file_is_a_value_error_naming_the_full_path(tmp_path, damage):
    path = tmp_path / "sub" / "acts.safetensors"
    path.parent.mkdir()
    save_file({"acts": torch.randn(64, 32)}, str(path))
    data = path.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"not a safetensors file", "empty": b""}[
            damage
        ]
    )
    with pytest.raises(ValueError) as info:
        load_tensors(path)
    message = str(info.value)
    assert str(path.resolve()) in message
    assert "damaged or truncated" in message


def test_a_missing_safetensors_file_is_file_not_found_naming_the_full_path(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path.resolve() / "none.safetensors")):
        load_tensors(tmp_path / "none.safetensors")


# ---------------------------------------------------------------- digests and bundles


def test_fingerprint_depends_on_names_shapes_dtypes_and_bytes_only():
    x = torch.arange(6, dtype=torch.float32)
    assert fingerprint({"x": x}) == fingerprint({"x": x.clone()})
    assert len(fingerprint({"x": x})) == 32
    assert fingerprint({"x": x}) != fingerprint({"y": x})
    assert fingerprint({"x": x}) != fingerprint({"x": x.reshape(2, 3)})
    assert fingerprint({"x": x}) != fingerprint({"x": x.double()})
    changed = x.clone()
    changed[3] = 3.0000002  # one ulp away
    assert fingerprint({"x": x}) != fingerprint({"x": changed})
    # Order of names does not matter; non-contiguous views hash their values.
    y = torch.ones(2)
    assert fingerprint({"x": x, "y": y}) == fingerprint({"y": y, "x": x})
    assert tensor_digest(x.reshape(2, 3).T) == tensor_digest(x.reshape(2, 3).T.contiguous())


def test_tensor_bundle_round_trips_tensors_and_metadata(tmp_path: Path):
    tensors = {"v": torch.randn(3, 4), "b": torch.randn(2, 3, 4).double()}
    paths = save_tensor_bundle(tmp_path / "bundle.json", tensors, {"format": FORMAT, "k": [1]})
    assert paths == {
        "tensors": tmp_path / "bundle.safetensors",
        "metadata": tmp_path / "bundle.json",
    }
    back, meta = load_tensor_bundle(tmp_path / "bundle", expected_format=FORMAT)
    assert meta["k"] == [1] and meta["fingerprint"] == fingerprint(tensors)
    for name, tensor in tensors.items():
        assert torch.equal(back[name], tensor) and back[name].dtype == tensor.dtype
    assert _leftovers(tmp_path) == []


def test_a_bundle_whose_sidecar_fingerprint_differs_is_refused(tmp_path: Path):
    save_tensor_bundle(tmp_path / "a", {"v": torch.zeros(3)}, {"format": FORMAT})
    save_tensor_bundle(tmp_path / "b", {"v": torch.ones(3)}, {"format": FORMAT})
    # An interrupted overwrite: the new tensors beside the old sidecar.
    (tmp_path / "a.safetensors").write_bytes((tmp_path / "b.safetensors").read_bytes())
    with pytest.raises(ValueError) as info:
        load_tensor_bundle(tmp_path / "a", expected_format=FORMAT)
    assert "fingerprints differ" in str(info.value)
    assert str((tmp_path / "a.json").resolve()) in str(info.value)
    assert str((tmp_path / "a.safetensors").resolve()) in str(info.value)


def test_a_bundle_with_an_edited_fingerprint_or_format_is_refused(tmp_path: Path):
    save_tensor_bundle(tmp_path / "a", {"v": torch.zeros(3)}, {"format": FORMAT})
    meta = json.loads((tmp_path / "a.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps({**meta, "fingerprint": "0" * 32}))
    with pytest.raises(ValueError, match="fingerprints differ"):
        load_tensor_bundle(tmp_path / "a", expected_format=FORMAT)
    (tmp_path / "a.json").write_text(json.dumps({**meta, "format": "other/1"}))
    with pytest.raises(ValueError, match=r"format 'other/1', expected 'test\.Bundle/1'"):
        load_tensor_bundle(tmp_path / "a", expected_format=FORMAT)


@pytest.mark.parametrize(
    ("sidecar", "match"),
    [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object, got list")],
)
def test_a_bundle_with_a_broken_sidecar_names_it(tmp_path: Path, sidecar: str, match: str):
    save_tensor_bundle(tmp_path / "a", {"v": torch.zeros(3)}, {"format": FORMAT})
    (tmp_path / "a.json").write_text(sidecar)
    with pytest.raises(ValueError, match=match) as info:
        load_tensor_bundle(tmp_path / "a", expected_format=FORMAT)
    assert str((tmp_path / "a.json").resolve()) in str(info.value)


def test_a_bundle_missing_either_file_names_the_missing_one(tmp_path: Path):
    save_tensor_bundle(tmp_path / "a", {"v": torch.zeros(3)}, {"format": FORMAT})
    (tmp_path / "a.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"a\.json not found"):
        load_tensor_bundle(tmp_path / "a", expected_format=FORMAT)
    save_tensor_bundle(tmp_path / "b", {"v": torch.zeros(3)}, {"format": FORMAT})
    (tmp_path / "b.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"b\.safetensors not found"):
        load_tensor_bundle(tmp_path / "b", expected_format=FORMAT)
