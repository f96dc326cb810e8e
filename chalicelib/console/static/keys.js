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
      h("button", { type: "button", class: "secondary small", "aria-label": `Edit ${label}`, onclick: () => PW.keyEdit.open(key, { onDone: refresh }) }, "Edit"),
      h("button", { type: "button", class: "secondary small", "aria-label": `Rotate ${label}`, onclick: () => rotateDialog(key, refresh) }, "Rotate"),
      h("button", { type: "button", class: "danger-outline small", "aria-label": `Revoke ${label}`, onclick: () => revokeDialog(key, refresh) }, "Revoke")
    );
  }

  // This month's spend comes with each key from the listing (its month aggregate).
  function budgetCell(key) {
    const spent = key.month ? key.month.spent_usd : "0";
    if (key.monthly_budget_usd === null) return Number(spent) ? [moneyEl(spent), h("span", { class: "muted" }, " · no budget")] : h("span", { class: "muted" }, "none");
    return [moneyEl(spent), " of ", moneyEl(key.monthly_budget_usd)];
  }

  function keyColumns(refresh, { withOwner = false } = {}) {
    return [
      {
        label: "Key",
        cell: (k) => [h("span", { class: "key-name" }, k.name || h("span", { class: "muted" }, "(no name)")), h("code", { class: "key-prefix" }, k.prefix)],
      },
      withOwner ? { label: "Owner", cell: (k) => k.owner.email || k.owner.sub } : null,
      { label: "Status", cell: (k) => ui.statusBadge(k.status) },
      { label: "This month / budget", cell: (k) => budgetCell(k) },
      { label: "Models", cell: modelsText },
      { label: "Expires (UTC)", cell: (k) => timeEl(k.expires_at) },
      { label: "Last used (UTC)", cell: (k) => timeEl(k.last_used_at) },
      { label: "Actions", cell: (k) => keyActions(k, refresh), class: "actions-cell" },
    ].filter(Boolean);
  }

  // A listing shown a page at a time, newest first; the server searches and filters (GET /admin/keys).
  // A search that matches little may answer a short page that still has more: the list says how
  // far it looked and offers to look further, instead of loading every key first.
  function pagedKeys({ target, more, query, withOwner, emptyText, signal, onCount }) {
    let keys = [];
    let generation = 0;
    async function load(cursor) {
      const mine = ++generation;
      if (!cursor) {
        keys = [];
        target.setAttribute("aria-busy", "true");
        replace(target, ui.loading("Loading keys…"));
        replace(more);
      }
      try {
        const page = await api.get("admin/keys", { ...query(), limit: PAGE_SIZE, cursor }, { signal });
        if (mine !== generation) return; // a newer search replaced this one
        keys = keys.concat(page.data);
        replace(
          target,
          keys.length
            ? ui.table(keyColumns(() => load(null), { withOwner }), keys, { caption: `${keys.length} key${keys.length === 1 ? "" : "s"}, newest first${page.has_more ? " (more below)" : ""}` })
            : ui.empty(page.has_more ? "No matching key among the keys searched so far." : emptyText)
        );
        if (onCount) onCount(keys.length, page.has_more);
        replace(
          more,
          page.has_more
            ? h("button", { type: "button", class: "secondary", onclick: (e) => { e.target.disabled = true; e.target.textContent = "Loading…"; load(page.next_cursor); } }, keys.length ? "Load more keys" : "Search further")
            : null
        );
      } catch (error) {
        if (error.name === "AbortError" || mine !== generation) return;
        if (error instanceof PW.auth.SessionExpired) return PW.app.sessionExpired();
        replace(cursor ? more : target, ui.errorBox(error, { retry: () => load(cursor) }));
      } finally {
        if (mine === generation) target.removeAttribute("aria-busy");
      }
    }
    return { reload: () => load(null) };
  }

  const PAGE_SIZE = 50;

  // --- My keys -------------------------------------------------------------------------------

  function myKeys(root, signal) {
    const body = h("div", {});
    const more = h("div", { class: "list-status" });
    const list = pagedKeys({
      target: body,
      more,
      query: () => ({ owner: "me" }),
      withOwner: false,
      emptyText: "You have no keys yet. Create one to start.",
      signal,
    });
    replace(
      root,
      ui.pageHeader(
        "My keys",
        "API keys for the OpenAI-compatible endpoint. Each key has its own budget, models and expiry.",
        h("button", { type: "button", class: "primary", onclick: () => createDialog({ onDone: list.reload }) }, "Create key")
      ),
      body,
      more
    );
    list.reload();
  }

  // --- All keys (admins) ---------------------------------------------------------------------

  function allKeys(root, signal) {
    const results = h("div", {});
    const more = h("div", { class: "list-status" });
    const search = h("input", { type: "search", name: "q", placeholder: "name, key, owner, metadata…", autocomplete: "off", maxlength: "200" });
    const owner = h("input", { type: "text", name: "owner", placeholder: "email or sub", autocomplete: "off", spellcheck: "false" });
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
    const list = pagedKeys({
      target: results,
      more,
      query: () => ({ q: search.value.trim(), owner: owner.value.trim(), status: statusFilter.value, model: model.value }),
      withOwner: true,
      emptyText: "No key matches these filters.",
      signal,
      onCount: (n, hasMore) => PW.announce(`${n} key${n === 1 ? "" : "s"} shown${hasMore ? ", more available" : ""}`),
    });
    // Typing searches on the server, a moment after the last key press.
    let timer = null;
    const soon = () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(list.reload, 300);
    };
    search.addEventListener("input", soon);
    owner.addEventListener("change", list.reload); // a whole e-mail address, not each letter of it
    statusFilter.addEventListener("change", list.reload);
    model.addEventListener("change", list.reload);
    models()
      .then((catalog) => replace(model, h("option", { value: "" }, "Any model"), catalog.map((m) => h("option", { value: m.id }, m.id))))
      .catch(() => {});

    replace(
      root,
      ui.pageHeader(
        "All keys",
        "Every key of every user, newest first. Search and filters run on the gateway, a page at a time.",
        h("button", { type: "button", class: "secondary", onclick: list.reload }, "Reload"),
        h("button", { type: "button", class: "primary", onclick: () => createDialog({ forOwner: true, onDone: list.reload }) }, "Create key")
      ),
      filters,
      results,
      more
    );
    list.reload();
  }

  PW.keys = { myKeys, allKeys, models, forgetModels, createDialog, rotateDialog, revokeDialog, modelsText };
})();
