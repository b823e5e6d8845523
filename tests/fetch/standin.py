"""A local Hugging Face hub stand-in: the few endpoints huggingface_hub and datasets use to fetch by revision.

Serves model and dataset repos from memory on 127.0.0.1 (reached through HF_ENDPOINT). Each commit has its
own 40-hex sha; refs (branches and tags) are movable during a test. Large formats are served as LFS files
(ETag and X-Linked-Etag = sha256), the rest as git blobs (ETag = git blob sha1), as the real hub does.
`Range` requests are honoured so resumed downloads can be observed, and a fault mode drops the connection
part-way through a file.
No xet headers are ever sent, so clients stay on plain HTTP against this server.

As the real hub does for large files, LFS files can be redirected (`redirect_lfs_to`) to a second server on
another port, an `ObjectStore` standing in for the CDN: it serves the bytes, can redirect again before it
does (a chain of hops, or back to the hub), and records every request's headers, so a test can see whether
a token reached it.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".parquet", ".jsonl")
_API = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)/(revision|tree|refs)(?:/([^/]+))?(?:/(.*))?$")
_RESOLVE = re.compile(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_CDN = re.compile(r"^/cdn/([0-9a-f]{64})$")
_STORE = re.compile(r"^/(?:o|hop/(\d+)|back)/([0-9a-f]{64})$")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # name -> sha; "main" is the branch, others tags
    private: bool = False

    def commit(self, files: dict[str, bytes], *refs: str) -> str:
        """Adds a commit holding `files` and points `refs` at it; returns its sha."""
        digest = hashlib.sha1(f"{self.repo_id}:{len(self.commits)}".encode())
        for path in sorted(files):
            digest.update(path.encode() + hashlib.sha256(files[path]).digest())
        sha = digest.hexdigest()
        self.commits[sha] = dict(files)
        for ref in refs:
            self.refs[ref] = sha
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)


@dataclass
class Fault:
    """Drops the connection of the next `times` GETs of `path` after `after_bytes` bytes of the body."""

    path: str
    after_bytes: int
    times: int


@dataclass
class Served:
    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int
    headers: dict[str, str] = field(default_factory=dict)  # the request's, names lower-cased


class _LocalServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) that serves `_handler()` between start and stop."""

    _server: ThreadingHTTPServer | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def origin(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _QuietHandler(BaseHTTPRequestHandler):
    """HEAD and GET routed to one `_route`, HTTP/1.1 keep-alive, no request lines on stderr."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, *, head: bool) -> None:
        raise NotImplementedError


class HubStandIn(_LocalServer):
    """The server, its repos, faults and request log; `start()`/`stop()` around a test."""

    def __init__(self, token: str = "hf_standin_token") -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.faults: list[Fault] = []
        self.log: list[Served] = []
        self.token = token
        self._lock = threading.Lock()
        # LFS files answer with a redirect to this store, through `hops` redirects there ("back": the last
        # one points at the hub's own /cdn/ path again).
        self.store: ObjectStore | None = None
        self.hops: int | str = 0
        self.blobs: dict[str, bytes] = {}  # sha256 -> bytes of every LFS file served, for /cdn/

    def redirect_lfs_to(self, store: ObjectStore, hops: int | str = 0) -> None:
        self.store, self.hops = store, hops

    @property
    def endpoint(self) -> str:
        return self.origin

    def repo(self, repo_id: str, repo_type: str = "model", *, private: bool = False) -> Repo:
        return self.repos.setdefault((repo_type, repo_id), Repo(repo_id, repo_type, private=private))

    def drop_connection(self, path: str, after_bytes: int, times: int = 1) -> None:
        self.faults.append(Fault(path, after_bytes, times))

    def bytes_served(self, path: str) -> int:
        return sum(s.body_bytes for s in self.log if s.method == "GET" and s.path.endswith("/" + path))

    def gets(self, path: str) -> list[Served]:
        return [
            s for s in self.log if s.method == "GET" and "/resolve/" in s.path and s.path.endswith(f"/{path}")
        ]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.path == path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None


def _handler_for(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(_QuietHandler):
        def _route(self, *, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            if match := _API.match(path):
                kind, repo_id, action, revision, sub = match.groups()
                self._api(kind[:-1], repo_id, action, revision, sub or "", head)
            elif match := _RESOLVE.match(path):
                dataset, repo_id, revision, file = match.groups()
                self._resolve("dataset" if dataset else "model", repo_id, revision, file, head)
            elif match := _CDN.match(path):
                self._cdn(match.group(1), head)
            else:
                self._error(404, "EntryNotFound", "no such endpoint", head)

        def _repo(self, repo_type: str, repo_id: str, head: bool) -> Repo | None:
            repo = hub.repos.get((repo_type, repo_id))
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found", head)
                return None
            if repo.private and self.headers.get("Authorization") != f"Bearer {hub.token}":
                self._error(401, "RepoNotFound", "Invalid username or password.", head)
                return None
            return repo

        def _api(self, repo_type: str, repo_id: str, action: str, revision: str | None, sub: str, head: bool):
            repo = self._repo(repo_type, repo_id, head)
            if repo is None:
                return
            if action == "refs":
                refs = {"branches": [], "tags": [], "converts": []}
                for name, sha in sorted(repo.refs.items()):
                    kind = "branches" if name == "main" else "tags"
                    prefix = "refs/heads/" if name == "main" else "refs/tags/"
                    refs[kind].append({"name": name, "ref": prefix + name, "targetCommit": sha})
                return self._json(refs, head)
            sha = repo.resolve(revision or "main")
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
            files = repo.commits[sha]
            if action == "revision":
                info = {
                    "id": repo_id,
                    "sha": sha,
                    "private": repo.private,
                    "lastModified": "2023-04-24T00:00:00.000Z",
                    "siblings": [{"rfilename": p} for p in sorted(files)],
                }
                return self._json(info, head)
            recursive = "recursive=true" in urlsplit(self.path).query.lower()
            return self._json(_tree(files, sub.strip("/"), recursive), head)

        def _resolve(self, repo_type: str, repo_id: str, revision: str, file: str, head: bool) -> None:
            repo = self._repo(repo_type, repo_id, head)
            if repo is None:
                return
            sha = repo.resolve(revision)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
            data = repo.commits[sha].get(file)
            if data is None:
                return self._error(404, "EntryNotFound", f"{file} does not exist at {revision}", head)
            if is_lfs(file) and hub.store is not None:
                return self._redirect_to_store(sha, data, head)
            self._serve(data, file, head, extra={"X-Repo-Commit": sha})

        def _redirect_to_store(self, sha: str, data: bytes, head: bool) -> None:
            """What the real hub answers for a large file: its metadata, and the CDN's URL to get it from."""
            assert hub.store is not None
            oid = hashlib.sha256(data).hexdigest()
            with hub._lock:
                hub.blobs[oid] = data
            hub.store.blobs[oid] = data
            self.send_response(302)
            self.send_header("Location", hub.store.url(oid, hub.hops, back_to=hub.endpoint))
            self.send_header("X-Repo-Commit", sha)
            self.send_header("X-Linked-Etag", f'"{oid}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{oid}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            self._record(302, 0)

        def _cdn(self, oid: str, head: bool) -> None:
            """The hub's own copy of a blob, where a store's redirect chain may come back to."""
            data = hub.blobs.get(oid)
            if data is None:
                return self._error(404, "EntryNotFound", "no such blob", head)
            self._serve(data, oid, head, extra={})

        def _serve(self, data: bytes, file: str, head: bool, extra: dict[str, str]) -> None:
            start = _range_start(self.headers.get("Range"))
            status = 206 if start is not None else 200
            start = start or 0
            body = data[start:]
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            if is_lfs(file):
                oid = hashlib.sha256(data).hexdigest()
                self.send_header("X-Linked-Etag", f'"{oid}"')
                self.send_header("X-Linked-Size", str(len(data)))
            else:
                oid = git_blob_sha1(data)
            self.send_header("ETag", f'"{oid}"')
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if head:
                return self._record(status, 0)
            fault = hub.take_fault(file)
            if fault is not None:
                sent = body[: max(0, fault.after_bytes - start)]
                self.wfile.write(sent)
                self.wfile.flush()
                self._record(status, len(sent))
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)
            self._record(status, len(body))

        def _json(self, payload: object, head: bool) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            self._record(200, 0 if head else len(body))

        def _error(self, status: int, code: str, message: str, head: bool) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            self._record(status, 0)

        def _record(self, status: int, body_bytes: int) -> None:
            with hub._lock:
                path = unquote(urlsplit(self.path).path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                hub.log.append(
                    Served(self.command, path, self.headers.get("Range"), status, body_bytes, headers)
                )

    return Handler


def _range_start(header: str | None) -> int | None:
    match = re.fullmatch(r"bytes=(\d+)-", header or "")
    return int(match.group(1)) if match else None


def _tree(files: dict[str, bytes], folder: str, recursive: bool) -> list[dict[str, object]]:
    prefix = f"{folder}/" if folder else ""
    entries: dict[str, dict[str, object]] = {}
    for path, data in sorted(files.items()):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        if "/" in rest and not recursive:
            sub = prefix + rest.split("/", 1)[0]
            entries[sub] = {"type": "directory", "path": sub, "oid": "0" * 40, "size": 0}
            continue
        entry: dict[str, object] = {"type": "file", "path": path, "size": len(data)}
        entry["oid"] = git_blob_sha1(data)
        if is_lfs(path):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        entries[path] = entry
    if recursive:
        for path in list(entries):
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                sub = "/".join(parts[:i])
                if sub.startswith(prefix.rstrip("/")) and sub != prefix.rstrip("/"):
                    entries.setdefault(sub, {"type": "directory", "path": sub, "oid": "0" * 40, "size": 0})
    return sorted(entries.values(), key=lambda e: str(e["path"]))


class ObjectStore(_LocalServer):
    """A second server (another port: another origin) standing in for the hub's CDN or a mirror's store.

    `/o/<sha256>` serves a blob (with `Range`); `/hop/<n>/<sha256>` redirects to `/hop/<n-1>/...` and from
    0 to `/o/...`; `/back/<sha256>` redirects to the hub's own `/cdn/<sha256>`. Every request is logged
    with its headers.
    """

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.log: list[Served] = []
        self.back_to: str = ""
        self.drops: dict[str, int] = {}  # sha256 -> the body bytes after which its next GET is cut
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        return self.origin

    def url(self, oid: str, hops: int | str, *, back_to: str) -> str:
        """Where the hub redirects a blob to: straight to it, through `hops` redirects, or "back" home."""
        self.back_to = back_to
        if hops == "back":
            return f"{self.base}/back/{oid}"
        return f"{self.base}/hop/{hops}/{oid}" if hops else f"{self.base}/o/{oid}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _store_handler_for(self)


def _store_handler_for(store: ObjectStore) -> type[BaseHTTPRequestHandler]:
    class Handler(_QuietHandler):
        def _route(self, *, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            match = _STORE.match(path)
            data = store.blobs.get(match.group(2)) if match else None
            if match is None or data is None:
                return self._answer(404, {}, b"", head)
            hops, oid = match.groups()
            if path.startswith("/back/"):
                return self._answer(302, {"Location": f"{store.back_to}/cdn/{oid}"}, b"", head)
            if hops is not None:
                # Relative from the second hop on: a client must resolve it against the store, not the hub.
                n = int(hops)
                target = f"/hop/{n - 1}/{oid}" if n > 1 else f"/o/{oid}"
                return self._answer(302, {"Location": target}, b"", head)
            start = _range_start(self.headers.get("Range"))
            status, start = (206, start) if start is not None else (200, 0)
            headers = {"ETag": f'"{oid}"', "Accept-Ranges": "bytes"}
            if status == 206:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            with store._lock:
                cut = None if head else store.drops.pop(oid, None)
            self._answer(status, headers, data[start:], head, cut)

        def _answer(
            self, status: int, headers: dict[str, str], body: bytes, head: bool, cut: int | None = None
        ) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if cut is not None:
                body = body[:cut]
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
            elif not head:
                self.wfile.write(body)
            with store._lock:
                seen = {k.lower(): v for k, v in self.headers.items()}
                path = unquote(urlsplit(self.path).path)
                sent = 0 if head else len(body)
                store.log.append(Served(self.command, path, self.headers.get("Range"), status, sent, seen))

    return Handler
