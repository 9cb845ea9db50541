"""The shipped BLEnD-derived set: six countries only, reproducible, no raw BLEnD, no leaks."""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import json
import re
from pathlib import Path

import pytest

import lens_steer
from lens_steer.data import SPLITS, load_jsonl
from lens_steer.data.blend_implicit import RULES, english_rules

PACKAGE = Path(lens_steer.__file__).resolve().parent
DERIVED = PACKAGE / "data" / "blend_derived"
SCRIPT = PACKAGE.parent / "scripts" / "build_blend_derived.py"
VERSION = "blend-derived-1.0"
# The six BLEnD countries of the study's LOC languages: nothing else may be shipped.
COUNTRY_LANG = {
    "South_Korea": "ko",
    "China": "zh",
    "Spain": "es",
    "Indonesia": "id",
    "Greece": "el",
    "Iran": "fa",
}
MIN_EVAL = 80
# The "our country" phrase each implicit question must carry (Greek declines χώρα: only "μας").
OUR_COUNTRY = {
    "South_Korea": "우리나라",
    "China": "我国",
    "Spain": "nuestro país",
    "Indonesia": "negara kita",
    "Greece": "μας",
    "Iran": "کشور ما",
}
# The layout of raw BLEnD files (annotations, questions, prompts).
RAW_NAME = re.compile(r".*_(data\.json|questions\.(csv|json)|prompts\.csv)$")


def _build_module():
    spec = importlib.util.spec_from_file_location("build_blend_derived", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shipped(country: str):
    return load_jsonl(DERIVED / f"{country}.jsonl")


def test_the_folder_holds_the_six_countries_and_nothing_else():
    names = {path.name for path in DERIVED.iterdir() if not path.name.startswith(".")}
    expected = {f"{country}.jsonl" for country in COUNTRY_LANG}
    assert names == expected | {"skipped.json", "README.md", "LICENSE.md"}


@pytest.mark.parametrize("country", sorted(COUNTRY_LANG))
def test_shipped_files_load_and_hold_only_their_country(country):
    probes = _shipped(country)
    assert probes.version == VERSION
    assert not (probes.transfer or probes.localization or probes.parallel or probes.facts)
    assert probes.blend
    assert {item.country for item in probes.blend} == {country}
    assert {item.lang for item in probes.blend} == {COUNTRY_LANG[country]}
    ids = [item.id for item in probes.blend]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    first = (DERIVED / f"{country}.jsonl").read_text(encoding="utf-8").split("\n", 1)[0]
    assert first == json.dumps({"kind": "meta", "version": VERSION})


def test_the_build_script_ships_only_the_six_countries():
    assert _build_module().COUNTRIES == tuple(COUNTRY_LANG)


def test_counts_per_split_meet_the_floor_and_match_skipped_json_and_the_readme():
    report = json.loads((DERIVED / "skipped.json").read_text(encoding="utf-8"))
    readme = (DERIVED / "README.md").read_text(encoding="utf-8")
    assert report["version"] == VERSION
    assert set(report["countries"]) == set(COUNTRY_LANG)
    for country, lang in COUNTRY_LANG.items():
        items = _shipped(country).blend
        counts = collections.Counter(item.split for item in items)
        print(
            f"{country} ({lang}): {len(items)} items, "
            + ", ".join(f"{split} {counts[split]}" for split in SPLITS)
        )
        assert counts["eval"] >= MIN_EVAL, (country, counts)
        entry = report["countries"][country]
        assert entry["kept"] == len(items)
        assert entry["kept_per_split"] == {split: counts[split] for split in SPLITS}
        assert (
            entry["skipped"]
            == len(entry["skipped_ids"])
            == sum(entry["skipped_per_reason"].values())
        )
        assert not set(entry["skipped_ids"]) & {item.id for item in items}
        row = (
            f"| {country} | {lang} | {len(items)} | {counts['fit']} | {counts['dev']} | "
            f"{counts['eval']} | {entry['skipped']} |"
        )
        assert row in readme, row


@pytest.mark.parametrize("country", sorted(COUNTRY_LANG))
def test_no_implicit_question_names_the_country(country):
    forbidden = RULES[country].forbidden
    english_forbidden = english_rules(country).forbidden
    for item in _shipped(country).blend:
        leaks = [pattern for pattern in forbidden if re.search(pattern, item.implicit)]
        assert not leaks, (item.id, item.implicit, leaks)
        assert OUR_COUNTRY[country].casefold() in item.implicit.casefold(), item.id
        if item.english_implicit:
            leaks = [p for p in english_forbidden if re.search(p, item.english_implicit)]
            assert not leaks, (item.id, item.english_implicit, leaks)


def test_every_item_has_a_gold_answer_with_votes():
    for country in COUNTRY_LANG:
        for item in _shipped(country).blend:
            assert item.answers and all(answer.text.strip() for answer in item.answers)
            votes = [answer.votes for answer in item.answers]
            assert votes == sorted(votes, reverse=True), item.id


def test_no_raw_blend_file_is_in_the_package():
    raw = [path for path in PACKAGE.rglob("*") if path.is_file() and RAW_NAME.match(path.name)]
    assert not raw, raw


def test_no_package_file_is_a_copy_of_a_raw_blend_file(blend_root):
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    raw = {digest(path) for path in blend_root.rglob("*") if path.is_file()}
    copies = [path for path in PACKAGE.rglob("*") if path.is_file() and digest(path) in raw]
    assert not copies, copies


def test_rebuilding_from_the_shared_copy_reproduces_the_shipped_files(blend_root, tmp_path):
    report = _build_module().build(blend_root, tmp_path)
    built = sorted(path.name for path in tmp_path.iterdir())
    shipped = sorted(p.name for p in DERIVED.iterdir() if p.suffix in (".jsonl", ".json"))
    assert built == shipped
    for name in built:
        assert (tmp_path / name).read_bytes() == (DERIVED / name).read_bytes(), name
    assert set(report["countries"]) == set(COUNTRY_LANG)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_the_build_script_refuses_a_folder_that_is_not_blend(tmp_path, capsys):
    module = _build_module()
    assert module.main(["--root", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "Not a BLEnD folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_licence_and_the_readme_carry_the_attribution():
    licence = (DERIVED / "LICENSE.md").read_text(encoding="utf-8")
    readme = (DERIVED / "README.md").read_text(encoding="utf-8")
    for text in (licence, readme):
        assert "https://creativecommons.org/licenses/by-sa/4.0/legalcode" in text
        assert "BLEnD" in text and "Myung" in text and "NeurIPS 2024" in text
        assert "https://github.com/nlee0212/BLEnD" in text
        assert "https://huggingface.co/datasets/nayeon212/BLEnD" in text
    assert "MIT" in licence and "only" in licence
    assert "scripts/build_blend_derived.py" in readme
