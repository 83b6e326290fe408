"""A small Hugging Face Hub-compatible HTTP server for tests: FastAPI + uvicorn on 127.0.0.1, repos on disk.

It implements the endpoints `huggingface_hub` 2.x uses to create repos, upload folders (files travel inline as
base64: the preupload answer is always ``uploadMode: "regular"``, so no LFS or Xet storage is involved) and
download them again (``from_pretrained``, ``pipeline``, ``hf_hub_download``):

* ``GET /api/whoami-v2``, ``GET /api/agent-harnesses``, ``POST /api/validate-yaml`` (the Hub's card rules:
  `card_errors`; huggingface_hub asks it before every upload of a ``README.md``)
* ``POST /api/repos/create`` (409 when the repo exists), ``POST /api/spaces/{ns}/{name}/variables``
* ``POST /api/{type}s/{ns}/{name}/preupload/{rev}``, ``POST /api/{type}s/{ns}/{name}/commit/{rev}`` (NDJSON)
* ``GET /api/{type}s/{ns}/{name}[/revision/{rev}]``, ``GET /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]``,
  ``POST /api/{type}s/{ns}/{name}/paths-info/{rev}``
* ``HEAD|GET /[{type}s/]{ns}/{name}/resolve/{rev}/{path}``

Tokens map to user names (``tokens={"hf_...": "alice"}``); writes need a valid token and a namespace the user
owns; private repos are invisible without one. Each commit stores a full snapshot of the repo's files, so
``revision=<sha>`` works. Run it with ``with HubServer(root, tokens) as server: server.url``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import threading
import time
from pathlib import Path

import uvicorn
import yaml
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
SPACE_SDKS = ("gradio", "docker", "static", "streamlit")
# The Hub's card rules (https://huggingface.co/docs/hub/model-cards, .../spaces-config-reference), as enforced here.
SPACE_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
SHORT_DESCRIPTION_MAX = 60
PIPELINE_TAGS = (  # the Hub's task ids (a subset: the text ones and a few others)
    "text-classification", "token-classification", "table-question-answering", "question-answering",
    "zero-shot-classification", "translation", "summarization", "feature-extraction", "text-generation",
    "fill-mask", "sentence-similarity", "text-ranking", "image-classification", "text-to-image", "other",
)
REPO_ID = re.compile(r"^(?:[\w.-]+/)?[\w.-]+$")


def card_errors(metadata, repo_type: str) -> list[str]:
    """What the Hub refuses in a card's YAML front matter (the rules this server enforces on upload)."""
    if not isinstance(metadata, dict):
        return ["the metadata must be a mapping"]
    errors = []

    def repo_ids(key: str) -> None:
        value = metadata.get(key)
        if value is None:
            return
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) and REPO_ID.match(v) for v in values):
            errors.append(f'"{key}" must be a repo id or a list of repo ids, got {value!r}')

    for key in ("license", "library_name", "title", "emoji", "app_file", "sdk_version", "python_version"):
        if key in metadata and not isinstance(metadata[key], str):
            errors.append(f'"{key}" must be a string')
    if "tags" in metadata and not (isinstance(metadata["tags"], list) and all(isinstance(t, str) for t in metadata["tags"])):
        errors.append('"tags" must be a list of strings')
    repo_ids("datasets")
    if repo_type == "model":
        repo_ids("base_model")
        if "pipeline_tag" in metadata and metadata["pipeline_tag"] not in PIPELINE_TAGS:
            errors.append(f'"pipeline_tag" must be a Hub task, got {metadata["pipeline_tag"]!r}')
        if "model-index" in metadata and not isinstance(metadata["model-index"], list):
            errors.append('"model-index" must be a list')
    if repo_type == "space":
        repo_ids("models")
        if metadata.get("sdk") not in SPACE_SDKS:
            errors.append(f'"sdk" must be one of {SPACE_SDKS}')
        description = metadata.get("short_description")
        if description is not None and (not isinstance(description, str) or len(description) > SHORT_DESCRIPTION_MAX):
            errors.append(f'"short_description" must be a string of at most {SHORT_DESCRIPTION_MAX} characters')
        for key in ("colorFrom", "colorTo"):
            if key in metadata and metadata[key] not in SPACE_COLORS:
                errors.append(f'"{key}" must be one of {SPACE_COLORS}')
    return errors


