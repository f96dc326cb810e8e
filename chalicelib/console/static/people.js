// pennyworth console: people (admins). Invite (Cognito e-mails a temporary password; a local
// stack shows it here instead), disable (their personal keys are refused from the next
// request), enable (the keys that were active work again), remove, and admin rights.
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const { h, replace, ui, api, moneyEl, timeEl } = PW;

  const personPath = (who, ...rest) => ["admin/people", encodeURIComponent(who), ...rest].join("/");

  function teamsText(person) {
    if (!person.teams.length) return h("span", { class: "muted" }, "none");
    return person.teams.map((t, i) => [i ? ", " : "", h("a", { href: `#/teams?team=${encodeURIComponent(t.id)}` }, t.name || t.id), t.role === "admin" ? " (admin)" : ""]);
  }

  function people(root, signal) {
    const body = h("div", {});
    const render = () =>
      ui.withLoading(
        body,
        "Loading people…",
        () => api.listAll("admin/people", {}, { signal }),
        ({ items }) =>
          ui.table(
            [
              { label: "Person", cell: (p) => [p.email || p.sub, p.admin ? [" ", h("span", { class: "badge role" }, "admin")] : null] },
              { label: "Status", cell: (p) => ui.statusBadge(p.status) },
              { label: "Teams", cell: teamsText },
              { label: "Budget / month", cell: (p) => (p.monthly_budget_usd === null ? h("span", { class: "muted" }, "none") : moneyEl(p.monthly_budget_usd)), class: "num" },
              { label: "Keys (active)", cell: (p) => `${p.keys.total} (${p.keys.active})`, class: "num" },
              { label: "Last activity (UTC)", cell: (p) => timeEl(p.last_activity_at) },
              { label: "Actions", cell: (p) => actions(p, render), class: "actions-cell" },
            ],
            items.slice().sort((a, b) => (a.email || a.sub).localeCompare(b.email || b.sub)),
            { caption: `${items.length} ${items.length === 1 ? "person" : "people"}`, emptyText: "Nobody yet." }
          )
      );
    replace(
      root,
      ui.pageHeader(
        "People",
        "Everyone the gateway knows. Disabling someone stops their personal keys at once; their team's own keys keep working.",
        h("button", { type: "button", class: "primary", onclick: () => inviteDialog(render) }, "Invite")
      ),
      body
    );
    render();
  }

  function actions(person, reload) {
    if (person.status === "removed") return h("span", { class: "muted" }, "—");
    const label = person.email || person.sub;
    const me = PW.auth.user().sub === person.sub;
    const buttons = [];
    if (person.status === "active" && !me) {
      buttons.push(h("button", { type: "button", class: "danger-outline small", "aria-label": `Disable ${label}`, onclick: () => disableDialog(person, reload) }, "Disable"));
    }
    if (person.status === "disabled") {
      buttons.push(
        h("button", { type: "button", class: "secondary small", "aria-label": `Enable ${label}`, onclick: () => act(person, () => api.post(personPath(person.sub, "enable")), `${label} is enabled; their keys work again.`, reload) }, "Enable")
      );
    }
    buttons.push(
      h(
        "button",
        {
          type: "button",
          class: "secondary small",
          "aria-label": person.admin ? `Take admin rights from ${label}` : `Make ${label} an admin`,
          onclick: () => act(person, () => api.patch(personPath(person.sub), { admin: !person.admin }), person.admin ? `${label} is no longer an admin.` : `${label} is now an admin.`, reload),
        },
        person.admin ? "Revoke admin" : "Make admin"
      )
    );
    if (!me) buttons.push(h("button", { type: "button", class: "danger-outline small", "aria-label": `Remove ${label}`, onclick: () => removeDialog(person, reload) }, "Remove"));
    return h("div", { class: "row-actions wrap" }, buttons);
  }

  async function act(person, call, message, reload) {
    try {
      await call();
      ui.toast(message);
      reload();
    } catch (error) {
      if (error instanceof PW.auth.SessionExpired) return PW.app.sessionExpired();
      ui.toast(`${person.email || person.sub}: ${error.message}`);
    }
  }

  function confirmDialog(title, text, submitLabel, call) {
    ui.dialog(title, (close) => {
      const reason = h("textarea", { name: "reason", maxlength: "500", rows: "3" });
      const cancel = h("button", { type: "button", class: "secondary", onclick: () => close(), autofocus: true }, "Cancel");
      const f = ui.form(
        [h("p", { class: "warning", role: "note" }, text), ui.field("Reason (optional, kept in the audit log)", reason)],
        async () => {
          await call(reason.value.trim() ? { reason: reason.value.trim() } : {});
          close("done");
        },
        { submitLabel, danger: true }
      );
      f.querySelector(".form-actions").prepend(cancel);
      return f;
    });
  }

  function disableDialog(person, reload) {
    const label = person.email || person.sub;
    confirmDialog(`Disable ${label}?`, "They cannot sign in, and their personal keys are refused from the next request. Enabling them later brings back the keys that were active.", "Disable", async (body) => {
      const done = await api.post(personPath(person.sub, "disable"), body);
      ui.toast(`${label} is disabled.`);
      reload();
      return done;
    });
  }

  function removeDialog(person, reload) {
    const label = person.email || person.sub;
    confirmDialog(`Remove ${label}?`, "They leave the user pool and every team; their personal keys stay refused. This cannot be undone (invite them again instead).", "Remove", async (body) => {
      await api.del(personPath(person.sub), {}, { body });
      ui.toast(`${label} is removed.`);
      reload();
    });
  }

  async function inviteDialog(reload) {
    let teams = [];
    try {
      teams = (await api.listAll("admin/teams", {})).items;
    } catch (error) {
      if (error instanceof PW.auth.SessionExpired) return PW.app.sessionExpired();
    }
    ui.dialog("Invite a person", (close) => {
      const email = h("input", { name: "email", type: "email", required: true, autocomplete: "off", autofocus: true });
      const team = h("select", { name: "team" }, h("option", { value: "" }, "No team"), teams.map((t) => h("option", { value: t.id }, t.name)));
      const role = h("select", { name: "role" }, h("option", { value: "member" }, "member"), h("option", { value: "admin" }, "team admin"));
      const budget = h("input", { name: "monthly_budget_usd", type: "text", inputmode: "decimal", pattern: "\\d{1,10}(\\.\\d{1,6})?", placeholder: "the team's or the deployment's default", autocomplete: "off" });
      const admin = h("input", { type: "checkbox", name: "admin", id: PW.uid("admin") });
      return ui.form(
        [
          ui.field("E-mail address", email, "Cognito e-mails them a temporary password; they choose their own at first sign-in."),
          h("div", { class: "filters" }, ui.field("Team", team), ui.field("Role on the team", role)),
          ui.field("Monthly budget, USD (optional)", budget, "For all their keys together. Empty: the team's default, else the deployment's."),
          h("div", { class: "check" }, admin, h("label", { for: admin.id }, "Admin of the whole gateway")),
        ],
        async () => {
          const body = { email: email.value.trim() };
          if (team.value) {
            body.team = team.value;
            body.role = role.value;
          }
          if (budget.value.trim()) body.monthly_budget_usd = budget.value.trim();
          if (admin.checked) body.admin = true;
          const person = await api.post("admin/people", body);
          close("invited");
          invited(person);
          reload();
        },
        { submitLabel: "Invite", cancel: () => close() }
      );
    });
  }

  function invited(person) {
    ui.dialog(`${person.email} is invited`, (close) => {
      if (!person.temporary_password) {
        return h("div", {}, h("p", {}, "Cognito has e-mailed them a temporary password. They choose their own at first sign-in."), h("div", { class: "form-actions" }, h("button", { type: "button", class: "primary", onclick: () => close() }, "Done")));
      }
      const input = h("input", { type: "text", readonly: true, value: person.temporary_password, class: "secret", spellcheck: "false", autocomplete: "off" });
      return h(
        "div",
        { class: "secret-panel" },
        h("div", { class: "warning", role: "note" }, h("strong", {}, "Local stack: no mail is sent. "), "Give them this temporary password; they choose their own at first sign-in."),
        ui.field("Temporary password", input),
        h("div", { class: "form-actions" }, PW.copyButton(() => person.temporary_password, "Copy password"), h("button", { type: "button", class: "primary", onclick: () => close() }, "Done"))
      );
    });
  }

  PW.people = { people };
})();
