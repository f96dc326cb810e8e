// pennyworth console: the admin pages (owners and budgets, usage with CSV, audit log, daily
// report). They are shown to admins; the API refuses everyone else, and the page then shows
// the API's refusal (permissions live in the API, not in which buttons are visible).
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const { h, replace, ui, api, money, moneyEl, count, timeEl } = PW;

  const today = () => PW.isoDay(new Date());
  const yesterday = () => PW.isoDay(new Date(Date.now() - 86400000));

  // Run `worker` over `items`, `width` at a time, reporting each completion.
  async function pool(items, width, worker, onEach, signal) {
    const results = new Array(items.length);
    let next = 0;
    let done = 0;
    async function lane() {
      while (next < items.length) {
        if (signal && signal.aborted) throw new DOMException("stopped", "AbortError");
        const index = next++;
        results[index] = await worker(items[index]);
        done += 1;
        if (onEach) onEach(done);
      }
    }
    await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane));
    return results;
  }

  // --- Owners and budgets --------------------------------------------------------------------

  function budgetDialog(owner, current, onDone) {
    ui.dialog(`Budget of ${owner.label}`, (close) => {
      const amount = h("input", { name: "monthly_budget_usd", type: "text", inputmode: "decimal", value: current || "", pattern: "\\d{1,10}(\\.\\d{1,6})?", autocomplete: "off", autofocus: true });
      return ui.form(
        [ui.field("Monthly budget, USD", amount, "For all of this owner's keys together. Empty: no owner budget.")],
        async () => {
          const value = amount.value.trim();
          await api.put(`admin/owners/${encodeURIComponent(owner.sub)}/budget`, { monthly_budget_usd: value === "" ? null : value });
          close("saved");
          ui.toast(`Budget of ${owner.label} saved.`);
          onDone();
        },
        { submitLabel: "Save budget", cancel: () => close() }
      );
    });
  }

  function owners(root, signal) {
    const status = h("div", { class: "list-status" });
    const results = h("div", {});
    async function load() {
      const bar = ui.progress("Loading owners");
      const controller = new AbortController();
      signal.addEventListener("abort", () => controller.abort());
      bar.cancel.addEventListener("click", () => controller.abort());
      replace(status, bar.el);
      replace(results);
      try {
        const { items } = await api.listAll("admin/keys", {}, { signal: controller.signal, onProgress: (n, more) => bar.update(n, more, "keys") });
        const byOwner = new Map();
        for (const k of items) {
          if (k.team_owned) continue; // a team's own key: its budget is the team's (the Teams page)
          const entry = byOwner.get(k.owner.sub) || { sub: k.owner.sub, label: k.owner.email || k.owner.sub, keys: 0, active: 0 };
          entry.keys += 1;
          entry.active += k.status === "active" ? 1 : 0;
          byOwner.set(k.owner.sub, entry);
        }
        const list = [...byOwner.values()].sort((a, b) => a.label.localeCompare(b.label));
        const budgets = await pool(
          list,
          4,
          (o) => api.get(`admin/owners/${encodeURIComponent(o.sub)}/budget`, {}, { signal: controller.signal }).catch((error) => ({ error })),
          (n) => bar.update(n, n < list.length, `of ${list.length} owners' budgets`),
          controller.signal
        );
        bar.finish(`${list.length} owner${list.length === 1 ? "" : "s"}.`);
        list.forEach((o, i) => (o.budget = budgets[i]));
        replace(
          results,
          ui.table(
            [
              { label: "Owner", cell: (o) => o.label },
              { label: "Keys", cell: (o) => `${o.active} active of ${o.keys}` },
              { label: "Budget", cell: (o) => (o.budget.error ? o.budget.error.message : o.budget.monthly_budget_usd === null ? h("span", { class: "muted" }, "none") : moneyEl(o.budget.monthly_budget_usd)) },
              { label: "Spent this month", cell: (o) => (o.budget.error ? "—" : moneyEl(o.budget.spent_usd)) },
              { label: "Remaining", cell: (o) => (o.budget.error || o.budget.remaining_usd === null ? h("span", { class: "muted" }, "—") : moneyEl(o.budget.remaining_usd)) },
              {
                label: "Actions",
                class: "actions-cell",
                cell: (o) => h("button", { type: "button", class: "secondary small", "aria-label": `Set the budget of ${o.label}`, onclick: () => budgetDialog(o, o.budget.monthly_budget_usd, load) }, "Set budget"),
              },
            ],
            list,
            { caption: `${list.length} owner${list.length === 1 ? "" : "s"} (users with at least one key)`, emptyText: "No user has a key yet." }
          )
        );
      } catch (error) {
        if (error.name === "AbortError") return replace(status, h("p", { class: "muted" }, "Stopped. ", h("button", { type: "button", class: "secondary small", onclick: load }, "Load again")));
        if (error instanceof PW.auth.SessionExpired) return PW.app.sessionExpired();
        replace(status, ui.errorBox(error, { retry: load }));
      }
    }
    replace(root, ui.pageHeader("Owners and budgets", "Each user's monthly budget covers all of their keys; key budgets apply as well.", h("button", { type: "button", class: "secondary", onclick: load }, "Reload")), status, results);
    load();
  }

  // --- Usage with CSV ------------------------------------------------------------------------

  const GROUP_LABELS = { key: "Key", owner: "Owner", team: "Team", model: "Model", day: "Day", price: "Price version" };

  // A price version's row: the model, the version, and the rates it billed at (a bill explained).
  function priceLabel(r) {
    const p = r.prices;
    return `${r.model} v${r.price_version}${p ? ` ($${p.input} in / $${p.output} out per M)` : ""}`;
  }

  function usage(root, signal) {
    const month = PW.monthRange(today().slice(0, 7));
    const from = h("input", { type: "date", name: "from", value: month.from, required: true });
    const to = h("input", { type: "date", name: "to", value: month.to, required: true });
    const groupBy = h("select", { name: "group_by" }, Object.entries(GROUP_LABELS).map(([v, l]) => h("option", { value: v }, l)));
    const owner = h("input", { type: "text", name: "owner", placeholder: "email or sub (optional)", autocomplete: "off" });
    const results = h("div", {});
    let last = null;
    const csv = h("button", { type: "button", class: "secondary", disabled: true }, "Download CSV");
    const columnsFor = (group) => [
      { label: GROUP_LABELS[group], value: (r) => (group === "price" ? priceLabel(r) : r.group) },
      ...(group === "key" ? [{ label: "Prefix", value: (r) => r.prefix || "" }, { label: "Name", value: (r) => r.name || "" }, { label: "Owner email", value: (r) => r.owner_email || "" }] : []),
      ...(group === "team" ? [{ label: "Name", value: (r) => r.name || "" }] : []),
      { label: "Requests", value: (r) => r.requests },
      { label: "Input tokens", value: (r) => r.input_tokens },
      { label: "Output tokens", value: (r) => r.output_tokens },
      { label: "Cache read tokens", value: (r) => r.cache_read_tokens },
      { label: "Cache write tokens", value: (r) => r.cache_write_tokens },
      { label: "Cost (USD)", value: (r) => r.cost_usd },
    ];
    // The table shows the costliest USAGE_SHOWN groups (a month of a thousand keys reads a hundred);
    // "Show all" and the CSV ask for every group.
    const USAGE_SHOWN = 100;
    let asked = null;
    const everything = async () => (last.has_more ? api.get("admin/usage", asked, { signal }) : last);
    csv.addEventListener("click", async () => {
      if (!last) return;
      const data = await everything();
      const text = PW.toCsv(data.data, columnsFor(data.group_by));
      PW.downloadFile(`pennyworth-usage-${data.group_by}-${data.from}-${data.to}.csv`, "text/csv", text);
      PW.announce("CSV downloaded");
    });
    const filters = ui.form(
      [h("div", { class: "filters" }, ui.field("From", from), ui.field("To", to), ui.field("Group by", groupBy), ui.field("Owner", owner))],
      async () => {
        csv.disabled = true;
        replace(results, ui.loading("Loading usage…"));
        let data;
        asked = { from: from.value, to: to.value, group_by: groupBy.value, owner: owner.value.trim() };
        try {
          data = await api.get("admin/usage", { ...asked, limit: USAGE_SHOWN }, { signal });
        } finally {
          replace(results); // the form shows the API's error, if any
        }
        show(data);
      },
      { submitLabel: "Show usage" }
    );
    function show(data) {
      last = data;
      const rows = data.data.slice().sort((a, b) => (data.group_by === "day" ? a.group.localeCompare(b.group) : Number(b.cost_usd) - Number(a.cost_usd)));
      replace(
        results,
        h("p", { class: "totals" }, `Total ${money(data.total.cost_usd)} over ${count(data.total.requests)} requests, ${data.from} to ${data.to} (UTC).`),
        ui.table(
          [
            { label: GROUP_LABELS[data.group_by], cell: (r) => (data.group_by === "key" && r.prefix ? h("span", {}, r.name || "(no name)", " ", h("code", {}, r.prefix)) : data.group_by === "price" ? priceLabel(r) : data.group_by === "team" ? r.name || r.group : r.group) },
            data.group_by === "key" ? { label: "Owner", cell: (r) => r.owner_email || "—" } : null,
            { label: "Requests", cell: (r) => count(r.requests), class: "num" },
            { label: "Input tokens", cell: (r) => count(r.input_tokens), class: "num" },
            { label: "Output tokens", cell: (r) => count(r.output_tokens), class: "num" },
            { label: "Cost", cell: (r) => moneyEl(r.cost_usd), class: "num" },
          ].filter(Boolean),
          rows,
          { caption: `Usage by ${data.group_by}`, emptyText: "No usage in this range." }
        ),
        data.has_more
          ? h("p", { class: "muted" }, `The ${count(rows.length)} costliest of ${count(data.groups)}. `,
              h("button", { type: "button", class: "secondary small", onclick: (e) => {
                e.target.disabled = true;
                everything().then(show, (error) => replace(results, ui.errorBox(error)));
              } }, "Show all"))
          : null
      );
      csv.disabled = !rows.length;
    }
    filters.classList.add("query-form");
    replace(root, ui.pageHeader("Usage", "Requests, tokens and exact cost, grouped as you choose.", csv), filters, results);
    filters.requestSubmit();
  }

  // --- Audit log -----------------------------------------------------------------------------

  // What an event's fields are called here, and what an empty value means for each.
  const AUDIT_LABELS = {
    owner_email: "Owner",
    owner_sub: "Owner (sub)",
    name: "Name",
    status: "Status",
    allowed_models: "Models",
    monthly_budget_usd: "Budget",
    rpm_limit: "Requests/min",
    tpm_limit: "Tokens/min",
    expires_at: "Expires",
    guardrail: "Guardrail",
    model_fallback: "Fallbacks",
    revoked_at: "Revoked",
    metadata: "Metadata",
    import_id: "Import id",
    reason: "Reason",
    grace_seconds: "Old secret kept for",
    previous_secret_valid_until: "Old secret works until",
  };
  const AUDIT_EMPTY = {
    allowed_models: "every model",
    monthly_budget_usd: "no budget",
    rpm_limit: "no limit",
    tpm_limit: "no limit",
    expires_at: "never",
    guardrail: "none",
    model_fallback: "any",
    previous_secret_valid_until: "no longer",
    grace_seconds: "no time",
  };

  function seconds(value) {
    const n = Number(value);
    if (n >= 86400 && n % 86400 === 0) return `${n / 86400} d`;
    if (n >= 3600 && n % 3600 === 0) return `${n / 3600} h`;
    if (n >= 60 && n % 60 === 0) return `${n / 60} min`;
    return `${n} s`;
  }

  // One value as people read it: money, times, lists, durations; empty as what it means.
  function auditValue(name, value) {
    if (value === null || value === undefined || value === "" || (typeof value === "object" && !Object.keys(value).length)) {
      return h("span", { class: "muted" }, AUDIT_EMPTY[name] || "none");
    }
    if (name === "grace_seconds") return value ? seconds(value) : h("span", { class: "muted" }, AUDIT_EMPTY[name]);
    if (name === "monthly_budget_usd") return moneyEl(value);
    if (/(_at|_until)$/.test(name)) return [timeEl(value), " UTC"];
    if (Array.isArray(value)) return value.join(", ");
    if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ");
    return String(value);
  }

  function auditLine(name, ...value) {
    return h("div", { class: "audit-line" }, h("span", { class: "muted" }, `${AUDIT_LABELS[name] || name}: `), ...value);
  }

  // A created key lists what it was created with; any other event, what changed from what to what.
  function changesText(event) {
    const changes = Object.entries(event.changes || {}).filter(([name]) => !(name === "owner_sub" && (event.changes.owner_email || {}).to));
    if (event.action === "created" || event.action === "imported") {
      return changes.filter(([, c]) => c.to !== null && c.to !== undefined).map(([name, c]) => auditLine(name, auditValue(name, c.to)));
    }
    return changes.map(([name, c]) => auditLine(name, auditValue(name, c.from), " → ", auditValue(name, c.to)));
  }

  function detailsText(details) {
    return Object.entries(details || {}).map(([name, value]) => auditLine(name, auditValue(name, value)));
  }

  function audit(root, signal) {
    const day = h("input", { type: "date", name: "day", value: today(), max: today(), required: true });
    const results = h("div", {});
    const more = h("div", {});
    let rows = [];
    const columns = [
      { label: "Time (UTC)", cell: (e) => timeEl(e.at) },
      { label: "Action", cell: (e) => h("span", { class: `badge action-${e.action}` }, e.action) },
      { label: "Key", cell: (e) => h("code", {}, `pw-${e.key_id}`) },
      { label: "By", cell: (e) => e.actor.email || e.actor.sub || e.actor.kind },
      // One column for what changed and the event's details (a reason, a grace period), as the CLI shows them.
      { label: "What changed", cell: (e) => [...changesText(e), ...detailsText(e.details)], class: "audit-cell" },
    ];
    async function page(cursor) {
      const data = await api.get("admin/audit", { day: day.value, limit: 100, cursor }, { signal });
      rows = cursor ? rows.concat(data.data) : data.data;
      replace(results, ui.table(columns, rows, { caption: `${rows.length} events on ${day.value} (UTC)`, emptyText: "No events on this day." }));
      replace(
        more,
        data.has_more
          ? h("button", { type: "button", class: "secondary", onclick: (e) => loadMore(e.target, data.next_cursor) }, "Load more events")
          : null
      );
    }
    async function loadMore(button, cursor) {
      button.disabled = true;
      button.textContent = "Loading…";
      try {
        await page(cursor);
      } catch (error) {
        replace(more, ui.errorBox(error));
      }
    }
    const f = ui.form([h("div", { class: "filters" }, ui.field("Day (UTC)", day))], async () => {
      replace(results, ui.loading("Loading the audit log…"));
      replace(more);
      try {
        await page(null);
      } catch (error) {
        replace(results); // the form shows the API's error
        throw error;
      }
    }, { submitLabel: "Show events" });
    f.classList.add("query-form");
    replace(root, ui.pageHeader("Audit log", "Every key change and every refused use of a revoked or expired key, oldest first."), f, results, more);
    f.requestSubmit();
  }

  // --- The latest daily report ---------------------------------------------------------------

  function renderReport(stored) {
    const r = stored.report;
    const rows = (list, label) =>
      ui.table(
        [
          { label, cell: (x) => (label === "Key" ? h("code", {}, `pw-${x.id}`) : x.email || x.id) },
          { label: "Requests", cell: (x) => count(x.requests), class: "num" },
          { label: "Cost", cell: (x) => moneyEl(x.cost_usd), class: "num" },
        ],
        (list || []).slice(0, 10),
        { emptyText: "Nothing." }
      );
    return h(
      "div",
      {},
      h(
        "div",
        { class: "stats" },
        h("div", { class: "stat" }, h("p", { class: "stat-label" }, `Cost on ${r.day}`), h("p", { class: "stat-value" }, money(r.total.cost_usd))),
        h("div", { class: "stat" }, h("p", { class: "stat-label" }, "Requests"), h("p", { class: "stat-value" }, count(r.total.requests))),
        h("div", { class: "stat" }, h("p", { class: "stat-label" }, "Trailing 7-day mean"), h("p", { class: "stat-value" }, money(r.trailing_7_day_mean_usd))),
        h("div", { class: "stat" }, h("p", { class: "stat-label" }, "Delivery"), h("p", { class: "stat-value small" }, stored.status))
      ),
      r.alerts && r.alerts.length
        ? ui.card("Alerts", h("ul", { class: "alerts" }, r.alerts.map((a) => h("li", {}, h("strong", {}, a.kind.toUpperCase()), ": ", a.message))))
        : null,
      h("div", { class: "three-up" }, ui.card("By owner", rows(r.by_owner, "Owner")), ui.card("By key", rows(r.by_key, "Key")), ui.card("By model", rows(r.by_model, "Model"))),
      h("details", {}, h("summary", {}, "The notification as sent"), h("pre", { class: "code" }, stored.notification))
    );
  }

  function report(root, signal) {
    const day = h("input", { type: "date", name: "day", max: today() });
    const body = h("div", {});
    // The report for day D runs on D+1 at 06:00 UTC; look back a week for the newest one.
    async function latest() {
      for (let back = 1; back <= 7; back += 1) {
        const d = PW.isoDay(new Date(Date.now() - back * 86400000));
        try {
          return await api.get(`admin/reports/daily/${d}`, {}, { signal });
        } catch (error) {
          if (!(error instanceof PW.ApiError) || error.code !== "report_not_found") throw error;
        }
      }
      return null;
    }
    const show = (load) =>
      ui.withLoading(body, "Looking for the report…", load, (stored) => {
        if (stored) {
          day.value = stored.day;
          return renderReport(stored);
        }
        return h(
          "div",
          { class: "card" },
          h("p", {}, "No daily report in the last 7 days. The report runs every day at 06:00 UTC for the day before."),
          h(
            "button",
            {
              type: "button",
              class: "primary",
              onclick: () => show(() => api.post("admin/reports/daily", { day: yesterday() }, { signal }).then(() => api.get(`admin/reports/daily/${yesterday()}`, {}, { signal }))),
            },
            `Run the report for ${yesterday()} now`
          )
        );
      });
    day.addEventListener("change", () => day.value && show(() => api.get(`admin/reports/daily/${day.value}`, {}, { signal })));
    replace(root, ui.pageHeader("Daily report", "The latest daily cost report, as mailed to subscribers.", h("div", { class: "inline-field" }, ui.field("Another day", day))), body);
    show(latest);
  }

  PW.admin = { owners, usage, audit, report };
})();
