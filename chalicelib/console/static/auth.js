// pennyworth console: sign-in with the authorization code flow and PKCE.
//
// On AWS the sign-in domain is Cognito's managed login; under `make dev` it is the local
// stand-in (local/console_login.py) with the same endpoints. Tokens live in this page's
// memory only: never in localStorage, sessionStorage or cookies. A reload signs in again
// (silently while the sign-in domain's own session lasts). sessionStorage holds only the
// one-time PKCE verifier and state between the redirect and the callback, and a flag that
// asks for that silent sign-in after a reload.
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const FLOW_KEY = "pennyworth.oauth";
  const RESUME_KEY = "pennyworth.resume";
  const SIGNED_OUT_KEY = "pennyworth.signed-out";
  const REFRESH_MARGIN_MS = 60 * 1000;

  const meta = document.querySelector('meta[name="pennyworth-config"]');
  const config = meta ? JSON.parse(meta.content) : {};
  let tokens = null; // {id, access, refresh, expiresAt}
  let refreshing = null;

  // Where the console lives ("/api/console/"), as the server saw the request; the API is its parent.
  const base = new URL(typeof config.base === "string" ? config.base : "/console/", location.href);

  // The console's own URL, exactly as registered as the app client's callback and sign-out URL.
  function consoleUrl() {
    return base.href.replace(/\/$/, "");
  }

  function configured() {
    return Boolean(config.auth_url && config.client_id);
  }

  function base64url(bytes) {
    let text = "";
    for (const byte of bytes) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function randomString(size) {
    return base64url(crypto.getRandomValues(new Uint8Array(size)));
  }

  async function challengeFor(verifier) {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    return base64url(new Uint8Array(digest));
  }

  async function signIn() {
    if (!configured()) throw new Error("Sign-in is not configured for this deployment (see docs/console.md).");
    const verifier = randomString(48);
    const state = randomString(24);
    sessionStorage.setItem(FLOW_KEY, JSON.stringify({ state, verifier, hash: location.hash || "" }));
    sessionStorage.removeItem(SIGNED_OUT_KEY);
    const params = new URLSearchParams({
      response_type: "code",
      client_id: config.client_id,
      redirect_uri: consoleUrl(),
      scope: "openid email profile",
      state,
      code_challenge: await challengeFor(verifier),
      code_challenge_method: "S256",
    });
    location.assign(`${config.auth_url}/oauth2/authorize?${params}`);
  }

  async function tokenRequest(fields) {
    let response;
    try {
      response = await fetch(`${config.auth_url}/oauth2/token`, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ client_id: config.client_id, ...fields }),
        credentials: "omit",
      });
    } catch (_) {
      throw new Error("The sign-in service could not be reached. Check your connection and try again.");
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(body.error_description || body.error || `Sign-in failed (HTTP ${response.status}).`);
    }
    return body;
  }

  function keep(body, previousRefresh) {
    tokens = {
      id: body.id_token,
      access: body.access_token,
      refresh: body.refresh_token || previousRefresh || null,
      expiresAt: Date.now() + Number(body.expires_in || 3600) * 1000,
    };
    sessionStorage.setItem(RESUME_KEY, "1");
  }

  // Called once at start-up. Returns "signed-in", "signed-out" or "redirecting".
  async function start() {
    const url = new URL(location.href);
    const code = url.searchParams.get("code");
    const error = url.searchParams.get("error");
    if (code || error) {
      const flow = JSON.parse(sessionStorage.getItem(FLOW_KEY) || "null");
      sessionStorage.removeItem(FLOW_KEY);
      // The code must not stay in the address bar or history.
      history.replaceState(null, "", `${consoleUrl()}${flow && flow.hash ? flow.hash : ""}`);
      if (error) throw new Error(url.searchParams.get("error_description") || `Sign-in failed: ${error}.`);
      if (!flow || flow.state !== url.searchParams.get("state")) {
        throw new Error("This sign-in answer does not belong to this browser tab; sign in again.");
      }
      keep(
        await tokenRequest({
          grant_type: "authorization_code",
          code,
          redirect_uri: consoleUrl(),
          code_verifier: flow.verifier,
        })
      );
      return "signed-in";
    }
    if (configured() && sessionStorage.getItem(RESUME_KEY) === "1") {
      // Once only: coming back from the sign-in page without signing in must not loop.
      sessionStorage.removeItem(RESUME_KEY);
      await signIn();
      return "redirecting";
    }
    return "signed-out";
  }

  async function refresh() {
    if (!tokens || !tokens.refresh) throw new SessionExpired();
    if (!refreshing) {
      const current = tokens.refresh;
      refreshing = tokenRequest({ grant_type: "refresh_token", refresh_token: current })
        .then((body) => keep(body, current))
        .catch(() => {
          tokens = null;
          throw new SessionExpired();
        })
        .finally(() => (refreshing = null));
    }
    return refreshing;
  }

  class SessionExpired extends Error {
    constructor() {
      super("Your session has expired; sign in again.");
      this.name = "SessionExpired";
    }
  }

  // The ID token for the API's Authorization header, refreshed shortly before it expires.
  async function idToken({ forceRefresh = false } = {}) {
    if (!tokens) throw new SessionExpired();
    if (forceRefresh || tokens.expiresAt - Date.now() < REFRESH_MARGIN_MS) await refresh();
    return tokens.id;
  }

  function claims() {
    if (!tokens) return null;
    try {
      const part = tokens.id.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const json = decodeURIComponent(
        Array.from(atob(part), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`).join("")
      );
      return JSON.parse(json);
    } catch (_) {
      return null;
    }
  }

  function user() {
    const c = claims() || {};
    const email = typeof c.email === "string" && c.email.includes("@") ? c.email : null;
    const groups = Array.isArray(c["cognito:groups"]) ? c["cognito:groups"] : [];
    return { sub: c.sub, email, name: email || c["cognito:username"] || c.sub, isAdmin: groups.includes("admins") };
  }

  // Forget the tokens here, revoke the refresh token, end the sign-in domain's session.
  async function signOut() {
    const refreshToken = tokens && tokens.refresh;
    tokens = null;
    sessionStorage.removeItem(RESUME_KEY);
    sessionStorage.removeItem(FLOW_KEY);
    sessionStorage.setItem(SIGNED_OUT_KEY, "1");
    if (!configured()) return;
    if (refreshToken) {
      await fetch(`${config.auth_url}/oauth2/revoke`, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token: refreshToken, client_id: config.client_id }),
        credentials: "omit",
      }).catch(() => null);
    }
    const params = new URLSearchParams({ client_id: config.client_id, logout_uri: consoleUrl() });
    location.assign(`${config.auth_url}/logout?${params}`);
  }

  function justSignedOut() {
    const flag = sessionStorage.getItem(SIGNED_OUT_KEY) === "1";
    sessionStorage.removeItem(SIGNED_OUT_KEY);
    return flag;
  }

  PW.auth = {
    config,
    base,
    configured,
    consoleUrl,
    start,
    signIn,
    signOut,
    idToken,
    user,
    justSignedOut,
    SessionExpired,
    isSignedIn: () => tokens !== null,
  };
})();
