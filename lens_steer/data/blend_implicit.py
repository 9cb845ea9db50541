"""Derive the implicit form of a BLEnD question: the country mention becomes "our country".

BLEnD asks every question with the country named ("대한민국에서 …", "在中国，…"). The study needs
the same question with the culture left implicit, so each country has a small rule set that
rewrites the mention into that language's "our country" phrase (or "our region" for the three
regions) in the right grammatical form. A question is never guessed at: when it has no mention,
when a form the rules do not cover remains (a demonym such as 한국식 / españoles / ایرانی, a
case ending, a mention glued to another word), the derivation fails with a reason and the loader
skips the item.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

Replacement = str | Callable[[re.Match[str]], str]

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
# Korean particles that change after a vowel-final noun (우리나라) versus a consonant-final one.
_KO_CONSONANT_TO_VOWEL = (
    ("이다", "이다"),  # the copula may stay after a vowel
    ("이며", "이며"),
    ("이고", "이고"),
    ("이에요", "예요"),
    ("으로", "로"),
    ("이나", "나"),
    ("이랑", "랑"),
    ("이라는", "라는"),
    ("이란", "란"),
    ("은", "는"),
    ("이", "가"),
    ("을", "를"),
    ("과", "와"),
)
_KO_NEUTRAL = (
    "에서",
    "에게",
    "에는",
    "에선",
    "에",
    "의",
    "도",
    "만",
    "까지",
    "부터",
    "보다",
    "처럼",
)


class DerivationError(ValueError):
    """The implicit form of one question cannot be derived safely; ``reason`` says why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class ImplicitRules:
    """How one country's mention is found and rewritten in its language.

    ``rules`` are applied in order (longer, more specific patterns first); ``forbidden`` lists
    patterns that must not remain afterwards (the name itself, demonyms, adjectives).
    """

    phrase: str
    rules: tuple[tuple[str, Replacement], ...]
    forbidden: tuple[str, ...]
    blocked: tuple[str, ...] = ()  # forms the rules would rewrite wrongly ("bahasa Indonesia")

    def derive(self, question: str) -> str:
        """The implicit question, or ``DerivationError`` with the reason it cannot be made."""
        for pattern in self.blocked:
            if re.search(pattern, question):
                raise DerivationError(
                    f"a country form the rules do not rewrite remains ({pattern})"
                )
        implicit = question
        for pattern, replacement in self.rules:
            implicit = re.sub(pattern, replacement, implicit)
        leftover = [p for p in self.forbidden if re.search(p, implicit)]
        if leftover:
            raise DerivationError(
                f"a country form the rules do not rewrite remains ({leftover[0]})"
            )
        if implicit == question:
            raise DerivationError("the question does not name the country")
        return implicit


def _ko_rules(name: str) -> ImplicitRules:
    """Korean: replace ``name`` by 우리나라 and adapt the particle glued to it."""
    phrase = "우리나라"
    last = ord(name[-1])
    if not _HANGUL_FIRST <= last <= _HANGUL_LAST:
        raise ValueError(f"Korean country name must end in a Hangul syllable: {name!r}")
    name_has_final = (last - _HANGUL_FIRST) % 28 != 0

    def replace(match: re.Match[str]) -> str:
        suffix = match.group(1)
        if not suffix:
            return phrase
        if name_has_final:
            for consonant_form, vowel_form in _KO_CONSONANT_TO_VOWEL:
                if suffix.startswith(consonant_form):
                    return phrase + vowel_form + suffix[len(consonant_form) :]
        if suffix.startswith(_KO_NEUTRAL):
            return phrase + suffix
        # 한국식, 한국어, 한국인…: a compound, not the country with a particle.
        return match.group(0)

    return ImplicitRules(
        phrase=phrase,
        rules=((rf"{name}([가-힣]*)", replace),),
        forbidden=(name,),
    )


def _latin(
    names: tuple[str, ...], phrase: str, extra: tuple[tuple[str, str], ...] = ()
) -> tuple[tuple[str, Replacement], ...]:
    """Whole-word replacement of each name, capitalised at the start of a sentence."""

    def replace(match: re.Match[str]) -> str:
        start = match.start()
        before = match.string[:start].rstrip(" ")
        sentence_start = not before or before[-1] in "¿¡.!?"
        return phrase[0].upper() + phrase[1:] if sentence_start else phrase

    def pattern(name: str) -> str:
        if name.startswith("the "):
            return rf"\b[Tt]he {re.escape(name[4:])}\b"
        return rf"\b{re.escape(name)}\b"

    return (*extra, *((pattern(name), replace) for name in names))


