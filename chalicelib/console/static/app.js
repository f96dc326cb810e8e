// pennyworth console: start-up, the signed-out screen, navigation between pages.
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const { h, replace, ui } = PW;

  const ROUTES = {
    "/keys": { title: "My keys", view: (root, signal) => PW.keys.myKeys(root, signal) },
    "/spend": { title: "My spend", view: (root, signal) => PW.spend.mySpend(root, signal) },
    "/requests": { title: "Requests", view: (root, signal) => PW.requests.requestsPage(root, signal) },
    "/connect": { title: "Connect a client", view: (root, signal) => PW.connect.connect(root, signal) },
    "/teams": { title: "Teams", view: (root, signal) => PW.teams.teams(root, signal) },
    "/admin/people": { title: "People", admin: true, view: (root, signal) => PW.people.people(root, signal) },
    "/admin/keys": { title: "All keys", admin: true, view: (root, signal) => PW.keys.allKeys(root, signal) },
    "/admin/models": { title: "Models", admin: true, view: (root, signal) => PW.models.modelsPage(root, signal) },
    "/admin/owners": { title: "Owners and budgets", admin: true, view: (root, signal) => PW.admin.owners(root, signal) },
    "/admin/usage": { title: "Usage", admin: true, view: (root, signal) => PW.admin.usage(root, signal) },
    "/admin/audit": { title: "Audit log", admin: true, view: (root, signal) => PW.admin.audit(root, signal) },
    "/admin/report": { title: "Daily report", admin: true, view: (root, signal) => PW.admin.report(root, signal) },
  };
  const DEFAULT_ROUTE = "/keys";
  let controller = null;

  const main = () => document.getElementById("main");

  function currentPath() {
    const path = location.hash.replace(/^#/, "").split("?")[0];
    return ROUTES[path] ? path : DEFAULT_ROUTE;
  }

  function navLink(path) {
    const route = ROUTES[path];
    return h("li", {}, h("a", { href: `#${path}`, dataset: { path } }, route.title));
  }

  function renderShell() {
    const user = PW.auth.user();
    replace(
      document.getElementById("user"),
      h("span", { class: "user-name" }, user.name),
      user.isAdmin ? h("span", { class: "badge role" }, "admin") : null,
      h("button", { type: "button", class: "secondary small", id: "sign-out", onclick: signOut }, "Sign out")
    );
    const nav = document.getElementById("nav");
    nav.hidden = false;
    // Admin pages are listed for admins only; a user who opens one anyway gets the API's refusal.
    replace(
      nav,
      h("ul", {}, ["/keys", "/spend", "/requests", "/teams", "/connect"].map(navLink)),
      user.isAdmin ? [h("p", { class: "nav-heading", id: "admin-nav" }, "Admin"), h("ul", { "aria-labelledby": "admin-nav" }, ["/admin/keys", "/admin/models", "/admin/people", "/admin/owners", "/admin/usage", "/admin/audit", "/admin/report"].map(navLink))] : null
    );
  }

  function route() {
    if (!PW.auth.isSignedIn()) return;
    const path = currentPath();
    if (controller) controller.abort();
    controller = new AbortController();
    for (const link of document.querySelectorAll("#nav a")) {
      if (link.dataset.path === path) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    document.title = `${ROUTES[path].title} · pennyworth`;
    const root = main();
    ROUTES[path].view(root, controller.signal);
    const title = document.getElementById("page-title");
    if (title && document.activeElement !== title && !document.querySelector("dialog[open]")) title.focus();
  }

  function signedOut({ message, error } = {}) {
    if (controller) controller.abort();
    document.getElementById("nav").hidden = true;
    replace(document.getElementById("user"));
    document.title = "Sign in · pennyworth";
    const config = PW.auth.config;
    const button = h("button", { type: "button", class: "primary large", id: "sign-in" }, "Sign in");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await PW.auth.signIn();
      } catch (e) {
        button.disabled = false;
        replace(slot, ui.errorBox(e));
      }
    });
    const slot = h("div", {}, error ? ui.errorBox(error) : null, message ? h("p", { class: "notice", role: "status" }, message) : null);
    replace(
      main(),
      h(
        "div",
        { class: "signin" },
        h("h1", { tabindex: "-1", id: "page-title" }, "pennyworth console"),
        h("p", { class: "intro" }, "Your API keys for the team's LLM gateway: create and rotate them, see what they cost, and connect your tools."),
        slot,
        PW.auth.configured()
          ? button
          : ui.errorBox({ message: "Sign-in is not configured for this deployment: the stack needs its ConsoleUrl parameter (see docs/console.md)." }),
        config.local
          ? h("p", { class: "local-note" }, h("strong", {}, "Local development stack. "), "Sign-in goes to a local stand-in for Cognito's managed login; use the admin or user that ", h("code", {}, "make dev"), " printed.")
          : null
      )
    );
    document.getElementById("page-title").focus();
  }

  async function signOut() {
    replace(main(), ui.loading("Signing out…"));
    await PW.auth.signOut();
    if (!PW.auth.configured()) signedOut({ message: "You are signed out." });
  }

  function sessionExpired() {
    signedOut({ message: "Your session has expired; sign in again." });
  }

  async function boot() {
    if (PW.auth.config.local) document.getElementById("local-badge").hidden = false;
    let state;
    try {
      state = await PW.auth.start();
    } catch (error) {
      return signedOut({ error });
    }
    if (state === "redirecting") return;
    if (state === "signed-out") {
      return signedOut({ message: PW.auth.justSignedOut() ? "You are signed out. Your session tokens were cleared." : null });
    }
    renderShell();
    window.addEventListener("hashchange", route);
    route();
  }

  PW.app = { sessionExpired, route };
  document.addEventListener("DOMContentLoaded", boot);
})();
