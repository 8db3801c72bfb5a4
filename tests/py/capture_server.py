"""A capturing HTTP server for the visualizer tests: it answers the way the wandb, SwanLab and
ClearML backends answer, well enough for their official Python clients (and perf's sinks) to run
a whole experiment, and appends every request to a JSON-lines log (credentials replaced by ***;
a JSON-lines body logged as a list). A key ending in "rejected" gets HTTP 401.

    python3 capture_server.py PORT LOG
"""
import base64
import gzip
import json
import re
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
LOG = sys.argv[2]
LOCK = threading.Lock()
SECRET_HEADERS = ("authorization", "cookie")


def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


# ClearML's client decodes its session token as a JWT (without checking the signature).
CLEARML_TOKEN = ".".join([
    b64({"alg": "HS256", "typ": "JWT"}),
    b64({"exp": 4102444800, "iat": 1700000000, "env": "test", "api_version": "2.30",
         "identity": {"company": "c1", "company_name": "perf", "user": "u1",
                      "user_name": "tester", "role": "user"}}),
    "c2lnbmF0dXJl",
])
CLEARML_TASK = {"id": "task1", "name": "run", "status": "in_progress", "project": "proj1",
                "type": "testing"}


def clearml(call, body):
    """Answers for the ClearML calls its client and perf's sink make: `service.action`."""
    body = body if isinstance(body, dict) else {}
    if call == "auth.login":
        data = {"token": CLEARML_TOKEN}
    elif call == "projects.get_all":
        data = {"projects": []}
    elif call in ("projects.create", "tasks.create"):
        data = {"id": "proj1" if call.startswith("projects") else "task1"}
    elif call == "tasks.get_by_id":
        data = {"task": CLEARML_TASK}
    elif call == "tasks.get_all":
        data = {"tasks": [CLEARML_TASK]}
    elif call == "projects.get_by_id":
        data = {"project": {"id": "proj1", "name": "perf_benchmark"}}
    elif call in ("tasks.started", "tasks.completed", "tasks.stopped", "tasks.edit"):
        data = {"updated": 1, "fields": {}}
    else:
        data = {}
    meta = {"id": "m1", "trx": "t1", "result_code": 200, "result_subcode": 0, "result_msg": "OK",
            "error_stack": "", "endpoint": {"name": call, "requested_version": "2.23",
                                            "actual_version": "2.23"}}
    return {"meta": meta, "data": data}


def operation(query):
    m = re.search(r"(query|mutation)\s+(\w+)", query or "")
    return m.group(2) if m else ""


def graphql(query, variables):
    """Answers for the wandb GraphQL operations its clients use."""
    variables = variables or {}
    name = operation(query)
    if name == "Viewer":
        return {"viewer": {"id": "VXNlcjox", "entity": "tester", "username": "tester",
                           "email": "t@example.com", "flags": "{}", "teams": {"edges": []}}}
    if name == "UpsertBucket":
        return {"upsertBucket": {"inserted": True, "bucket": {
            "id": "UnVuOjE=", "name": variables.get("name") or "run",
            "displayName": variables.get("displayName"), "description": None,
            "config": variables.get("config"), "sweepName": None, "historyLineCount": 0,
            "project": {"id": "UHJvamVjdDox", "name": variables.get("project") or "uncategorized",
                        "entity": {"id": "RW50aXR5OjE=", "name": variables.get("entity") or "tester"}}}}}
    if name == "CreateRunFiles":
        return {"createRunFiles": {"runID": "UnVuOjE=", "uploadHeaders": [], "files": [
            {"name": f, "uploadUrl": "http://127.0.0.1:%d/upload/%s" % (PORT, f)}
            for f in variables.get("files", [])]}}
    if name == "ServerFeaturesQuery":
        return {"serverInfo": {"features": []}}
    return {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
        else:
            data = self.rfile.read(int(self.headers.get("content-length") or 0))
        encoding = self.headers.get("content-encoding")
        if encoding == "gzip":
            data = gzip.decompress(data)
        elif encoding == "deflate":
            data = zlib.decompress(data)
        return data

    def record(self, data):
        try:
            if "json-lines" in self.headers.get("content-type", ""):
                parsed = [json.loads(line) for line in data.splitlines() if line.strip()]
            else:
                parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data.decode("utf-8", "replace")
        headers = {k.lower(): ("***" if k.lower() in SECRET_HEADERS else v)
                   for k, v in self.headers.items()}
        with LOCK, open(LOG, "a") as f:
            f.write(json.dumps({"t": time.time(), "method": self.command, "path": self.path,
                                "headers": headers, "body": parsed}) + "\n")
        return parsed

    def answer(self, status, obj, extra=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        parsed = self.record(self.body())
        path = self.path.split("?")[0]
        auth = self.headers.get("authorization", "")
        if auth.startswith("Basic "):
            auth = base64.b64decode(auth[6:]).decode("utf-8", "replace")
        if auth.endswith("rejected"):
            return self.answer(401, {"error": "bad key"})
        m = re.fullmatch(r"/(?:v[0-9.]+/)?([a-z_]+\.[a-z_]+)", path)
        if m:
            return self.answer(200, clearml(m.group(1), parsed))
        if path == "/graphql":
            p = parsed if isinstance(parsed, dict) else {}
            return self.answer(200, {"data": graphql(p.get("query"), p.get("variables"))})
        if path.endswith("/file_stream"):
            return self.answer(200, {"exitcode": None, "limits": {}})
        if path.startswith("/upload/"):
            return self.answer(200, {})
        if path == "/api/login/api_key":
            return self.answer(200, {"sid": "sid-1", "expiredAt": "2099-01-01T00:00:00.000Z",
                                     "userInfo": {"username": "tester", "name": "tester"}},
                               {"set-cookie": "sid=sid-1; Path=/"})
        m = re.fullmatch(r"/api/project/([^/]+)/([^/]+)", path)
        if m and self.command == "GET":
            user, name = m.groups()
            return self.answer(200, {"cuid": "proj1", "name": name, "path": "/%s/%s" % (user, name),
                                     "group": {"username": user, "name": user},
                                     "_count": {"experiments": 0}})
        if re.fullmatch(r"/api/project/[^/]+/[^/]+/experiment", path):
            return self.answer(201, {"cuid": "exp1", "name": (parsed or {}).get("name"), "slug": "exp1"})
        return self.answer(200, {})

    do_GET = do_POST = do_PUT = do_PATCH = handle_any


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
