"""The official dashscope and openai clients against perf's simulator (`perf serve-mock`), in
every mode the simulator speaks: prints one JSON line per call with what the client parsed.

    python api_clients.py BASE_URL
"""
import json
import sys

import dashscope
from openai import OpenAI

base = sys.argv[1]
dashscope.base_http_api_url = base + "/api/v1"
results = []

r = dashscope.Generation.call(api_key="sk-test", model="qwen-plus", result_format="message",
                              messages=[{"role": "user", "content": "hi there"}], max_tokens=8)
results.append({"call": "dashscope text", "status": r.status_code,
                "text": r.output.choices[0].message.content, "output_tokens": r.usage.output_tokens})

pieces = []
for r in dashscope.Generation.call(api_key="sk-test", model="qwen-plus", result_format="message",
                                   messages=[{"role": "user", "content": "hi"}], stream=True,
                                   incremental_output=True, max_tokens=6):
    pieces.append(r.output.choices[0].message.content)
results.append({"call": "dashscope stream", "status": r.status_code, "pieces": pieces,
                "finish": r.output.choices[0].finish_reason, "output_tokens": r.usage.output_tokens})

r = dashscope.MultiModalConversation.call(
    api_key="sk-test", model="qwen-vl-plus", max_tokens=5,
    messages=[{"role": "user", "content": [{"image": "data:image/png;base64,iVBOR"}, {"text": "what?"}]}])
results.append({"call": "dashscope multimodal", "status": r.status_code,
                "text": r.output.choices[0].message.content[0]["text"], "output_tokens": r.usage.output_tokens})

client = OpenAI(base_url=base + "/v1", api_key="sk-test")
r = client.responses.create(model="m", input="hello there", max_output_tokens=6)
results.append({"call": "responses", "status": r.status, "text": r.output_text,
                "output_tokens": r.usage.output_tokens})

types = []
with client.responses.stream(model="m", input="hi", max_output_tokens=500) as s:
    for e in s:
        types.append(e.type)
    final = s.get_final_response()
results.append({"call": "responses stream", "status": final.status, "text": final.output_text,
                "events": types, "output_tokens": final.usage.output_tokens})

r = client.embeddings.create(model="e", input=["first text", "second text"])
results.append({"call": "embeddings", "count": len(r.data), "dimensions": len(r.data[0].embedding),
                "prompt_tokens": r.usage.prompt_tokens})

for r in results:
    print(json.dumps(r))
