// pennyworth console: teams. Everyone sees the teams they are on (admins: every team) with
// this month's spend against the team's budget; a team's admins manage its members, its own
// keys and the budget new members start with; admins create, rename, budget and delete teams.
// The API decides who may do what: buttons are shown by role, and a refusal shows as the
// API's error.
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const { h, replace, ui, api, money, moneyEl, count, timeEl } = PW;

  const teamPath = (team, ...rest) => ["admin/teams", team, ...rest].map((part, i) => (i ? encodeURIComponent(part) : part)).join("/");
  const AMOUNT = "\\d{1,10}(\\.\\d{1,6})?";

  function amountInput(name, value, placeholder) {
    return h("input", { name, type: "text", inputmode: "decimal", pattern: AMOUNT, value: value || "", placeholder: placeholder || "", autocomplete: "off" });
  }

  function budgetText(value) {
    return value === null || value === undefined ? h("span", { class: "muted" }, "none") : moneyEl(value);
  }

  function roleBadge(role) {
    return role ? h("span", { class: `badge role-${role}` }, role === "admin" ? "team admin" : "member") : h("span", { class: "muted" }, "not on it");
  }

  // --- The list --------------------------------------------------------------------------------

  function teams(root, signal) {
    const ref = new URLSearchParams(location.hash.split("?")[1] || "").get("team");
    if (ref) return teamPage(root, signal, ref);
    const body = h("div", {});
    const isAdmin = PW.auth.user().isAdmin;
    const render = () =>
      ui.withLoading(
        body,
        "Loading teams…",
        () => api.listAll("admin/teams", {}, { signal }),
        ({ items }) =>
          ui.table(
            [
              { label: "Team", cell: (t) => h("a", { href: `#/teams?team=${encodeURIComponent(t.id)}` }, t.name) },
              { label: "Your role", cell: (t) => roleBadge(t.your_role) },
              { label: "Budget / month", cell: (t) => budgetText(t.monthly_budget_usd), class: "num" },
              { label: `Spent in ${items.length ? items[0].period : "this month"}`, cell: (t) => moneyEl(t.spent_usd), class: "num" },
              { label: "Remaining", cell: (t) => (t.remaining_usd === null ? h("span", { class: "muted" }, "—") : moneyEl(t.remaining_usd)), class: "num" },
              { label: "Requests", cell: (t) => count(t.requests), class: "num" },
            ],
            items,
            {
              caption: `${items.length} team${items.length === 1 ? "" : "s"}`,
              emptyText: isAdmin ? "No teams yet. Create one to share a budget." : "You are not on any team.",
            }
          )
      );
    replace(
      root,
      ui.pageHeader(
        "Teams",
        isAdmin ? "Every team: a shared monthly budget, its members and team admins, keys the team owns." : "The teams you are on, and what they spent this month.",
        isAdmin ? h("button", { type: "button", class: "primary", onclick: () => createTeamDialog((team) => (location.hash = `#/teams?team=${encodeURIComponent(team.id)}`)) }, "New team") : null
      ),
      body
    );
    render();
  }

  function createTeamDialog(onDone) {
    ui.dialog("New team", (close) => {
      const name = h("input", { name: "name", type: "text", required: true, maxlength: "100", autocomplete: "off", autofocus: true });
      const budget = amountInput("monthly_budget_usd", "", "500.00");
      const memberBudget = amountInput("default_member_budget_usd", "", "25.00");
      return ui.form(
        [
          ui.field("Name", name, "Unique; people and the CLI may name the team by it."),
          ui.field("Monthly budget, USD (optional)", budget, "Every key charged to the team counts against it. Empty: no team budget."),
          ui.field("Budget of each person invited into the team, USD (optional)", memberBudget, "Empty: the deployment's default."),
        ],
        async () => {
          const body = { name: name.value.trim() };
          if (budget.value.trim()) body.monthly_budget_usd = budget.value.trim();
          if (memberBudget.value.trim()) body.default_member_budget_usd = memberBudget.value.trim();
          const team = await api.post("admin/teams", body);
          close("created");
          ui.toast(`Team ${team.name} created.`);
          onDone(team);
        },
        { submitLabel: "Create team", cancel: () => close() }
      );
    });
  }

  // --- One team --------------------------------------------------------------------------------

  function teamPage(root, signal, ref) {
    const body = h("div", {});
    const load = () =>
      ui.withLoading(
        body,
        "Loading the team…",
        async () => {
          const team = await api.get(teamPath(ref), {}, { signal });
          const manages = Array.isArray(team.members);
          const [keys, events] = manages
            ? await Promise.all([
                api.listAll("admin/keys", { team: team.id }, { signal }).then((r) => r.items),
                api.get(teamPath(team.id, "audit"), { limit: 100 }, { signal }).then((r) => r.data),
              ])
            : [null, null];
          return { team, keys, events };
        },
        ({ team, keys, events }) => renderTeam(team, keys, events, load)
      );
    replace(root, ui.pageHeader("Team", null, h("a", { href: "#/teams", class: "button secondary" }, "All teams")), body);
    load();
  }

  function renderTeam(team, keys, events, reload) {
    const me = PW.auth.user();
    const manages = Array.isArray(team.members);
    document.getElementById("page-title").textContent = `Team ${team.name}`;
    document.title = `Team ${team.name} · pennyworth`;
    return h(
      "div",
      {},
      h(
        "div",
        { class: "stats" },
        stat(`Spent in ${team.period}`, money(team.spent_usd)),
        stat("Budget / month", team.monthly_budget_usd === null ? "none" : money(team.monthly_budget_usd)),
        stat("Remaining", team.remaining_usd === null ? "—" : money(team.remaining_usd)),
        stat("Your role", team.your_role === "admin" ? "team admin" : team.your_role || (me.isAdmin ? "admin (not on the team)" : "—")),
        stat("Guardrail", PW.guardrail.text(team.guardrail) || "none")
      ),
      h(
        "div",
        { class: "page-actions" },
        h("button", { type: "button", class: "primary", onclick: () => PW.keys.createDialog({ team, onDone: reload }) }, "Create a key charged to this team"),
        manages ? h("button", { type: "button", class: "secondary", onclick: () => PW.keys.createDialog({ team, teamOwned: true, onDone: reload }) }, "Create a team key") : null
      ),
      manages ? membersCard(team, me, reload) : null,
      manages ? keysCard(team, keys, reload) : null,
      manages ? settingsCard(team, me, reload) : null,
      manages ? auditCard(events) : null
    );
  }

  function stat(label, value) {
    return h("div", { class: "stat" }, h("p", { class: "stat-label" }, label), h("p", { class: "stat-value" }, value));
  }

  function membersCard(team, me, reload) {
    const person = h("input", { name: "person", type: "email", required: true, autocomplete: "off", placeholder: "name@example.com" });
    const role = h("select", { name: "role" }, h("option", { value: "member" }, "member"), h("option", { value: "admin" }, "team admin"));
    const add = ui.form(
      [h("div", { class: "filters" }, ui.field("Add a person (e-mail)", person), ui.field("As", role))],
      async () => {
        const added = await api.post(teamPath(team.id, "members"), { person: person.value.trim(), role: role.value });
        ui.toast(`${added.email || added.sub} added to ${team.name}.`);
        reload();
      },
      { submitLabel: "Add to team" }
    );
    add.classList.add("query-form");
    const actions = (m) => {
      if (m.sub === me.sub && !me.isAdmin) return h("span", { class: "muted" }, "you");
      const label = m.email || m.sub;
      const other = m.role === "admin" ? "member" : "admin";
      return h(
        "div",
        { class: "row-actions" },
        h(
          "button",
          {
            type: "button",
            class: "secondary small",
            "aria-label": `Make ${label} ${other === "admin" ? "a team admin" : "a member"}`,
            onclick: async () => {
              try {
                await api.patch(teamPath(team.id, "members", m.sub), { role: other });
                ui.toast(`${label} is now ${other === "admin" ? "a team admin" : "a member"}.`);
                reload();
              } catch (error) {
                ui.toast(error.message);
              }
            },
          },
          other === "admin" ? "Make team admin" : "Make member"
        ),
        h("button", { type: "button", class: "danger-outline small", "aria-label": `Remove ${label} from the team`, onclick: () => removeMemberDialog(team, m, reload) }, "Remove")
      );
    };
    return ui.card(
      "Members",
      ui.table(
        [
          { label: "Person", cell: (m) => m.email || m.sub },
          { label: "Role", cell: (m) => roleBadge(m.role) },
          { label: "Status", cell: (m) => ui.statusBadge(m.status) },
          { label: "Added (UTC)", cell: (m) => timeEl(m.added_at) },
          { label: "Actions", cell: actions, class: "actions-cell" },
        ],
        team.members,
        { caption: `${team.members.length} member${team.members.length === 1 ? "" : "s"}`, emptyText: "Nobody is on this team yet." }
      ),
      add
    );
  }

  function removeMemberDialog(team, member, reload) {
    const label = member.email || member.sub;
    ui.dialog(`Take ${label} off ${team.name}?`, (close) => {
      const cancel = h("button", { type: "button", class: "secondary", onclick: () => close(), autofocus: true }, "Cancel");
      const f = ui.form(
        [h("p", {}, "Their personal keys charged to this team keep working, charged to them alone.")],
        async () => {
          await api.del(teamPath(team.id, "members", member.sub));
          close("removed");
          ui.toast(`${label} is no longer on ${team.name}.`);
          reload();
        },
        { submitLabel: "Remove from team", danger: true }
      );
      f.querySelector(".form-actions").prepend(cancel);
      return f;
    });
  }

  function keysCard(team, keys, reload) {
    return ui.card(
      "Keys charged to the team",
      ui.table(
        [
          { label: "Key", cell: (k) => [h("span", { class: "key-name" }, k.name || h("span", { class: "muted" }, "(no name)")), h("code", { class: "key-prefix" }, k.prefix)] },
          { label: "Owner", cell: (k) => (k.team_owned ? h("span", { class: "badge role" }, "the team") : k.owner.email || k.owner.sub) },
          { label: "Status", cell: (k) => ui.statusBadge(k.status) },
          { label: "Budget", cell: (k) => budgetText(k.monthly_budget_usd), class: "num" },
          { label: "Last used (UTC)", cell: (k) => timeEl(k.last_used_at) },
          {
            label: "Actions",
            class: "actions-cell",
            cell: (k) =>
              k.status === "revoked"
                ? h("span", { class: "muted" }, "—")
                : h(
                    "div",
                    { class: "row-actions" },
                    // Its admins change any key charged to the team (budgets up to the team's own).
                    h("button", { type: "button", class: "secondary small", "aria-label": `Edit ${k.name || k.prefix}`, onclick: () => PW.keyEdit.open(k, { onDone: reload }) }, "Edit"),
                    // A member's secret is theirs: only the team's own keys are rotated here.
                    k.team_owned ? h("button", { type: "button", class: "secondary small", "aria-label": `Rotate ${k.name || k.prefix}`, onclick: () => PW.keys.rotateDialog(k, reload) }, "Rotate") : null,
                    h("button", { type: "button", class: "danger-outline small", "aria-label": `Revoke ${k.name || k.prefix}`, onclick: () => PW.keys.revokeDialog(k, reload) }, "Revoke")
                  ),
          },
        ],
        keys,
        { caption: `${keys.length} key${keys.length === 1 ? "" : "s"}`, emptyText: "No key is charged to this team yet." }
      )
    );
  }

  function settingsCard(team, me, reload) {
    const forms = [];
    const memberBudget = amountInput("default_member_budget_usd", team.default_member_budget_usd, "the deployment's default");
    const defaults = ui.form(
      [ui.field("Budget of each person invited into the team, USD", memberBudget, `Up to the team's own budget. Empty: the deployment's default.`)],
      async () => {
        const value = memberBudget.value.trim();
        await api.patch(teamPath(team.id), { default_member_budget_usd: value === "" ? null : value });
        ui.toast("Saved.");
        reload();
      },
      { submitLabel: "Save" }
    );
    forms.push(defaults);
    if (me.isAdmin) {
      const name = h("input", { name: "name", type: "text", value: team.name, required: true, maxlength: "100", autocomplete: "off" });
      const budget = amountInput("monthly_budget_usd", team.monthly_budget_usd, "no budget");
      const notice = h("div", {});
      forms.push(
        ui.form(
          [ui.field("Name", name), ui.field("Monthly budget, USD", budget, "Every key charged to the team counts against it. Empty: no team budget.")],
          async () => {
            const value = budget.value.trim();
            const changed = await api.patch(teamPath(team.id), { name: name.value.trim(), monthly_budget_usd: value === "" ? null : value });
            if (changed.notice) replace(notice, h("p", { class: "warning", role: "alert" }, changed.notice));
            else {
              ui.toast("Saved.");
              reload();
            }
          },
          { submitLabel: "Save name and budget" }
        ),
        notice,
        guardrailForm(team, reload),
        h("button", { type: "button", class: "danger-outline", onclick: () => deleteTeamDialog(team) }, "Delete team…")
      );
    }
    return ui.card("Settings", forms);
  }

  // Admins only: a team's guardrail is a compliance control its admins may not loosen or remove.
  function guardrailForm(team, reload) {
    const input = h("input", { name: "guardrail", type: "text", value: PW.guardrail.field(team.guardrail), maxlength: "200", autocomplete: "off", placeholder: "none", spellcheck: "false" });
    const notice = h("div", {});
    return [
      ui.form(
        [ui.field("Guardrail (id:version)", input, "Every call charged to the team carries this Bedrock guardrail, unless its key has one of its own; it wins over the model's. Empty: none.")],
        async () => {
          const changed = await api.patch(teamPath(team.id), { guardrail: PW.guardrail.body(input.value) });
          if (changed.notice) replace(notice, h("p", { class: "warning", role: "alert" }, changed.notice));
          else {
            ui.toast(changed.guardrail ? `Calls charged to ${changed.name} now carry ${PW.guardrail.text(changed.guardrail)}.` : "Guardrail cleared.");
            reload();
          }
        },
        { submitLabel: "Save guardrail" }
      ),
      notice,
    ];
  }

  function deleteTeamDialog(team) {
    ui.dialog(`Delete team ${team.name}?`, (close) => {
      const force = h("input", { type: "checkbox", name: "force", id: PW.uid("force") });
      const cancel = h("button", { type: "button", class: "secondary", onclick: () => close(), autofocus: true }, "Cancel");
      const f = ui.form(
        [
          h("p", {}, "The team, its members and its budget go; what it spent stays in the ledger."),
          h("div", { class: "check" }, force, h("label", { for: force.id }, "Revoke every key charged to the team (the deletion is refused while any is left)")),
        ],
        async () => {
          const done = await api.del(teamPath(team.id), force.checked ? { force: "true" } : {});
          close("deleted");
          ui.toast(`Team ${done.name} deleted${done.revoked_keys.length ? `; ${done.revoked_keys.length} key(s) revoked` : ""}.`);
          location.hash = "#/teams";
        },
        { submitLabel: "Delete team", danger: true }
      );
      f.querySelector(".form-actions").prepend(cancel);
      return f;
    });
  }

  function auditCard(events) {
    const what = (e) =>
      [
        ...Object.entries(e.changes || {}).map(([name, c]) => `${name}: ${c.from === null ? "none" : c.from} → ${c.to === null ? "none" : c.to}`),
        ...Object.entries(e.details || {})
          .filter(([, v]) => v !== null && v !== undefined && !(Array.isArray(v) && !v.length))
          .map(([name, v]) => `${name}: ${Array.isArray(v) ? v.join(", ") : v}`),
      ].join("; ");
    return ui.card(
      "Audit log",
      ui.table(
        [
          { label: "Time (UTC)", cell: (e) => timeEl(e.at) },
          { label: "Action", cell: (e) => h("span", { class: `badge action-${e.action}` }, e.action) },
          { label: "By", cell: (e) => e.actor.email || e.actor.sub || e.actor.kind },
          { label: "What", cell: what, class: "audit-cell" },
        ],
        events,
        { caption: "The team's events, oldest first", emptyText: "No events." }
      )
    );
  }

  PW.teams = { teams };
})();
