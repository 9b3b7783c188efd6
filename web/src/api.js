// The daemon's API, from the browser: the session cookie authenticates, and
// every request that changes something carries the CSRF header the daemon
// requires of cookie-authenticated writes (a cross-site form cannot set it).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API; resolves to the parsed JSON (or text), throws ApiError. */
export async function api(method, path, body, { signal } = {}) {
  const headers = { "x-herd-csrf": "1" };
  if (body !== undefined) headers["content-type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", `cannot reach the daemon: ${e.message}`);
  }
  const text = await resp.text();
  let data = text;
  if ((resp.headers.get("content-type") || "").includes("json") && text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (resp.status === 401) {
    // The cookie expired or the token changed: log in again.
    location.assign("/login?expired=1");
    throw new ApiError(401, "unauthorized", "logged out");
  }
  if (!resp.ok) {
    const err = data && data.error;
    throw new ApiError(resp.status, err ? err.code : "http",
      err ? err.message : `${method} ${path}: HTTP ${resp.status}`);
  }
  return data;
}

/** The WebSocket URL of an API path on this origin. */
export function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

/** Path of one session's route. */
export function sessionPath(id, rest = "") {
  return `/v1/sessions/${encodeURIComponent(id)}${rest}`;
}
