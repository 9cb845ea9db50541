"""Write analyses/layer_probing.ipynb from the cells below, then execute it in place.

    .venv/bin/python analyses/build_notebook.py            # write + execute (commit the result)
    .venv/bin/python analyses/build_notebook.py --no-run   # write the unexecuted notebook only

The notebook reads LENS_STEER_NB_LIMIT (items per set and split; CI uses a small value) so that
the same file runs quickly in tests and more fully for readers. Every figure is shown twice: as
an interactive plotly figure, and as a static PNG so the committed notebook renders on a code
host. No output holds a machine path.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOK = Path(__file__).with_name("layer_probing.ipynb")

CELLS = [
    new_markdown_cell(
        "# Layer probing with lens_steer\n\n"
        "Load the embedded Gemma 3 270M, collect residual streams of the built-in probe set, "
        "look at a per-layer PCA of parallel sentences and at how mixed the languages are, fit "
        "EN (English − L) and LOC (explicit − implicit) vectors, compare them layer by layer "
        "against their nulls, score one steering against random directions of the same norm, "
        "and read Surgical Steering generations in two languages side by side.\n\n"
        "These are the same functions `lens-steer run` calls (`lens_steer.study.steps`); the "
        "verdicts of the study come from `run_study` and are in `figures/results.json` and the "
        "README. `LENS_STEER_NB_LIMIT` sets how many items per set and split are used."
    ),
    new_code_cell(
        "import os\n"
        "import warnings\n\n"
        "import torch\n"
        "from IPython.display import Image, display\n\n"
        'warnings.filterwarnings("ignore", message="IProgress not found")  # no ipywidgets: plain bars\n'
        'warnings.showwarning = lambda message, *args, **kwargs: print(f"warning: {message}")\n\n'
        "import lens_steer as ls  # noqa: E402\n\n"
        'LIMIT = int(os.environ.get("LENS_STEER_NB_LIMIT", "24"))\n'
        'TARGETS = ["ko", "id"]  # the two targets compared side by side\n'
        "torch.manual_seed(0)\n\n\n"
        "def show(fig):\n"
        '    """The interactive figure, then a static PNG of it (renders on a code host)."""\n'
        "    fig.show()\n"
        '    display(Image(fig.to_image(format="png")))'
    ),
    new_markdown_cell("## The model and the data"),
    new_code_cell(
        'model = ls.load_model("gemma-3-270m", device="cpu")\n'
        "settings = ls.StudySettings(targets=tuple(TARGETS), limit=max(LIMIT, 8), fit_limit=max(LIMIT, 8),\n"
        '                            metrics=("transfer", "gold_logprob"), axes=("transfer", "gold_logprob"))\n'
        "data = ls.study.load_study_data(settings, model_given=True)\n"
        'print(model.cfg.model_name, model.cfg.n_layers, "layers, d_model", model.cfg.d_model)\n'
        "for key, items in data.items.items():\n"
        "    print(items)"
    ),
    new_markdown_cell(
        "## Residuals at every layer\n\n"
        "`collect` reads `blocks.{l}.hook_resid_post` at the last prompt token of every parallel "
        "sentence (English and the targets' languages) and of each target's culture questions "
        "(explicit and implicit forms), batched with left padding."
    ),
    new_code_cell(
        "collected = ls.study.steps.collect(model, data, settings, show_progress=False)\n"
        "print(collected)\n"
        'print("mean residual norm per layer:", [round(x) for x in collected.parallel.mean_norm().tolist()])'
    ),
    new_markdown_cell(
        "## Vectors, PCA and language mixing\n\n"
        "The PCA has a layer slider (interactive) and a small-multiples grid (static). Mixing is "
        "measured three ways per layer, with 95% intervals over sentence groups: translation "
        "retrieval, the language silhouette and a cross-validated language-ID probe."
    ),
    new_code_cell(
        "vectors = ls.study.steps.vectors(collected, data, settings)\n"
        "for key, by_method in vectors.items():\n"
        "    for method, vector in by_method.items():\n"
        "        print(key, method, vector.provenance['source'], vector.provenance['n_a'], 'pairs')\n"
        "geometry = ls.study.steps.geometry(collected, vectors, settings, show_progress=False)\n"
        "show(ls.figures.pca_figure(geometry.pca))\n"
        "display(Image(ls.figures.pca_grid_figure(geometry.pca).to_image(format='png')))"
    ),
    new_code_cell(
        "from lens_steer.study.results import mixing_rows, perpendicularity_rows\n\n"
        "rows = mixing_rows(geometry, 500, 0)\n"
        "for row in rows[: model.cfg.n_layers]:\n"
        "    low, high = row['retrieval_ci']\n"
        "    print(f\"layer {row['layer']:2d}  retrieval {row['retrieval']:.2f} [{low:.2f}, {high:.2f}]  \"\n"
        "          f\"silhouette {row['silhouette']:+.2f}  probe accuracy {row['probe']:.2f}\")\n"
        "show(ls.figures.mixing_figure(rows))"
    ),
    new_markdown_cell(
        "## Are EN and LOC perpendicular?\n\n"
        "The cosine per layer with its bootstrap interval, beside the sign-flip null (LOC rebuilt "
        "from item differences with random signs) and the positive control (the EN vectors of "
        "the two targets)."
    ),
    new_code_cell(
        "perp = perpendicularity_rows(geometry)\n"
        "for row in perp:\n"
        "    if row['space'] == 'standardized' and row['layer'] % 3 == 0:\n"
        "        print(f\"{row['target']:18} layer {row['layer']:2d}  cos {row['cos']:+.3f}  \"\n"
        "              f\"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]  sign-flip null q95 \"\n"
        "              f\"{row['null_q95'] if row['null_q95'] is None else round(row['null_q95'], 3)}\")\n"
        "show(ls.figures.perpendicularity_figure(perp, margin=settings.equivalence_margin))"
    ),
    new_markdown_cell(
        "## One steering against its controls\n\n"
        "EN-steering at a middle layer, one dose (α = 1 adds the whole mean difference), scored "
        "on the eval split with random directions of the same norm: the effect that counts is "
        "the one net of the controls, paired over the same items."
    ),
    new_code_cell(
        "target = 'ko:South_Korea'\n"
        "sweep = ls.layer_sweep(\n"
        "    model, data.items[target], {'en': vectors[target]['en']},\n"
        "    ls.SweepSettings(layers=(6,), alphas=(1.0,), n_controls=2),\n"
        "    ls.ScoringSettings(metrics=('transfer', 'gold_logprob'), calibrations=('sum',)),\n"
        "    split='eval', show_progress=False,\n"
        ")\n"
        "point = sweep.grid[0]\n"
        "for metric in ('transfer', 'gold_logprob'):\n"
        "    effect = ls.controlled_effect(sweep.points, point.key, point.controls, metric)\n"
        '    print(f"{metric}: steered {effect.steered.mean_delta:+.3f} nats, control "\n'
        '          f"{effect.control.mean_delta:+.3f}, net {effect.net.mean_delta:+.3f} "\n'
        '          f"[{effect.net.ci_low:+.3f}, {effect.net.ci_high:+.3f}], n={effect.net.n}, "\n'
        '          f"Wilcoxon p={effect.net.wilcoxon_p:.3f}")'
    ),
    new_markdown_cell(
        "## Surgical Steering, generations side by side\n\n"
        "The EN vector at a middle layer and the LOC vector at a deeper layer, in one forward "
        "pass, α in units of each vector. A few greedy generations show what a dose does to the "
        "text; they are illustrations, not evidence (the study's findings are)."
    ),
    new_code_cell(
        "prompts = {\n"
        '    "ko:South_Korea": ["우리나라의 화폐 단위는", "우리나라의 수도는"],\n'
        '    "id:Indonesia": ["Mata uang negara kita adalah", "Ibu kota negara kita adalah"],\n'
        "}\n"
        "for key, texts in prompts.items():\n"
        "    en, loc = vectors[key]['en'], vectors[key]['loc']\n"
        "    surgical = ls.surgical_steering(en.at_layer(6), 6, 1.0, loc.at_layer(13), 13, 1.0)\n"
        "    en_only = ls.single_layer_steering(en.at_layer(6), 6, 1.0, name='en')\n"
        "    rows = ls.compare_generations(\n"
        '        model, texts, {"unsteered": None, "EN only": en_only, "surgical": surgical},\n'
        "        max_new_tokens=12, show_progress=False,\n"
        "    )\n"
        "    for row in rows:\n"
        '        print(row["prompt"])\n'
        '        for label in ("unsteered", "EN only", "surgical"):\n'
        '            print(f"   {label:>10}: {row[label]!r}")'
    ),
]


def build() -> nbformat.NotebookNode:
    notebook = new_notebook(cells=CELLS)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


def execute(notebook: nbformat.NotebookNode, *, timeout: int = 1800) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    return notebook


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--no-run", action="store_true", help="write the notebook without executing it"
    )
    args = parser.parse_args()
    notebook = build()
    if not args.no_run:
        execute(notebook)
    nbformat.write(notebook, NOTEBOOK)
    print(f"wrote {NOTEBOOK}")


if __name__ == "__main__":
    main()
