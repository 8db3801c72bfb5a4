"""Hugging Face transformers' answers for the tiny models (make_tiny_models.py), for the tch
backend to be compared with: per model and prompt, the float32 logits after the prompt, and a
greedy continuation of 8 tokens with the top-5 logits at every step.

    python reference.py MODELS_DIR OUT.json
"""
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

models, out = Path(sys.argv[1]), Path(sys.argv[2])
PROMPTS = [[9707, 11, 1879, 0, 374, 264, 1273, 13], [40, 1079, 28], list(range(100, 140))]
result = {}
torch.manual_seed(0)
for d in sorted(p for p in models.iterdir() if p.is_dir()):
    model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    runs = []
    for prompt in PROMPTS:
        ids = torch.tensor([prompt])
        with torch.no_grad():
            logits = model(ids).logits[0, -1]
            first = logits.tolist()
            tokens, steps = [], []
            for _ in range(8):
                nxt = int(torch.argmax(logits))
                tokens.append(nxt)
                ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
                logits = model(ids).logits[0, -1]
                top = torch.topk(logits, 5)
                steps.append({"ids": top.indices.tolist(), "values": top.values.tolist()})
        runs.append({"prompt": prompt, "logits": first, "greedy": tokens, "steps": steps})
    result[d.name] = runs
    print(d.name, "done", flush=True)
out.write_text(json.dumps(result))
