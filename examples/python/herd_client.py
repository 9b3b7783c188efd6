#!/usr/bin/env python3
"""A small client of herd's public HTTP API, standard library only.

Use it as a module (copy this file next to your job runner):

    from herd_client import Herd
    herd = Herd()                                   # HERD_URL/HERD_TOKEN, else $HERD_HOME
    s = herd.create(["bash", "--norc"], task_id="job-42")
    herd.wait(s["id"], ["ready"], timeout="30s")
    print(herd.send(s["id"], "echo hello", wait=True)["reply"])
    herd.stop(s["id"]); herd.wait(s["id"], ["stopped"]); herd.remove(s["id"])

or run it: `python3 examples/python/herd_client.py` runs that demo against
the daemon it finds and prints what it did.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


class HerdError(Exception):
    """An error answer of the API: `status`, `code` and `message`."""

    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Herd:
    """The daemon at `url` (default: $HERD_URL, else <data dir>/url) with `token`
    (default: $HERD_TOKEN, else <data dir>/token); data dir: $HERD_HOME, else
    ~/.local/share/herd."""

    def __init__(self, url=None, token=None):
        home = os.environ.get("HERD_HOME") or os.path.expanduser("~/.local/share/herd")

        def read(name):
            try:
                with open(os.path.join(home, name)) as f:
                    return f.read().strip()
            except OSError:
                return None

        self.url = (url or os.environ.get("HERD_URL") or read("url") or "http://127.0.0.1:7777").rstrip("/")
        self.token = token or os.environ.get("HERD_TOKEN") or read("token")
        if not self.token:
            raise HerdError(0, "no_token", f"no token: set HERD_TOKEN or HERD_HOME (looked in {home})")

    def request(self, method, path, body=None, query=None, timeout=3700):
        """One API call; returns the decoded JSON, raises HerdError."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read())["error"]
                raise HerdError(e.code, err["code"], err["message"]) from None
            except (ValueError, KeyError):
                raise HerdError(e.code, "http", str(e)) from None

    @staticmethod
    def _id(session_id):
        return urllib.parse.quote(session_id, safe="")

    def create(self, command=None, **spec):
        """Starts a session (spec fields: name, task_id, project_id, cwd, env, restart, ...;
        template="NAME" starts from a config template, worktree=True or "branch" runs it
        in a git worktree of the repository at cwd)."""
        body = dict(spec) if command is None else dict(spec, command=command)
        return self.request("POST", "/v1/sessions", body)

    def list(self, **filters):
        """Sessions; filters: state, task, project, all."""
        return self.request("GET", "/v1/sessions", query={k: str(v).lower() if isinstance(v, bool) else v for k, v in filters.items()})

    def get(self, session_id):
        return self.request("GET", f"/v1/sessions/{self._id(session_id)}")

    def task(self, task_id):
        """The session of a job runner's task."""
        return self.request("GET", f"/v1/tasks/{urllib.parse.quote(task_id, safe='')}")

    def send(self, session_id, text, wait=False, timeout="60s"):
        """Queues a prompt; with wait, returns the message with its `reply`."""
        query = {"wait": "true", "timeout": timeout} if wait else None
        return self.request("POST", f"/v1/sessions/{self._id(session_id)}/messages", {"text": text}, query)

    def cancel(self, session_id, message_id):
        """Cancels a message that is still queued."""
        return self.request("DELETE", f"/v1/sessions/{self._id(session_id)}/messages/{message_id}")

    def wait(self, session_id, states, timeout="60s"):
        """Waits until the session is in one of `states` (HerdError 504 on timeout,
        409 if it ended in another state)."""
        query = {"state": ",".join(states), "timeout": timeout}
        return self.request("GET", f"/v1/sessions/{self._id(session_id)}/wait", query=query)

    def screen(self, session_id):
        return self.request("GET", f"/v1/sessions/{self._id(session_id)}/screen")["text"]

    def stop(self, session_id, force=False):
        return self.request("DELETE", f"/v1/sessions/{self._id(session_id)}", query={"force": str(force).lower()})

    def remove(self, session_id, force=False):
        """Removes a session that ended, with its data. A clean worktree goes with it, a
        dirty one stays (see the answer's `note`) unless force; its branch always stays."""
        return self.request("POST", f"/v1/sessions/{self._id(session_id)}/remove", query={"force": str(force).lower()})


def demo():
    herd = Herd()
    s = herd.create(["bash", "--norc", "--noprofile"], name="py-demo", task_id="py-job-1", env={"PS1": "$ "})
    sid = s["id"]
    print("created", sid)
    print("state", herd.wait(sid, ["ready"], timeout="30s")["state"])
    m = herd.send(sid, "echo hello from python", wait=True, timeout="30s")
    print("reply", m["reply"].strip())
    print("task", herd.task("py-job-1")["id"] == sid)
    herd.stop(sid, force=True)
    print("state", herd.wait(sid, ["stopped"], timeout="30s")["state"])
    herd.remove(sid)
    try:
        herd.get(sid)
    except HerdError as e:
        print("after remove", e.status, e.code)
    return 0


if __name__ == "__main__":
    sys.exit(demo())
