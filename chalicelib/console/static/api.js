// pennyworth console: the documented JSON API (docs/console.md lists every route it calls).
// Errors keep the API's own message, code and param, so the page can show them as they are.
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});

  class ApiError extends Error {
    constructor(message, { status = 0, code = null, param = null, type = null } = {}) {
      super(message);
      this.name = "ApiError";
      this.status = status;
      this.code = code;
      this.param = param;
      this.type = type;
    }
  }

  // The API's root: the console lives at <root>/console, so the root is one level up.
  function apiUrl(path, query) {
    const url = new URL(`../${path.replace(/^\//, "")}`, PW.auth.base);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    return url;
  }

  function gatewayRoot() {
    return new URL("..", PW.auth.base).href.replace(/\/$/, "");
  }

  async function send(method, path, { query, body, signal, retried = false } = {}) {
    const token = await PW.auth.idToken({ forceRefresh: retried });
    let response;
    try {
      response = await fetch(apiUrl(path, query), {
        method,
        headers: {
          Authorization: `Bearer ${token}`,
          ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal,
        credentials: "omit",
        cache: "no-store",
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError("The gateway could not be reached. Check your connection and try again.");
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (response.ok) return data;
    const error = data && data.error ? data.error : {};
    // An expired ID token: refresh once and retry.
    if (response.status === 401 && !retried && (error.code === "token_expired" || !error.code)) {
      return send(method, path, { query, body, signal, retried: true });
    }
    const message =
      error.message ||
      (data && data.message) ||
      (response.status === 403 ? "You are not allowed to do this." : `The gateway answered HTTP ${response.status}.`);
    throw new ApiError(message, { status: response.status, code: error.code, param: error.param, type: error.type });
  }

  // Every page of a cursor listing; onProgress(loadedSoFar, hasMore) after each page.
  async function listAll(path, query, { onProgress, signal, limit = 100, max = 20000 } = {}) {
    const items = [];
    let cursor = null;
    do {
      const page = await send("GET", path, { query: { ...query, limit, cursor }, signal });
      items.push(...(page.data || []));
      cursor = page.has_more ? page.next_cursor : null;
      if (onProgress) onProgress(items.length, Boolean(cursor));
    } while (cursor && items.length < max);
    return { items, truncated: Boolean(cursor) };
  }

  PW.ApiError = ApiError;
  PW.api = {
    apiUrl,
    gatewayRoot,
    listAll,
    get: (path, query, options) => send("GET", path, { ...options, query }),
    post: (path, body, options) => send("POST", path, { ...options, body: body || {} }),
    put: (path, body, options) => send("PUT", path, { ...options, body }),
    patch: (path, body, options) => send("PATCH", path, { ...options, body }),
    del: (path, query, options) => send("DELETE", path, { ...options, query }),
  };
})();
