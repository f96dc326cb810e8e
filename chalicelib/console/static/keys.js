// pennyworth console: API keys. "My keys" for everyone, "All keys" for admins, and the
// dialogs both use: create, the one-time secret, rotate with grace, revoke with confirmation.
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const { h, replace, announce, timeEl, moneyEl, ui, api } = PW;

  // The live catalog's served models (an admin's listing also has disabled and unreadable ones).
  let modelsCache = null;
  async function models() {
    if (!modelsCache) {
      modelsCache = api.get("admin/models").then((page) => (page.data || []).filter((m) => m.enabled !== false && m.status !== "unreadable"));
    }
    try {
      return await modelsCache;
    } catch (error) {
      modelsCache = null;
      throw error;
    }
  }

  // After the Models page changed the catalog: the next picker reads it again.
  function forgetModels() {
    modelsCache = null;
  }

  function modelsText(key) {
    return key.allowed_models ? key.allowed_models.join(", ") : h("span", { class: "muted" }, "all models");
  }

  // --- The one-time secret -------------------------------------------------------------------

  function showSecret(key, { rotated = false } = {}) {
    ui.dialog(rotated ? "The key's new secret" : "Your new key", (close) => {
      const input = h("input", { type: "text", readonly: true, value: key.secret, class: "secret", spellcheck: "false", autocomplete: "off" });
      input.addEventListener("focus", () => input.select());
      const grace = rotated && key.previous_secret_valid_until
        ? h("p", {}, "The previous secret keeps working until ", timeEl(key.previous_secret_valid_until), ".")
        : rotated
          ? h("p", {}, "The previous secret stopped working now.")
          : null;
      return h(
        "div",
        { class: "secret-panel" },
        h(
          "div",
          { class: "warning", role: "note" },
          h("strong", {}, "Copy this key now: it is shown only once. "),
          "pennyworth keeps only a hash of it and cannot show it again. Store it in a password manager or your client's settings; if it is lost, rotate the key."
        ),
        ui.field(`Secret of ${key.name || key.prefix}`, input),
        h("div", { class: "form-actions" }, PW.copyButton(() => key.secret, "Copy key"), h("a", { href: "#/connect", class: "button secondary", onclick: () => close() }, "Connect a client"), h("button", { type: "button", class: "primary", onclick: () => close("saved") }, "I have saved it")),
        grace
      );
    });
    announce(rotated ? "Key rotated. Copy the new secret now." : "Key created. Copy the secret now.");
  }

  // --- Create --------------------------------------------------------------------------------

  // team: charge the new key to this team ({id, name}); teamOwned: the team's own key (its admins).
  async function createDialog({ forOwner = false, onDone, team = null, teamOwned = false }) {
    let catalog = [];
    let teams = [];
    try {
      [catalog, teams] = await Promise.all([models(), team ? [team] : api.listAll("admin/teams", {}).then((r) => r.items).catch(() => [])]);
    } catch (error) {
      if (error instanceof PW.auth.SessionExpired) return PW.app.sessionExpired();
      ui.toast(`Could not load the model list: ${error.message}`);
    }
    ui.dialog(teamOwned ? `Create a key of team ${team.name}` : "Create a key", (close) => {
      const name = h("input", { name: "name", type: "text", required: true, maxlength: "200", autocomplete: "off", autofocus: true });
      const owner = forOwner && !teamOwned ? h("input", { name: "owner", type: "email", autocomplete: "off", placeholder: "leave empty for yourself" }) : null;
      // A person's key may be charged to one of their teams as well (its budget binds the key too).
      const charge = teamOwned || !teams.length
        ? null
        : h("select", { name: "team" }, team ? null : h("option", { value: "" }, "No team: charged to me alone"), teams.map((t) => h("option", { value: t.id }, t.name)));
      const budget = h("input", { name: "monthly_budget_usd", type: "text", inputmode: "decimal", pattern: "\\d{1,10}(\\.\\d{1,6})?", placeholder: "25.00", autocomplete: "off" });
      const expires = h("input", { name: "expires_at", type: "date", min: PW.isoDay(new Date(Date.now() + 86400000)) });
      // Which of a model's fallbacks may answer when it is throttled (docs/resilience.md).
      const fallback = h(
        "select",
        { name: "model_fallback" },
        h("option", { value: "any" }, "Any fallback the catalog lists (and the key may use)"),
        h("option", { value: "same_model" }, "Only the same model, in another geography or region"),
        h("option", { value: "none" }, "None: exactly the model asked for")
      );
      const guardrail = h("input", { name: "guardrail", type: "text", autocomplete: "off", placeholder: "guardrail id:version, e.g. abc123:1", pattern: "[a-z0-9]{1,64}(:(DRAFT|[1-9][0-9]{0,7}))?" });
      const allModels = h("input", { type: "radio", name: "model-scope", value: "all", checked: true, id: PW.uid("scope") });
      const someModels = h("input", { type: "radio", name: "model-scope", value: "some", id: PW.uid("scope") });
      const boxes = catalog.map((m) => h("input", { type: "checkbox", name: "allowed_models", value: m.id, id: PW.uid("model") }));
      const list = h(
        "div",
        { class: "checks", hidden: true },
        catalog.map((m, i) => h("div", { class: "check" }, boxes[i], h("label", { for: boxes[i].id }, m.id, " ", h("span", { class: "muted" }, m.mode))))
      );
      const toggle = () => (list.hidden = !someModels.checked);
      allModels.addEventListener("change", toggle);
      someModels.addEventListener("change", toggle);
      const modelsField = h(
        "fieldset",
        { class: "field" },
        h("legend", {}, "Models"),
        h("div", { class: "check" }, allModels, h("label", { for: allModels.id }, "Every model in the catalog")),
        h("div", { class: "check" }, someModels, h("label", { for: someModels.id }, "Only these:")),
        list
      );
      return ui.form(
        [
          ui.field("Name", name, "What the key is for, e.g. “laptop — chat tools”. Shown to admins."),
          teamOwned ? h("p", { class: "muted" }, "The team owns this key: it is charged to the team's budget and keeps working whoever leaves.") : null,
          owner ? ui.field("Owner (email)", owner, "Admins may create keys for another user of the pool.") : null,
          charge ? ui.field("Charge to team", charge, "Its spend counts against the team's budget as well as yours.") : null,
          ui.field("Monthly budget, USD (optional)", budget, "Requests are refused once this month's spend reaches it. Empty: no key budget."),
          modelsField,
          ui.field("Expires on (optional)", expires, "The key stops working at the end of this day (UTC)."),
          ui.field("Fallbacks", fallback, "When a model is throttled, which of its fallbacks may answer instead (named and billed at its price)."),
          ui.field("Bedrock guardrail (optional)", guardrail, "Every call with the key carries it (one of the stack's GuardrailIds); its charges are billed."),
        ],
        async () => {
          const body = { name: name.value.trim() };
          if (owner && owner.value.trim()) body.owner = owner.value.trim();
          if (teamOwned) {
            body.team = team.id;
            body.team_owned = true;
          } else if (charge && charge.value) {
            body.team = charge.value;
          }
          if (budget.value.trim()) body.monthly_budget_usd = budget.value.trim();
          if (expires.value) body.expires_at = `${expires.value}T23:59:59Z`;
          if (fallback.value !== "any") body.model_fallback = fallback.value;
          if (guardrail.value.trim()) {
            const [id, version] = guardrail.value.trim().split(":");
            body.guardrail = { id, version: version || "DRAFT" };
          }
          if (someModels.checked) {
            body.allowed_models = boxes.filter((b) => b.checked).map((b) => b.value);
            if (!body.allowed_models.length) throw new PW.ApiError("Choose at least one model, or every model.", { param: "allowed_models" });
          }
          const created = await api.post("admin/keys", body);
          close("created");
          showSecret(created);
          if (onDone) onDone(created);
        },
        { submitLabel: "Create key", cancel: () => close() }
      );
    });
  }

  // --- Rotate and revoke ---------------------------------------------------------------------

  function rotateDialog(key, onDone) {
    ui.dialog(`Rotate “${key.name || key.prefix}”`, (close) => {
      const grace = h(
        "select",
        { name: "grace_seconds" },
        h("option", { value: "0" }, "Immediately"),
        h("option", { value: "3600" }, "In 1 hour"),
        h("option", { value: "86400", selected: true }, "In 24 hours"),
        h("option", { value: "604800" }, "In 7 days (the longest)")
      );
      return ui.form(
        [
          h("p", {}, "Rotation gives ", h("code", {}, key.prefix), " a new secret. Its name, limits, budget and usage stay."),
          ui.field("The current secret stops working", grace, "A grace period lets running clients switch over."),
        ],
        async () => {
          const rotated = await api.post(`admin/keys/${encodeURIComponent(key.key_id)}/rotate`, { grace_seconds: Number(grace.value) });
          close("rotated");
          showSecret(rotated, { rotated: true });
          if (onDone) onDone(rotated);
        },
        { submitLabel: "Rotate key", cancel: () => close() }
      );
    });
  }

  function revokeDialog(key, onDone) {
    ui.dialog(`Revoke “${key.name || key.prefix}”?`, (close) => {
      const reason = h("textarea", { name: "reason", maxlength: "500", rows: "3" });
      const cancel = h("button", { type: "button", class: "secondary", onclick: () => close(), autofocus: true }, "Cancel");
      const f = ui.form(
        [
          h("p", { class: "warning", role: "note" }, "Every request with ", h("code", {}, key.prefix), " is refused from now on. This cannot be undone: create a new key instead."),
          ui.field("Reason (optional, kept in the audit log)", reason),
        ],
        async () => {
          const body = reason.value.trim() ? { reason: reason.value.trim() } : {};
          const revoked = await api.post(`admin/keys/${encodeURIComponent(key.key_id)}/revoke`, body);
          close("revoked");
          ui.toast(`Revoked ${revoked.prefix}.`);
          if (onDone) onDone(revoked);
        },
        { submitLabel: "Revoke key", danger: true }
      );
      // Cancel first: the safe choice takes the initial focus.
      f.querySelector(".form-actions").prepend(cancel);
      return f;
    });
  }

  function keyActions(key, refresh) {
    if (key.status === "revoked") return h("span", { class: "muted" }, "—");
    const label = key.name || key.prefix;
    return h(
      "div",
      { class: "row-actions" },
      h("button", { type: "button", class: "secondary small", "aria-label": `Rotate ${label}`, onclick: () => rotateDialog(key, refresh) }, "Rotate"),
      h("button", { type: "button", class: "danger-outline small", "aria-label": `Revoke ${label}`, onclick: () => revokeDialog(key, refresh) }, "Revoke")
    );
  }

  function budgetCell(key, spent) {
    if (key.monthly_budget_usd === null) return spent ? [moneyEl(spent), h("span", { class: "muted" }, " · no budget")] : h("span", { class: "muted" }, "none");
    return [moneyEl(spent || "0"), " of ", moneyEl(key.monthly_budget_usd)];
  }

  const STATUS_ORDER = { active: 0, disabled: 1, expired: 2, revoked: 3 };
  function sortKeys(keys) {
    return keys.slice().sort((a, b) => STATUS_ORDER[a.status] - STATUS_ORDER[b.status] || (b.created_at || "").localeCompare(a.created_at || ""));
  }

  function keyColumns(refresh, spentByKey, { withOwner = false } = {}) {
    return [
      {
        label: "Key",
        cell: (k) => [h("span", { class: "key-name" }, k.name || h("span", { class: "muted" }, "(no name)")), h("code", { class: "key-prefix" }, k.prefix)],
      },
      withOwner ? { label: "Owner", cell: (k) => k.owner.email || k.owner.sub } : null,
      { label: "Status", cell: (k) => ui.statusBadge(k.status) },
      { label: "This month / budget", cell: (k) => budgetCell(k, spentByKey[k.key_id]) },
      { label: "Models", cell: modelsText },
      { label: "Expires (UTC)", cell: (k) => timeEl(k.expires_at) },
      { label: "Last used (UTC)", cell: (k) => timeEl(k.last_used_at) },
      { label: "Actions", cell: (k) => keyActions(k, refresh), class: "actions-cell" },
    ].filter(Boolean);
  }

  async function spentByKey(ownerMe) {
    const { from, to } = PW.monthRange(PW.isoDay(new Date()).slice(0, 7));
    // /admin/usage takes the caller's sub (not "me") to narrow an admin's view to their own keys.
    const usage = await api.get("admin/usage", { group_by: "key", from, to, owner: ownerMe ? PW.auth.user().sub : undefined });
    return Object.fromEntries((usage.data || []).map((row) => [row.group, row.cost_usd]));
  }

  // --- My keys -------------------------------------------------------------------------------

  function myKeys(root, signal) {
    const body = h("div", {});
    const render = () =>
      ui.withLoading(
        body,
        "Loading your keys…",
        async () => {
          const [{ items }, spent] = await Promise.all([
            api.listAll("admin/keys", { owner: "me" }, { signal }),
            spentByKey(true).catch(() => ({})),
          ]);
          return { items, spent };
        },
        ({ items, spent }) =>
          ui.table(keyColumns(render, spent), sortKeys(items), {
            caption: `${items.length} key${items.length === 1 ? "" : "s"}`,
            emptyText: "You have no keys yet. Create one to start.",
          })
      );
    replace(
      root,
      ui.pageHeader(
        "My keys",
        "API keys for the OpenAI-compatible endpoint. Each key has its own budget, models and expiry.",
        h("button", { type: "button", class: "primary", onclick: () => createDialog({ onDone: render }) }, "Create key")
      ),
      body
    );
    render();
  }

  // --- All keys (admins) ---------------------------------------------------------------------

  function allKeys(root, signal) {
    const state = { keys: [], search: "", owner: "", status: "", model: "" };
    const results = h("div", {});
    const status = h("div", { class: "list-status" });
    const search = h("input", { type: "search", name: "search", placeholder: "name, key, owner, metadata…", autocomplete: "off" });
    const owner = h("select", { name: "owner" }, h("option", { value: "" }, "Every owner"));
    const statusFilter = h(
      "select",
      { name: "status" },
      h("option", { value: "" }, "Any status"),
      ["active", "disabled", "expired", "revoked"].map((s) => h("option", { value: s }, s))
    );
    const model = h("select", { name: "model" }, h("option", { value: "" }, "Any model"));
    const filters = h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter keys", onsubmit: (e) => e.preventDefault() },
      ui.field("Search", search),
      ui.field("Owner", owner),
      ui.field("Status", statusFilter),
      ui.field("Allows model", model)
    );

    const matches = (k) => {
      const text = [k.name, k.prefix, k.key_id, k.owner.email, k.owner.sub, ...Object.entries(k.metadata || {}).flat()].join(" ").toLowerCase();
      return (
        (!state.search || text.includes(state.search.toLowerCase())) &&
        (!state.owner || k.owner.sub === state.owner) &&
        (!state.status || k.status === state.status) &&
        (!state.model || k.allowed_models === null || k.allowed_models.includes(state.model))
      );
    };
    const spent = {};
    const show = () => {
      const shown = sortKeys(state.keys.filter(matches));
      replace(
        results,
        ui.table(keyColumns(load, spent, { withOwner: true }), shown, {
          caption: `${shown.length} of ${state.keys.length} keys`,
          emptyText: state.keys.length ? "No key matches these filters." : "No keys yet.",
        })
      );
    };
    for (const [control, name] of [[search, "search"], [owner, "owner"], [statusFilter, "status"], [model, "model"]]) {
      control.addEventListener(control === search ? "input" : "change", () => {
        state[name] = control.value;
        show();
      });
    }

    async function load() {
      const bar = ui.progress("Loading every key");
      const controller = new AbortController();
      signal.addEventListener("abort", () => controller.abort());
      bar.cancel.addEventListener("click", () => controller.abort());
      replace(status, bar.el);
      replace(results);
      results.setAttribute("aria-busy", "true");
      try {
        const [listing, catalog, usage] = await Promise.all([
          api.listAll("admin/keys", {}, { signal: controller.signal, onProgress: (n, more) => bar.update(n, more, "keys") }),
          models().catch(() => []),
          spentByKey(false).catch(() => ({})),
        ]);
        Object.assign(spent, usage);
        state.keys = listing.items;
        bar.finish(`${listing.items.length.toLocaleString("en-US")} key${listing.items.length === 1 ? "" : "s"} loaded${listing.truncated ? " (stopped at the listing limit)" : ""}.`);
        const owners = new Map(state.keys.map((k) => [k.owner.sub, k.owner.email || k.owner.sub]));
        replace(owner, h("option", { value: "" }, "Every owner"), [...owners].sort((a, b) => a[1].localeCompare(b[1])).map(([sub, label]) => h("option", { value: sub }, label)));
        replace(model, h("option", { value: "" }, "Any model"), catalog.map((m) => h("option", { value: m.id }, m.id)));
        owner.value = state.owner;
        model.value = state.model;
        show();
      } catch (error) {
        if (error.name === "AbortError") {
          replace(status, h("p", { class: "muted" }, "Stopped. ", h("button", { type: "button", class: "secondary small", onclick: load }, "Load again")));
          return;
        }
        if (error instanceof PW.auth.SessionExpired) return PW.app.sessionExpired();
        replace(status, ui.errorBox(error, { retry: load }));
      } finally {
        results.removeAttribute("aria-busy");
      }
    }

    replace(
      root,
      ui.pageHeader(
        "All keys",
        "Every key of every user. Filters apply to the loaded list.",
        h("button", { type: "button", class: "secondary", onclick: load }, "Reload"),
        h("button", { type: "button", class: "primary", onclick: () => createDialog({ forOwner: true, onDone: load }) }, "Create key")
      ),
      filters,
      status,
      results
    );
    load();
  }

  PW.keys = { myKeys, allKeys, models, forgetModels, createDialog, rotateDialog, revokeDialog };
})();
