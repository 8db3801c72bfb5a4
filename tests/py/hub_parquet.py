"""Hub datasets in their parquet layout, written with pyarrow (the writer the `datasets` library
uses), for the hub tests (tests/e2e/hub.rs): prints nothing, writes files under OUT.

    python hub_parquet.py mmmu OUT       # OUT/<Subject>/validation-00000-of-00001.parquet x 30
    python hub_parquet.py swe_smith OUT  # OUT/data/tool-0000{0,1}-of-00002.parquet, xml-...
    python hub_parquet.py open_decisions OUT  # OUT/data/test-00000-of-00001.parquet

mmmu: every subject has three rows: `<Subject> q0` with two images (placeholders `<image 1>`,
`<image 2>`), `<Subject> q1` with one image (not eligible), and, for Accounting only, `Accounting
q2` with three images and no placeholders. Images are PNGs whose one pixel's red value is the
subject's index and green value the image's number, as the `datasets` library stores an Image
feature: a struct of `bytes` and `path`.

swe_smith: trajectories whose `messages` column is a JSON string, as SWE-smith-trajectories
keeps them: a system prompt, then user / assistant / tool messages; the `xml` split must not be
read for the default `tool` split.

open_decisions: two choice questions whose `question` struct has a null field (`criteria` is
a map of named options), and a `gold` column that must not reach the request.
"""
import json
import struct
import sys
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SUBJECTS = [
    "Accounting", "Agriculture", "Architecture_and_Engineering", "Art", "Art_Theory",
    "Basic_Medical_Science", "Biology", "Chemistry", "Clinical_Medicine", "Computer_Science",
    "Design", "Diagnostics_and_Laboratory_Medicine", "Economics", "Electronics",
    "Energy_and_Power", "Finance", "Geography", "History", "Literature", "Manage", "Marketing",
    "Materials", "Math", "Mechanical_Engineering", "Music", "Pharmacy", "Physics", "Psychology",
    "Public_Health", "Sociology",
]


def png(red, green):
    """A 1x1 RGB PNG."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    raw = b"\x00" + bytes([red, green, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def mmmu(out):
    schema = pa.schema([("id", pa.string()), ("question", pa.string()), ("options", pa.string())]
                       + [(f"image_{i}", IMAGE) for i in range(1, 8)] + [("answer", pa.string())])
    for k, subject in enumerate(SUBJECTS):
        rows = [
            {"id": f"validation_{subject}_1", "options": "['A', 'B']", "answer": "A",
             "question": f"{subject} q0: is <image 1> larger than <image 2>?",
             "image_1": {"bytes": png(k, 1), "path": None},
             "image_2": {"bytes": png(k, 2), "path": None}},
            {"id": f"validation_{subject}_2", "options": "[]", "answer": "B",
             "question": f"{subject} q1: what is in <image 1>?",
             "image_1": {"bytes": png(k, 1), "path": None}},
        ]
        if subject == "Accounting":
            rows.append({"id": "validation_Accounting_3", "options": "[]", "answer": "C",
                         "question": "Accounting q2: which of these is a balance sheet?",
                         "image_1": {"bytes": png(k, 1), "path": None},
                         "image_2": {"bytes": png(k, 2), "path": None},
                         "image_3": {"bytes": png(k, 3), "path": None}})
        table = pa.Table.from_pylist(rows, schema=schema)
        (out / subject).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out / subject / "validation-00000-of-00001.parquet")


def trajectory(n, user_words):
    """One trajectory: a system prompt, then `user_words` user / tool messages of that many
    words each, with assistant replies between them."""
    messages = [{"role": "system", "content": "You are a coding agent."}]
    for i, words in enumerate(user_words):
        role = "user" if i == 0 else "tool"
        text = " ".join(f"t{n}m{i}w{w}" for w in range(words))
        content = text if i % 2 == 0 else [{"type": "text", "text": text}]
        messages.append({"role": role, "content": content})
        messages.append({"role": "assistant", "content": f"reply {n}.{i}"})
    return json.dumps(messages)


def swe_smith(out):
    schema = pa.schema([("instance_id", pa.string()), ("messages", pa.string()),
                        ("resolved", pa.bool_())])
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    # Six long trajectories over two shards, and one too short to be a candidate.
    shards = [[(0, [40, 40, 40, 40]), (1, [40, 40, 40, 40]), (2, [40, 40, 40, 40])],
              [(3, [40, 40, 40, 40]), (4, [40, 40, 40, 40]), (5, [40, 40, 40, 40]),
               (6, [2])]]
    for i, shard in enumerate(shards):
        rows = [{"instance_id": f"repo__{n}", "messages": trajectory(n, words), "resolved": True}
                for n, words in shard]
        pq.write_table(pa.Table.from_pylist(rows, schema=schema),
                       data / f"tool-{i:05d}-of-00002.parquet")
    rows = [{"instance_id": "xml__0", "messages": trajectory(99, [40, 40, 40, 40]),
             "resolved": True}]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), data / "xml-00000-of-00001.parquet")


def open_decisions(out):
    question = pa.struct([("type", pa.string()), ("instructions", pa.string()),
                          ("criteria", pa.map_(pa.string(), pa.string())),
                          ("answer_prefix", pa.string())])
    schema = pa.schema([("id", pa.string()), ("state", pa.string()), ("question", question),
                        ("gold", pa.string())])
    rows = [{"id": f"p{i}", "state": f"parquet state {i}", "gold": "a",
             "question": {"type": "choice", "instructions": f"Parquet question {i}",
                          "criteria": [("a", "yes"), ("b", "no")], "answer_prefix": None}}
            for i in range(2)]
    (out / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema),
                   out / "data" / "test-00000-of-00001.parquet")


if __name__ == "__main__":
    kind, out = sys.argv[1], Path(sys.argv[2])
    {"mmmu": mmmu, "swe_smith": swe_smith, "open_decisions": open_decisions}[kind](out)
