// pennyworth console: editing a key (PATCH /admin/keys/{id}). The dialog offers what the API lets
// anyone change: name, monthly budget, models, expiry, rate limits, the team a person's key is
// charged to, its Bedrock guardrail and whether fallbacks to other models may serve it, and sends
// only what changed.
// Who may loosen what is the API's rule (an owner may tighten a limit an admin set, never loosen
// it; only an admin extends an expired key): the dialog says where an admin's limit applies, and a
// refusal is shown as the API gave it, next to its field.
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const { h, ui, api, money } = PW;

  const dayOf = (time) => (time ? String(time).slice(0, 10) : "");
  // model_fallback, loosest first (the API's MODEL_FALLBACKS): who may serve when the model is throttled.
  const FALLBACKS = {
    any: "Any fallback the catalog lists (other models too, if the key may use them)",
    same_model: "Only the same model (another geography or region)",
    none: "No fallback: exactly the model asked for",
  };

  // Why a field may be refused to this caller, from the key's admin_limits (owners only).
  function limitHint(key, name, isAdmin) {
    const limits = key.admin_limits || {};
    if (isAdmin || !(name in limits)) return null;
    const value = limits[name];
    const shown = {
      monthly_budget_usd: () => money(value),
      allowed_models: () => value.join(", "),
      expires_at: () => PW.dateTime(value),
      guardrail: () => PW.guardrail.text(value),
      model_fallback: () => FALLBACKS[value] || value,
    }[name];
    return `An admin limited this to ${shown ? shown() : value}: you may tighten it, not loosen or remove it.`;
  }

  function hintText(...parts) {
    return parts.filter(Boolean).join(" ");
  }

  async function open(key, { onDone } = {}) {
    const me = PW.auth.user();
    const isAdmin = me.isAdmin;
    // A person's key may move between its owner's teams (the owner or an admin moves it); a
    // team's own key stays with its team.
    const mayMove = !key.team_owned && (isAdmin || (key.owner && key.owner.sub === me.sub));
    let catalog = [];
    let teams = [];
    try {
      [catalog, teams] = await Promise.all([
        PW.keys.models(),
        mayMove ? api.listAll("admin/teams", {}).then((r) => r.items).catch(() => []) : [],
      ]);
    } catch (error) {
      if (error instanceof PW.auth.SessionExpired) return PW.app.sessionExpired();
      ui.toast(`Could not load the model list: ${error.message}`);
    }
    const expired = key.status === "expired";
    ui.dialog(`Edit “${key.name || key.prefix}”`, (close) => {
      const name = h("input", { name: "name", type: "text", maxlength: "200", value: key.name || "", autocomplete: "off", autofocus: true });
      const budget = h("input", { name: "monthly_budget_usd", type: "text", inputmode: "decimal", pattern: "\\d{1,10}(\\.\\d{1,6})?", value: key.monthly_budget_usd || "", placeholder: "no budget", autocomplete: "off" });
      const expires = h("input", { name: "expires_at", type: "date", value: dayOf(key.expires_at), min: PW.isoDay(new Date(Date.now() + 86400000)) });
      const rpm = h("input", { name: "rpm_limit", type: "number", min: "1", step: "1", value: key.rpm_limit === null ? "" : String(key.rpm_limit), placeholder: "no limit" });
      const guardrail = h("input", { name: "guardrail", type: "text", maxlength: "200", value: PW.guardrail.field(key.guardrail), placeholder: "none", autocomplete: "off", spellcheck: "false" });
      const fallback = h("select", { name: "model_fallback" }, Object.entries(FALLBACKS).map(([value, label]) => h("option", { value }, label)));
      fallback.value = key.model_fallback || "any";
      const tpm = h("input", { name: "tpm_limit", type: "number", min: "1", step: "1", value: key.tpm_limit === null ? "" : String(key.tpm_limit), placeholder: "no limit" });
      const limited = key.allowed_models !== null;
      const allModels = h("input", { type: "radio", name: "model-scope", value: "all", checked: !limited, id: PW.uid("scope") });
      const someModels = h("input", { type: "radio", name: "model-scope", value: "some", checked: limited, id: PW.uid("scope") });
      // The catalog's models, and any the key allows that the catalog no longer lists.
      const ids = [...new Set([...catalog.map((m) => m.id), ...(key.allowed_models || [])])];
      const boxes = ids.map((id) => h("input", { type: "checkbox", name: "allowed_models", value: id, id: PW.uid("model"), checked: limited && key.allowed_models.includes(id) }));
      const list = h("div", { class: "checks", hidden: !limited }, ids.map((id, i) => h("div", { class: "check" }, boxes[i], h("label", { for: boxes[i].id }, id))));
      const toggle = () => (list.hidden = !someModels.checked);
      allModels.addEventListener("change", toggle);
      someModels.addEventListener("change", toggle);
      const modelsHint = limitHint(key, "allowed_models", isAdmin);
      const choices = key.team && !teams.some((t) => t.id === key.team) ? [...teams, { id: key.team, name: key.team }] : teams;
      const charge = mayMove && choices.length
        ? h("select", { name: "team" }, h("option", { value: "" }, "No team: charged to its owner alone"), choices.map((t) => h("option", { value: t.id }, t.name)))
        : null;
      if (charge) charge.value = key.team || "";
      const modelsField = h(
        "fieldset",
        { class: "field", "aria-describedby": modelsHint ? `${boxes.length ? boxes[0].id : "models"}-limit` : null },
        h("legend", {}, "Models"),
        h("div", { class: "check" }, allModels, h("label", { for: allModels.id }, "Every model in the catalog")),
        h("div", { class: "check" }, someModels, h("label", { for: someModels.id }, "Only these:")),
        list,
        modelsHint ? h("p", { class: "hint", id: `${boxes.length ? boxes[0].id : "models"}-limit` }, modelsHint) : null
      );

      // Only what changed goes to the API; an emptied field is null (no budget, no expiry, no limit).
      function changes() {
        const body = {};
        if (name.value.trim() !== (key.name || "")) body.name = name.value.trim();
        if (charge && charge.value !== (key.team || "")) body.team = charge.value || null;
        const amount = budget.value.trim();
        if (amount !== (key.monthly_budget_usd || "")) body.monthly_budget_usd = amount === "" ? null : amount;
        if (expires.value !== dayOf(key.expires_at)) body.expires_at = expires.value ? `${expires.value}T23:59:59Z` : null;
        for (const [field, input, current] of [["rpm_limit", rpm, key.rpm_limit], ["tpm_limit", tpm, key.tpm_limit]]) {
          const value = input.value.trim();
          if (value !== (current === null ? "" : String(current))) body[field] = value === "" ? null : Number(value);
        }
        const wanted = PW.guardrail.body(guardrail.value);
        if (PW.guardrail.field(wanted) !== PW.guardrail.field(key.guardrail)) body.guardrail = wanted;
        if (fallback.value !== (key.model_fallback || "any")) body.model_fallback = fallback.value;
        const chosen = someModels.checked ? boxes.filter((b) => b.checked).map((b) => b.value) : null;
        const before = key.allowed_models;
        const same = chosen === null ? before === null : before !== null && chosen.length === before.length && chosen.every((m) => before.includes(m));
        if (!same) {
          if (chosen !== null && !chosen.length) throw new PW.ApiError("Choose at least one model, or every model.", { param: "allowed_models" });
          body.allowed_models = chosen;
        }
        return body;
      }

      return ui.form(
        [
          h("p", { class: "muted" }, "Key ", h("code", {}, key.prefix), key.owner && (key.owner.email || key.owner.sub) ? [" of ", key.owner.email || key.owner.sub] : null, ". Empty a field to remove its limit."),
          ui.field("Name", name),
          charge ? ui.field("Charge to team", charge, "Requests from now on count against that team's budget as well; the key's owner must be on it.") : null,
          ui.field("Monthly budget, USD", budget, hintText("Requests are refused once this month's spend reaches it; empty: no key budget.", limitHint(key, "monthly_budget_usd", isAdmin))),
          modelsField,
          ui.field(
            "Expires on",
            expires,
            hintText(
              "The key stops working at the end of this day (UTC); empty: never.",
              expired && !isAdmin ? "This key has expired: only an admin can extend it." : null,
              limitHint(key, "expires_at", isAdmin)
            )
          ),
          h("div", { class: "two-fields" }, ui.field("Requests per minute", rpm, limitHint(key, "rpm_limit", isAdmin)), ui.field("Tokens per minute", tpm, limitHint(key, "tpm_limit", isAdmin))),
          ui.field(
            "Bedrock guardrail (id:version)",
            guardrail,
            hintText(
              "Every call with the key carries it (one of the stack's GuardrailIds), instead of its team's or model's; its charges are billed. Empty: none of its own.",
              key.team && !isAdmin ? "If the key's team has a guardrail, only an admin may set, change or clear one here." : null,
              limitHint(key, "guardrail", isAdmin)
            )
          ),
          ui.field("When the model is throttled or failing", fallback, hintText("Some teams need the exact model.", limitHint(key, "model_fallback", isAdmin))),
        ],
        async () => {
          const body = changes();
          if (!Object.keys(body).length) {
            close();
            ui.toast("Nothing changed.");
            return;
          }
          const updated = await api.patch(`admin/keys/${encodeURIComponent(key.key_id)}`, body);
          close("saved");
          ui.toast(`Saved ${updated.name || updated.prefix}.`);
          if (onDone) onDone(updated);
        },
        { submitLabel: "Save changes", cancel: () => close() }
      );
    });
  }

  PW.keyEdit = { open };
})();
