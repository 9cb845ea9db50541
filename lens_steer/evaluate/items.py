"""The transfer and localization items of one language and split, scored in one pass.

A point of the transfer–localization plane needs both scores under the same intervention; the
sweeps score hundreds of interventions, so both item kinds are turned into one list of scoring
requests once and split back into two :class:`Score` values per intervention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lens_steer.data.records import LocalizationItem, Split, TransferItem
from lens_steer.evaluate.scores import (
    Score,
    Variant,
    localization_requests,
    localization_share,
    select_split,
    transfer_accuracy,
    transfer_requests,
)
from lens_steer.evaluate.scoring import OptionScores, ScoringRequest


@dataclass(frozen=True)
class PlaneItems:
    """Scoring requests of transfer and localization items of one language, split and variant."""

    lang: str
    split: Split | None
    variant: Variant
    transfer: tuple[ScoringRequest, ...]
    answers: tuple[int, ...]
    localization: tuple[ScoringRequest, ...]

    @classmethod
    def build(
        cls,
        transfer_items: Sequence[TransferItem],
        localization_items: Sequence[LocalizationItem],
        *,
        split: Split | None = "eval",
        variant: Variant = "implicit",
        english_items: Sequence[TransferItem] | None = None,
    ) -> PlaneItems:
        """Select the split and build the requests; the items must share one language.

        Example:
            >>> items = PlaneItems.build(probe.transfer, probe.localization, split="dev")  # doctest: +SKIP
        """
        transfer = select_split(transfer_items, split, "transfer")
        localization = select_split(localization_items, split, "localization")
        langs = sorted({item.lang for item in transfer} | {item.lang for item in localization})
        if len(langs) != 1:
            raise ValueError(
                f"Plane items must be of one language; split {split!r} has {langs} "
                "(filter the items by language first)"
            )
        requests, answers = transfer_requests(transfer, variant, english_items=english_items)
        return cls(
            lang=langs[0],
            split=split,
            variant=variant,
            transfer=tuple(requests),
            answers=tuple(answers),
            localization=tuple(localization_requests(localization, variant)),
        )

    @property
    def requests(self) -> list[ScoringRequest]:
        """Transfer requests then localization requests, as scored together."""
        return [*self.transfer, *self.localization]

    def describe(self) -> dict[str, Any]:
        return {
            "lang": self.lang,
            "split": self.split,
            "variant": self.variant,
            "n_transfer": len(self.transfer),
            "n_localization": len(self.localization),
        }

    def scores(
        self,
        option_scores: Sequence[OptionScores],
        *,
        settings: dict[str, Any],
        normalize: bool = False,
        n_bootstrap: int = 1000,
        seed: int = 0,
    ) -> tuple[Score, Score]:
        """``(transfer, localization)`` scores from the option scores of :attr:`requests`."""
        if len(option_scores) != len(self.transfer) + len(self.localization):
            raise ValueError(
                f"Expected {len(self.transfer) + len(self.localization)} scored requests, "
                f"got {len(option_scores)}"
            )
        full = {**self.describe(), **settings}
        cut = len(self.transfer)
        transfer = transfer_accuracy(
            option_scores[:cut], self.answers, normalize=normalize, n_bootstrap=n_bootstrap,
            seed=seed, settings=full,
        )  # fmt: skip
        localization = localization_share(
            option_scores[cut:], normalize=normalize, n_bootstrap=n_bootstrap, seed=seed,
            settings=full,
        )  # fmt: skip
        return transfer, localization
