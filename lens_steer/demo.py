"""A one-minute look at implicit localization: "our country" questions in several languages."""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer

from lens_steer.tokens import encode

# (language, implicit prompt, local answer, US-default answer)
DEMO_PROMPTS: tuple[tuple[str, str, str, str], ...] = (
    ("en", "The capital of our country is", " Washington", " Seoul"),
    ("ko", "우리나라의 수도는", " 서울", " 워싱턴"),
    ("id", "Ibu kota negara kami adalah", " Jakarta", " Washington"),
    ("id", "Mata uang negara kami adalah", " rupiah", " dolar"),
    ("es", "La moneda de nuestro país es el", " euro", " dólar"),
    ("zh", "我们国家的首都是", "北京", "华盛顿"),
    ("el", "Η πρωτεύουσα της χώρας μας είναι η", " Αθήνα", " Ουάσινγκτον"),
    ("fa", "پایتخت کشور ما", " تهران", " واشنگتن"),
)


@torch.no_grad()
def continuation_logprob(model: HookedTransformer, prompt: str, continuation: str) -> float:
    """Sum of log-probabilities of ``continuation``'s tokens after ``prompt``."""
    prompt_ids = encode(model, prompt)
    cont_ids = encode(model, continuation, prepend_bos=False)
    tokens = torch.tensor([prompt_ids + cont_ids], device=model.cfg.device)
    logits = model(tokens)[0, len(prompt_ids) - 1 : -1].float()
    logprobs = logits.log_softmax(-1)
    return float(logprobs.gather(-1, torch.tensor(cont_ids, device=logits.device)[:, None]).sum())


def run_demo(model: HookedTransformer) -> list[dict[str, object]]:
    """Local vs US-default answer log-probabilities for each demo prompt."""
    rows: list[dict[str, object]] = []
    for lang, prompt, local, us in DEMO_PROMPTS:
        tokens = torch.tensor([encode(model, prompt)], device=model.cfg.device)
        with torch.no_grad():
            last = model(tokens)[0, -1].float().softmax(-1)
        assert model.tokenizer is not None
        top = [model.tokenizer.decode([int(i)]) for i in last.topk(5).indices]
        rows.append(
            {
                "lang": lang,
                "prompt": prompt,
                "local": local.strip(),
                "us": us.strip(),
                "logp_local": continuation_logprob(model, prompt, local),
                "logp_us": continuation_logprob(model, prompt, us),
                "top5": top,
            }
        )
    return rows