_ES_PREPOSITIONS = "[Ee]n|[Dd]e|a|[Pp]ara|[Pp]or|[Dd]esde|[Hh]acia|[Ss]obre|[Ee]ntre"

# The rule sets, by BLEnD file stem. Regions use "our region"-type phrases: replacing Assam,
# West Java or Northern Nigeria by "our country" would name a different place (India, Indonesia,
# Nigeria).
RULES: dict[str, ImplicitRules] = {
    "South_Korea": ImplicitRules(
        "우리나라",
        (*_ko_rules("대한민국").rules, *_ko_rules("한국").rules),
        ("대한민국", "한국", "대힌민국"),
    ),
    "North_Korea": ImplicitRules("우리나라", _ko_rules("북한").rules, ("북한", "조선")),
    "China": ImplicitRules(
        "我国",
        (("中国人", "我国人民"), ("中国", "我国")),
        ("中国", "中华", "中餐", "中式"),
    ),
    # Spanish and Arabic: only after a preposition. As a subject the country's gender would
    # have to agree with "país"/"بلد" (España es conocida -> *nuestro país es conocida).
    "Spain": ImplicitRules(
        "nuestro país",
        ((rf"\b({_ES_PREPOSITIONS}) España\b", r"\1 nuestro país"),),
        (r"\bEspaña\b", r"(?i)\bespañol", r"(?i)\bhispan"),
    ),
    "Mexico": ImplicitRules(
        "nuestro país",
        ((rf"\b({_ES_PREPOSITIONS}) M[eé]xico\b", r"\1 nuestro país"),),
        (r"(?i)\bm[eé]xic",),
    ),
    "Indonesia": ImplicitRules(
        "negara kita",
        _latin(
            ("Indonesia",),
            "negara kita",
            (
                (r"\borang-orang Indonesia\b", "orang-orang di negara kita"),
                (r"\borang Indonesia\b", "orang di negara kita"),
            ),
        ),
        (r"(?i)\bindonesia",),
        blocked=(r"(?i)\bbahasa Indonesia\b",),
    ),
    "West_Java": ImplicitRules(
        "daérah urang",
        _latin(("Jawa Barat",), "daérah urang"),
        (r"(?i)\bjawa barat\b", r"(?i)\bsunda\b"),
    ),
    "Greece": ImplicitRules(
        "η χώρα μας",
        (
            (r"\b[Σσ]την Ελλάδα\b", lambda m: m.group(0)[0] + "τη χώρα μας"),
            (r"\bτης Ελλάδ(?:ας|ος)\b", "της χώρας μας"),
            (r"\b[Ττ]ην Ελλάδα\b", lambda m: m.group(0)[0] + "η χώρα μας"),
            (r"\b([Ηη]) Ελλάδα\b", lambda m: m.group(1) + " χώρα μας"),
        ),
        ("Ελλάδ", "Έλλην", "Ελλην", "ελλην", "ΕΛΛΑΔ"),
    ),
    "Iran": ImplicitRules(
        "کشور ما",
        (
            (r"کشور ایران(?![\w\u200c])", "کشور ما"),
            (r"(?<![\w\u200c])در\s?ایران(?![\w\u200c])", "در کشور ما"),
            (r"(?<![\w\u200c])ایران(?![\w\u200c])", "کشور ما"),
        ),
        ("ایران", "ايران", "پارس"),
    ),
    "Algeria": ImplicitRules(
        "بلدنا",
        (
            (r"(?<![\w])بالجزائر(?![\w])", "ببلدنا"),
            (r"(?<![\w])(في|من|إلى|عن|على) الجزائر(?![\w])", r"\1 بلدنا"),
        ),
        ("الجزائر", "جزائري", "جزائر"),
    ),
    "Azerbaijan": ImplicitRules(
        "ölkəmiz",
        (
            (r"\bAzərbaycanda\b", "ölkəmizdə"),
            (r"\bAzərbaycandan\b", "ölkəmizdən"),
            (r"\bAzərbaycanın\b", "ölkəmizin"),
            (r"\bAzərbaycana\b", "ölkəmizə"),
            (r"\bAzərbaycanı\b", "ölkəmizi"),
            (r"\bAzərbaycan\b", "ölkəmiz"),
        ),
        (r"(?i)azərbaycan", r"(?i)azerbaycan"),
    ),
    "Ethiopia": ImplicitRules(
        "አገራችን",
        ((r"(?<![\u1200-\u137F])([የበከለ]?)ኢትዮጵያ(?![\u1200-\u137F])", r"\1አገራችን"),),
        ("ኢትዮጵያ",),
    ),
    "Assam": ImplicitRules(
        "আমাৰ ৰাজ্য",
        (
            (r"(?<![\u0980-\u09FF])অসমত(?![\u0980-\u09FF])", "আমাৰ ৰাজ্যত"),
            (r"(?<![\u0980-\u09FF])অসমৰ(?![\u0980-\u09FF])", "আমাৰ ৰাজ্যৰ"),
            (r"(?<![\u0980-\u09FF])অসমলৈ(?![\u0980-\u09FF])", "আমাৰ ৰাজ্যলৈ"),
            (r"(?<![\u0980-\u09FF])অসম(?![\u0980-\u09FF])", "আমাৰ ৰাজ্য"),
        ),
        ("অসম",),
    ),
    "Northern_Nigeria": ImplicitRules(
        "yankinmu",
        _latin(("Arewacin Najeriya",), "yankinmu"),
        (r"(?i)\barewa", r"(?i)najeriya"),
    ),
    "US": ImplicitRules(
        "our country",
        _latin(("the US", "the USA", "the United States", "US", "USA"), "our country"),
        (r"\bUS\b", r"\bUSA\b", r"United States", r"\bAmerica"),
    ),
    "UK": ImplicitRules(
        "our country",
        _latin(("the UK", "the United Kingdom", "UK"), "our country"),
        (
            r"\bUK\b",
            r"United Kingdom",
            r"\bBritain\b",
            r"\bBritish\b",
            r"\bEngland\b",
            r"\bEnglish\b",
        ),
    ),
}

