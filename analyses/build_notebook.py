"""Write analyses/layer_probing.ipynb from the cells below, then execute it in place.

    .venv/bin/python analyses/build_notebook.py            # write + execute (commit the result)
    .venv/bin/python analyses/build_notebook.py --no-run   # write the unexecuted notebook only

The notebook reads LENS_STEER_NB_LIMIT (items per set; CI uses a small value) so that the same
file runs quickly in tests and fully for readers.
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
        "Load the embedded Gemma 3 270M, collect residual streams for the built-in probe set, "
        "slide through a per-layer PCA of parallel sentences, fit EN (English − L) and LOC "
        "(explicit − implicit) steering vectors, compare them layer by layer, and try "
        "Surgical Steering on generations in two languages side by side.\n\n"
        "`LENS_STEER_NB_LIMIT` sets how many items per set and split are used (CI runs a small "
        "value; the committed outputs used the default)."
    ),
    new_code_cell(
        "import os\n\n"
        "import torch\n\n"
        "import lens_steer as ls\n\n"
        'LIMIT = int(os.environ.get("LENS_STEER_NB_LIMIT", "16"))\n'
        'LANGS = ["ko", "id"]  # the two LOC languages compared side by side\n'
        "torch.manual_seed(0)"
    ),
    new_markdown_cell("## The model and the probe set"),
    new_code_cell(
        'model = ls.load_model("gemma-3-270m", device="cpu")\n'
        'probe = ls.limit_probe_set(ls.load_probe_set(langs=["en", "zh", "es", "el", "fa", *LANGS]), LIMIT)\n'
        'print(model.cfg.model_name, model.cfg.n_layers, "layers, d_model", model.cfg.d_model)\n'
        'print(len(probe.parallel), "parallel sentences,", len(probe.localization), "localization items,",\n'
        '      len(probe.transfer), "transfer questions; probe set", probe.version)'
    ),
    new_markdown_cell(
        "## Residuals at every layer\n\n"
        "`collect_residuals` reads `blocks.{l}.hook_resid_post` at the last prompt token, batched "
        "with left padding, and stops the forward after the last layer needed."
    ),
    new_code_cell(
        "parallel = ls.collect_parallel(model, probe, probe.langs, split=None, show_progress=False)\n"
        "localization = ls.collect_localization(model, probe, LANGS, split=None, show_progress=False)\n"
        "print(parallel.acts.shape, parallel.hook_name, parallel.position)\n"
        'print("mean residual norm per layer:", [round(x) for x in parallel.mean_norm().tolist()])'
    ),
    new_markdown_cell(
        "## PCA per layer (use the slider)\n\n"
        "Languages converge in the middle layers and separate again near the output. The right "
        "panel standardizes each dimension first, so the few massive-activation dimensions do "
        "not dominate."
    ),
    new_code_cell(
        "pcas = [ls.pca_by_layer(parallel, standardize=s, show_progress=False) for s in (False, True)]\n"
        "pca_fig = ls.figures.pca_figure(pcas)\n"
        "pca_fig.show()"
    ),
    new_code_cell(
        "mixing = [row for s in (False, True) for row in ls.mixing_by_layer(parallel, standardize=s, show_progress=False)]\n"
        "for row in mixing[: model.cfg.n_layers]:\n"
        "    print(f\"layer {row['layer']:2d}  retrieval {row['retrieval_accuracy']:.2f}  silhouette {row['silhouette']:+.2f}\")"
    ),
    new_markdown_cell(
        "## EN and LOC vectors and their cosines\n\n"
        "EN: English minus L on parallel sentences; LOC: explicit minus implicit prompts in L. "
        "Raw cosines are dominated by a few massive dimensions; standardized cosines divide "
        "each dimension by its standard deviation at that layer. The null band is the 95% range "
        "of cosines between random directions in d_model dimensions."
    ),
    new_code_cell(
        "en = ls.en_vectors(None, probe, LANGS, split=None, parallel=parallel, n_bootstrap=100)\n"
        "loc = ls.loc_vectors(None, probe, LANGS, split=None, localization=localization, n_bootstrap=100)\n"
        "scale = ls.ResidualSet.concat([parallel, *localization.values()])\n"
        "table = ls.perpendicularity_table(en, loc, scale=scale)\n"
        "print(f\"null band ±{table[0]['null_band']:.3f}\")\n"
        "for row in table:\n"
        "    print(f\"{row['lang']} layer {row['layer']:2d}  cos raw {row['cos_raw']:+.3f}  \"\n"
        "          f\"standardized {row['cos_std']:+.3f}  CI [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]\")"
    ),
    new_code_cell("ls.figures.perpendicularity_figure(table).show()"),
    new_markdown_cell(
        "## Surgical Steering, generations side by side\n\n"
        "The EN vector at a middle layer and the LOC vector at a deeper layer, in one forward "
        "pass. α is relative: the added vector's norm is α times the mean residual norm at "
        "that layer."
    ),
    new_code_cell(
        "TRANSFER_LAYER, LOCAL_LAYER, ALPHA_T, ALPHA_L = 6, 13, 0.25, 0.5\n"
        "norms = {lang: parallel.where_lang(lang).mean_norm() for lang in LANGS}\n"
        "prompts = {\n"
        '    "ko": ["우리나라의 화폐 단위는", "우리나라의 수도는"],\n'
        '    "id": ["Mata uang negara kami adalah", "Ibu kota negara kami adalah"],\n'
        "}\n"
        "rows = []\n"
        "for lang in LANGS:\n"
        "    surgical = ls.surgical_steering(\n"
        "        en[lang].at_layer(TRANSFER_LAYER), TRANSFER_LAYER, ALPHA_T,\n"
        "        loc[lang].at_layer(LOCAL_LAYER), LOCAL_LAYER, ALPHA_L,\n"
        "        en_reference_norm=float(norms[lang][TRANSFER_LAYER]),\n"
        "        loc_reference_norm=float(norms[lang][LOCAL_LAYER]),\n"
        "    )\n"
        "    en_only = ls.single_layer_steering(en[lang].at_layer(TRANSFER_LAYER), TRANSFER_LAYER, ALPHA_T,\n"
        "                                       reference_norm=float(norms[lang][TRANSFER_LAYER]))\n"
        "    rows += ls.compare_generations(\n"
        '        model, prompts[lang], {"unsteered": None, "EN only": en_only, "surgical": surgical},\n'
        "        max_new_tokens=12, show_progress=False,\n"
        "    )\n"
        "for row in rows:\n"
        '    print(row["prompt"])\n'
        '    for label in ("unsteered", "EN only", "surgical"):\n'
        '        print(f"   {label:>10}: {row[label]!r}")'
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
