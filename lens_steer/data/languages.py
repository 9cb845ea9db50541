"""Languages, countries and study targets as data: one registry every module reads.

The registry starts from ``languages.json`` beside this file (the 13 BLEnD languages and 16
BLEnD countries/regions). A user adds a language without code: declare it in the ``meta``
record of a JSONL file (``{"kind": "meta", "version": "1", "languages": [{...}]}``), or call
:func:`register_language`. A *target* is what the study steers towards: a (language, country)
pair, e.g. ``es:Mexico``; a bare language code means its default country.

Example:
    >>> language("ko").our_country
    '우리나라'
    >>> parse_target("es:Mexico")
    Target(lang='es', country='Mexico')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

ENGLISH = "en"
_REGISTRY_FILE = Path(__file__).resolve().parent / "languages.json"


@dataclass(frozen=True)
class Language:
    """How the study writes prompts in one language.

    Attributes:
        code: the language code used in data files (``"ko"``).
        name: English name (``"Korean"``).
        script: ISO 15924 script code (``"Hang"``).
        space_separated: whether a continuation follows the prompt after a space.
        question_cue, answer_cue: the "Question: ...\\nAnswer:" frame of the language.
        our_country, our_region: the implicit "our country" / "our region" phrases.
        default_country: the country a bare ``--langs`` code studies.
    """

    code: str
    name: str
    script: str
    space_separated: bool
    question_cue: str
    answer_cue: str
    our_country: str
    our_region: str
    default_country: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Country:
    """A country or region the study can target (BLEnD's file stem as its name where it has one)."""

    name: str
    english_name: str
    lang: str
    region: bool = False
    blend: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, order=True)
class Target:
    """A (language, country) pair: prompts in ``lang``, answers of ``country``'s culture."""

    lang: str
    country: str

    @property
    def key(self) -> str:
        """``"ko:South_Korea"``: how results, files and figures name the target."""
        return f"{self.lang}:{self.country}"

    @property
    def slug(self) -> str:
        """A file-name-safe form of :attr:`key` (``"ko-South_Korea"``)."""
        return f"{self.lang}-{self.country}"

    def __str__(self) -> str:
        return self.key


def _field_error(where: str, message: str) -> ValueError:
    return ValueError(f"{where}: {message}")


def _checked(obj: Any, cls: type, where: str) -> dict[str, Any]:
    """The fields of ``cls`` from a JSON object, with types checked and errors naming the field."""
    if not isinstance(obj, Mapping):
        raise _field_error(where, f"expected an object, got {type(obj).__name__}")
    names = [f.name for f in fields(cls)]
    required = [
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    ]
    missing = [name for name in required if name not in obj]
    if missing:
        raise _field_error(where, f"field(s) {missing} missing; a {cls.__name__} has {names}")
    unknown = [key for key in obj if key not in names]
    if unknown:
        raise _field_error(where, f"unknown field(s) {unknown}; a {cls.__name__} has {names}")
    values = {}
    for f in fields(cls):
        if f.name not in obj:
            continue
        value = obj[f.name]
        wanted = bool if f.type in ("bool", bool) else str
        if not isinstance(value, wanted) or (isinstance(value, str) and not value.strip()):
            raise _field_error(where, f"field {f.name!r} must be a non-empty {wanted.__name__}")
        values[f.name] = value
    return values


def language_from_json(obj: Any, where: str = "language") -> Language:
    """Build a :class:`Language` from a JSON object; errors name ``where`` and the field."""
    return Language(**_checked(obj, Language, where))


def country_from_json(obj: Any, where: str = "country") -> Country:
    """Build a :class:`Country` from a JSON object; errors name ``where`` and the field."""
    return Country(**_checked(obj, Country, where))


def _load_registry(path: Path) -> tuple[dict[str, Language], dict[str, Country]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    langs = {}
    for index, obj in enumerate(data["languages"]):
        lang = language_from_json(obj, f"{path} languages[{index}]")
        langs[lang.code] = lang
    found = {}
    for index, obj in enumerate(data["countries"]):
        country = country_from_json(obj, f"{path} countries[{index}]")
        found[country.name] = country
    return langs, found


_LANGUAGES, _COUNTRIES = _load_registry(_REGISTRY_FILE)


def languages() -> tuple[Language, ...]:
    """Every registered language, in registration order."""
    return tuple(_LANGUAGES.values())


def language(code: str) -> Language:
    """The registered language with this code; the error lists the known codes."""
    try:
        return _LANGUAGES[code]
    except (KeyError, TypeError):
        known = ", ".join(_LANGUAGES)
        raise ValueError(
            f"unknown language code {code!r}; known: {known} (declare a new one in your JSONL "
            "meta record or with lens_steer.register_language)"
        ) from None


def is_known_language(code: str) -> bool:
    return code in _LANGUAGES


def countries(lang: str | None = None) -> tuple[Country, ...]:
    """Every registered country (of one language when ``lang`` is given)."""
    return tuple(c for c in _COUNTRIES.values() if lang is None or c.lang == lang)


def country(name: str) -> Country:
    """A registered country; accepts ``"South_Korea"``, ``"South Korea"`` or ``"south korea"``."""
    key = name.strip().replace(" ", "_").casefold()
    for stem, info in _COUNTRIES.items():
        if stem.casefold() == key:
            return info
    raise ValueError(f"unknown country {name!r}; known: {', '.join(_COUNTRIES)}")


def register_language(lang: Language, *, source: str = "register_language") -> Language:
    """Add a language to the registry (a no-op for an identical definition).

    A different definition of a known code is refused: two definitions of "ko" in one process
    would make results depend on import order.
    """
    existing = _LANGUAGES.get(lang.code)
    if existing is not None and existing != lang:
        raise ValueError(
            f"{source}: language {lang.code!r} is already registered with other settings "
            f"({existing}); use another code"
        )
    _LANGUAGES[lang.code] = lang
    if lang.default_country and lang.default_country not in _COUNTRIES:
        register_country(Country(lang.default_country, lang.default_country, lang.code))
    return lang


def register_country(info: Country, *, source: str = "register_country") -> Country:
    """Add a country or region to the registry (a no-op for an identical definition)."""
    language(info.lang)
    existing = _COUNTRIES.get(info.name)
    if existing is not None and existing != info:
        raise ValueError(
            f"{source}: country {info.name!r} is already registered with other settings "
            f"({existing})"
        )
    _COUNTRIES[info.name] = info
    return info


def parse_target(text: str) -> Target:
    """``"es:Mexico"`` -> Target("es", "Mexico"); ``"ko"`` -> Korean with its default country.

    The language must be registered; the country, when given, must be registered for that
    language (``ko:Mexico`` is refused with the countries that do speak it).
    """
    lang_code, _, name = text.partition(":")
    lang = language(lang_code.strip())
    if not name.strip():
        return Target(lang.code, lang.default_country)
    info = country(name)
    if info.lang != lang.code:
        speaking = [c.name for c in countries(lang.code)] or ["none registered"]
        raise ValueError(
            f"target {text!r}: {info.name} is a {language(info.lang).name}-language country in "
            f"the registry, not {lang.name}; {lang.name} countries: {', '.join(speaking)}"
        )
    return Target(lang.code, info.name)
