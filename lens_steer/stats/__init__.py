"""Statistics of paired, controlled effects and the verdicts of pre-registered findings (SPEC §8).

numpy and scipy only: every function works on plain per-item arrays, so each rule can be
checked on synthetic data.

* :mod:`~lens_steer.stats.intervals`: proportion intervals (Wilson, Clopper–Pearson) and the
  item bootstrap (percentile or BCa; mean and ratio of sums).
* :mod:`~lens_steer.stats.paired`: steered vs unsteered on the same items (bootstrap, Wilcoxon,
  exact McNemar).
* :mod:`~lens_steer.stats.controls`: effects net of random-direction controls.
* :mod:`~lens_steer.stats.power`: detectable effects.
* :mod:`~lens_steer.stats.equivalence`: TOST and the sign-flip null of a fitted cosine.
* :mod:`~lens_steer.stats.bands`: the early, middle and late thirds of a model.
* :mod:`~lens_steer.stats.findings` and :mod:`~lens_steer.stats.verdicts`: findings and the rules
  that give them ``supported`` / ``refuted`` / ``inconclusive``.
"""

from lens_steer.stats.bands import BANDS, Band, band_layers, band_means, layer_band
from lens_steer.stats.controls import ControlledEffect, net_effect
from lens_steer.stats.equivalence import (
    Equivalence,
    equivalence_test,
    null_quantile,
    sign_flip_null,
)
from lens_steer.stats.findings import Finding, Verdict, directional_verdict
from lens_steer.stats.intervals import (
    BootstrapDistribution,
    IntervalMethod,
    ProportionMethod,
    Statistic,
    bootstrap_distribution,
    bootstrap_mean,
    bootstrap_mean_interval,
    bootstrap_ratio_interval,
    proportion_interval,
)
from lens_steer.stats.paired import (
    PairedEffect,
    difference_of_effects,
    effect_of_differences,
    mcnemar_p,
    paired_effect,
    wilcoxon_p,
)
from lens_steer.stats.power import (
    Approximation,
    detectable_effect,
    detectable_from_standard_error,
)
from lens_steer.stats.verdicts import (
    band_peak_verdict,
    equivalence_verdict,
    ordering_verdict,
    superiority_noninferiority_verdict,
)

__all__ = [
    "BANDS",
    "Approximation",
    "Band",
    "BootstrapDistribution",
    "ControlledEffect",
    "Equivalence",
    "Finding",
    "IntervalMethod",
    "PairedEffect",
    "ProportionMethod",
    "Statistic",
    "Verdict",
    "band_layers",
    "band_means",
    "band_peak_verdict",
    "bootstrap_distribution",
    "bootstrap_mean",
    "bootstrap_mean_interval",
    "bootstrap_ratio_interval",
    "detectable_effect",
    "detectable_from_standard_error",
    "difference_of_effects",
    "directional_verdict",
    "effect_of_differences",
    "equivalence_test",
    "equivalence_verdict",
    "layer_band",
    "mcnemar_p",
    "net_effect",
    "null_quantile",
    "ordering_verdict",
    "paired_effect",
    "proportion_interval",
    "sign_flip_null",
    "superiority_noninferiority_verdict",
    "wilcoxon_p",
]