def _error(status: int, message: str, code: str | None = None) -> JSONResponse:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class RepoStore:
    """Repos on disk: ``root/{type}/{ns}/{name}/meta.json`` and one folder of files per commit."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.lock = threading.Lock()

    def folder(self, repo_type: str, repo_id: str) -> Path:
        return self.root / repo_type / repo_id

    def meta(self, repo_type: str, repo_id: str) -> dict | None:
        path = self.folder(repo_type, repo_id) / "meta.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def write_meta(self, repo_type: str, repo_id: str, meta: dict) -> None:
        folder = self.folder(repo_type, repo_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> str | None:
        """The commit sha a revision (branch "main" or a sha) points to."""
        meta = self.meta(repo_type, repo_id)
        if meta is None:
            return None
        if revision == "main":
            return meta["commits"][-1]
        return revision if revision in meta["commits"] else None

    def snapshot(self, repo_type: str, repo_id: str, sha: str) -> Path:
        return self.folder(repo_type, repo_id) / "commits" / sha

    def files(self, repo_type: str, repo_id: str, sha: str) -> dict[str, Path]:
        base = self.snapshot(repo_type, repo_id, sha)
        return {p.relative_to(base).as_posix(): p for p in sorted(base.rglob("*")) if p.is_file()}


def create_app(root: Path, tokens: dict[str, str]) -> FastAPI:
    """The Hub app; ``tokens`` maps access tokens to user names."""
    app = FastAPI()
    store = RepoStore(root)
    app.state.store = store
    app.state.requests = []  # (method, path) of every request, for tests that check what was called

    @app.middleware("http")
    async def record(request: Request, call_next):
        app.state.requests.append((request.method, request.url.path))
        return await call_next(request)

    def user_of(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return tokens.get(auth[len("Bearer ") :]) if auth.startswith("Bearer ") else None

    def visible(request: Request, repo_type: str, repo_id: str) -> dict | None:
        meta = store.meta(repo_type, repo_id)
        if meta is None or (meta["private"] and user_of(request) != repo_id.split("/")[0]):
            return None
        return meta

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    # -- account --------------------------------------------------------------------------------------------------
    @app.get("/api/whoami-v2")
    def whoami(request: Request):
        user = user_of(request)
        if user is None:
            return _error(401, "Invalid credentials in Authorization header")
        token = {"displayName": "test", "role": "write"}
        return {"type": "user", "name": user, "orgs": [], "auth": {"accessToken": token}}

    @app.get("/api/agent-harnesses")
    def agent_harnesses():
        return {"standardEnvVars": [], "harnesses": {}}

    @app.post("/api/validate-yaml")
    async def validate_yaml(request: Request):
        body = await request.json()
        content, repo_type = body.get("content", ""), body.get("repoType", "model")
        errors = []
        if content.startswith("---"):
            try:
                metadata = yaml.safe_load(content.split("---", 2)[1]) or {}
            except (yaml.YAMLError, IndexError) as err:
                metadata, errors = {}, [{"message": f"invalid YAML: {err}"}]
            errors += [{"message": message} for message in card_errors(metadata, repo_type)]
        if errors:
            return JSONResponse({"errors": errors, "warnings": []}, status_code=400)
        return {"errors": [], "warnings": []}

    # -- repos ----------------------------------------------------------------------------------------------------
    @app.post("/api/repos/create")
    async def create_repo(request: Request):
        user = user_of(request)
        if user is None:
            return _error(401, "Invalid credentials in Authorization header")
        body = await request.json()
        namespace = body.get("organization") or user
        if namespace != user:
            return _error(403, f"You don't have the rights to create a repo under the namespace {namespace!r}")
        repo_type = body.get("type") or "model"
        repo_id = f"{namespace}/{body['name']}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{base_url(request)}/{prefix}{repo_id}"
        with store.lock:
            if store.meta(repo_type, repo_id) is not None:
                return JSONResponse({"error": "You already created this repo", "url": url}, status_code=409)
            if repo_type == "space" and body.get("sdk") not in SPACE_SDKS:
                return _error(400, f"sdk must be one of {SPACE_SDKS}")
            sha = hashlib.sha1(f"{repo_type}/{repo_id}/init/{time.time_ns()}".encode()).hexdigest()
            store.snapshot(repo_type, repo_id, sha).mkdir(parents=True)
            meta = {
                "id": repo_id,
                "type": repo_type,
                "private": body.get("visibility") == "private" or bool(body.get("private")),
                "sdk": body.get("sdk"),
                "variables": {v["key"]: v["value"] for v in body.get("variables") or []},
                "commits": [sha],
                "messages": ["initial commit"],
            }
            store.write_meta(repo_type, repo_id, meta)
        return {"url": url, "name": repo_id, "id": repo_id}

    def _info(request: Request, repo_type: str, repo_id: str, revision: str):
        if visible(request, repo_type, repo_id) is None:
            return _error(404, "Repository not found", "RepoNotFound")
        sha = store.resolve(repo_type, repo_id, revision)
        if sha is None:
            return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        meta = store.meta(repo_type, repo_id)
        siblings = [{"rfilename": name} for name in store.files(repo_type, repo_id, sha)]
        info = {"id": repo_id, "sha": sha, "private": meta["private"], "siblings": siblings, "tags": []}
        if repo_type == "model":
            info["modelId"] = repo_id
        if repo_type == "space":
            info["sdk"] = meta["sdk"]
        return info

    @app.get("/api/{kind}/{namespace}/{name}")
    def repo_info(kind: str, namespace: str, name: str, request: Request):
        if kind not in REPO_TYPES:
            return _error(404, "not found")
        return _info(request, REPO_TYPES[kind], f"{namespace}/{name}", "main")

    @app.get("/api/{kind}/{namespace}/{name}/revision/{revision:path}")
    def repo_info_at(kind: str, namespace: str, name: str, revision: str, request: Request):
        if kind not in REPO_TYPES:
            return _error(404, "not found")
        return _info(request, REPO_TYPES[kind], f"{namespace}/{name}", revision)

    @app.post("/api/spaces/{namespace}/{name}/variables")
    async def add_space_variable(namespace: str, name: str, request: Request):
        repo_id = f"{namespace}/{name}"
        if visible(request, "space", repo_id) is None:
            return _error(404, "Repository not found", "RepoNotFound")
        if user_of(request) != namespace:
            return _error(403, "You don't have write access to this Space")
        body = await request.json()
        with store.lock:
            meta = store.meta("space", repo_id)
            meta["variables"][body["key"]] = body["value"]
            store.write_meta("space", repo_id, meta)
        return {key: {"value": value} for key, value in meta["variables"].items()}

    @app.post("/api/{kind}/{namespace}/{name}/preupload/{revision}")
    async def preupload(kind: str, namespace: str, name: str, revision: str, request: Request):
        repo_type, repo_id = REPO_TYPES.get(kind), f"{namespace}/{name}"
        if repo_type is None or visible(request, repo_type, repo_id) is None:
            return _error(404, "Repository not found", "RepoNotFound")
        body = await request.json()
        files = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in body["files"]
        ]
        return {"files": files, "commitOid": store.resolve(repo_type, repo_id, "main")}

    @app.post("/api/{kind}/{namespace}/{name}/commit/{revision}")
    async def commit(kind: str, namespace: str, name: str, revision: str, request: Request):
        repo_type, repo_id = REPO_TYPES.get(kind), f"{namespace}/{name}"
        user = user_of(request)
        if repo_type is None or visible(request, repo_type, repo_id) is None:
            return _error(404, "Repository not found", "RepoNotFound")
        if user != namespace:
            return _error(403, "You don't have write access to this repo")
        if revision != "main":
            return _error(400, "this test server only commits to main")
        lines = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        with store.lock:
            meta = store.meta(repo_type, repo_id)
            parent = meta["commits"][-1]
            new_sha = hashlib.sha1(f"{parent}/{time.time_ns()}/{len(lines)}".encode()).hexdigest()
            target = store.snapshot(repo_type, repo_id, new_sha)
            shutil.copytree(store.snapshot(repo_type, repo_id, parent), target)
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    if value.get("encoding") != "base64":
                        return _error(400, "only base64 files are supported")
                    path = target / value["path"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(base64.b64decode(value["content"]))
                elif key == "deletedFile":
                    (target / value["path"]).unlink(missing_ok=True)
                elif key == "deletedFolder":
                    shutil.rmtree(target / value["path"], ignore_errors=True)
                elif key != "header":
                    shutil.rmtree(target)
                    return _error(400, f"unsupported commit operation {key!r} (only regular files)")
            meta["commits"].append(new_sha)
            meta["messages"].append(header.get("summary", ""))
            store.write_meta(repo_type, repo_id, meta)
        prefix = "" if repo_type == "model" else f"{kind}/"
        return {"commitUrl": f"{base_url(request)}/{prefix}{repo_id}/commit/{new_sha}", "commitOid": new_sha}

    def _entries(repo_type: str, repo_id: str, sha: str, paths: list[str] | None = None) -> list[dict]:
        files = store.files(repo_type, repo_id, sha)
        entries = []
        for name, path in files.items():
            if paths is None or name in paths:
                data = path.read_bytes()
                entries.append({"type": "file", "path": name, "size": len(data), "oid": _git_blob_sha(data)})
        return entries

    @app.get("/api/{kind}/{namespace}/{name}/tree/{revision}")
    @app.get("/api/{kind}/{namespace}/{name}/tree/{revision}/{path:path}")
    def tree(kind: str, namespace: str, name: str, revision: str, request: Request, path: str = ""):
        repo_type, repo_id = REPO_TYPES.get(kind), f"{namespace}/{name}"
        if repo_type is None or visible(request, repo_type, repo_id) is None:
            return _error(404, "Repository not found", "RepoNotFound")
        sha = store.resolve(repo_type, repo_id, revision)
        if sha is None:
            return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        recursive = request.query_params.get("recursive", "false").lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        entries, folders = [], set()
        for entry in _entries(repo_type, repo_id, sha):
            if not entry["path"].startswith(prefix):
                continue
            rest = entry["path"][len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
            else:
                entries.append(entry)
        if prefix and not entries and not folders:
            return _error(404, f"{path} does not exist on {revision}", "EntryNotFound")
        return [{"type": "directory", "path": f, "oid": "0" * 40, "size": 0} for f in sorted(folders)] + entries

    @app.post("/api/{kind}/{namespace}/{name}/paths-info/{revision}")
    async def paths_info(kind: str, namespace: str, name: str, revision: str, request: Request):
        repo_type, repo_id = REPO_TYPES.get(kind), f"{namespace}/{name}"
        if repo_type is None or visible(request, repo_type, repo_id) is None:
            return _error(404, "Repository not found", "RepoNotFound")
        sha = store.resolve(repo_type, repo_id, revision)
        if sha is None:
            return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        form = await request.form() if "form" in request.headers.get("content-type", "") else None
        paths = form.getlist("paths") if form is not None else (await request.json()).get("paths", [])
        return _entries(repo_type, repo_id, sha, list(paths))

    # -- file downloads -------------------------------------------------------------------------------------------
    def _resolve_file(request: Request, repo_type: str, repo_id: str, revision: str, path: str, head: bool):
        if visible(request, repo_type, repo_id) is None:
            return _error(404, "Repository not found", "RepoNotFound")
        sha = store.resolve(repo_type, repo_id, revision)
        if sha is None:
            return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        file = store.snapshot(repo_type, repo_id, sha) / path
        if not file.is_file():
            return _error(404, f"Entry not found: {path}", "EntryNotFound")
        data = file.read_bytes()
        headers = {"X-Repo-Commit": sha, "ETag": f'"{_git_blob_sha(data)}"', "Content-Length": str(len(data))}
        return Response(b"" if head else data, headers=headers, media_type="application/octet-stream")

    for route_prefix, repo_type in (("", "model"), ("/datasets", "dataset"), ("/spaces", "space")):

        def make_route(repo_type=repo_type):
            def resolve_file(namespace: str, name: str, revision: str, path: str, request: Request):
                head = request.method == "HEAD"
                return _resolve_file(request, repo_type, f"{namespace}/{name}", revision, path, head)

            return resolve_file

        app.add_api_route(
            route_prefix + "/{namespace}/{name}/resolve/{revision}/{path:path}", make_route(), methods=["GET", "HEAD"]
        )

    return app


class HubServer:
    """Runs ``create_app`` with uvicorn on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, root: Path, tokens: dict[str, str]):
        self.app = create_app(root, tokens)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> "HubServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test Hub server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def store(self) -> RepoStore:
        return self.app.state.store

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.app.state.requests