# English names and demonyms, for the English "our country" question of every BLEnD country.
ENGLISH_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "South_Korea": (("South Korea", "Korea"), ("Korean",), "our country"),
    "North_Korea": (("North Korea",), ("Korean",), "our country"),
    "China": (("China",), ("Chinese",), "our country"),
    "Spain": (("Spain",), ("Spanish", "Spaniard"), "our country"),
    "Mexico": (("Mexico",), ("Mexican",), "our country"),
    "Indonesia": (("Indonesia",), ("Indonesian",), "our country"),
    "West_Java": (("West Java",), ("Sundanese", "Javanese"), "our region"),
    "Greece": (("Greece",), ("Greek",), "our country"),
    "Iran": (("Iran",), ("Iranian", "Persian"), "our country"),
    "Algeria": (("Algeria",), ("Algerian",), "our country"),
    "Azerbaijan": (("Azerbaijan",), ("Azerbaijani",), "our country"),
    "Ethiopia": (("Ethiopia",), ("Ethiopian",), "our country"),
    "Assam": (("Assam",), ("Assamese",), "our region"),
    "Northern_Nigeria": (("Northern Nigeria",), ("Nigerian", "Hausa"), "our region"),
    "US": (("the US", "the USA", "the United States", "US", "USA"), ("American",), "our country"),
    "UK": (("the UK", "the United Kingdom", "UK"), ("British", "English"), "our country"),
}


def english_rules(country: str) -> ImplicitRules:
    """Rules that turn BLEnD's English question for ``country`` into its "our country" form."""
    names, demonyms, phrase = ENGLISH_NAMES[country]
    possessive = tuple((rf"\b{re.escape(name)}'s\b", f"{phrase}'s") for name in names)
    return ImplicitRules(
        phrase,
        (*possessive, *_latin(names, phrase)),
        (*(rf"\b{re.escape(name)}\b" for name in names), *(rf"\b{d}" for d in demonyms)),
    )
