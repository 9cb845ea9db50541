"""The study, top to bottom: settings, data, steps, findings, results and the run loop."""

from lens_steer.study.data import StudyData, load_study_data
from lens_steer.study.results import StudyResults, build_results
from lens_steer.study.run import STEPS, run_study
from lens_steer.study.settings import QUICK, StudySettings, validate_settings
from lens_steer.study.steps import Collected, Geometry

__all__ = [
    "QUICK",
    "STEPS",
    "Collected",
    "Geometry",
    "StudyData",
    "StudyResults",
    "StudySettings",
    "build_results",
    "load_study_data",
    "run_study",
    "validate_settings",
]
