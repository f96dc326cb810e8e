// pennyworth console: "My spend": this month's cost per day, per model and per key, and the
// spend against the owner's budget.
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const { h, replace, ui, api, charts, money, count } = PW;

  const requests = (n) => `${count(n)} request${Number(n) === 1 ? "" : "s"}`;

  function currentMonth() {
    return PW.isoDay(new Date()).slice(0, 7);
  }

  function stat(label, value, note) {
    return h("div", { class: "stat" }, h("p", { class: "stat-label" }, label), h("p", { class: "stat-value" }, value), note ? h("p", { class: "stat-note muted" }, note) : null);
  }

  // One call: the month by day, model and key, and the budget (GET /admin/spend).
  async function loadSpend(month, signal) {
    const spend = await api.get("admin/spend", { month }, { signal });
    const report = (data) => ({ data, total: spend.total });
    return { month, from: spend.from, to: spend.to, byDay: report(spend.by_day), byModel: report(spend.by_model), byKey: report(spend.by_key), budget: spend.budget };
  }

  function renderSpend({ month, from, to, byDay, byModel, byKey, budget }) {
    const total = byDay.total;
    const perDay = Object.fromEntries(byDay.data.map((row) => [row.group, row]));
    const days = PW.daysBetween(from, to).map((day) => ({
      label: day,
      short: String(Number(day.slice(8))),
      value: Number(perDay[day] ? perDay[day].cost_usd : 0),
      exact: perDay[day] ? perDay[day].cost_usd : "0",
    }));
    const models = byModel.data
      .slice()
      .sort((a, b) => Number(b.cost_usd) - Number(a.cost_usd))
      .map((row) => ({ label: row.group, value: Number(row.cost_usd), exact: row.cost_usd, note: requests(row.requests) }));
    const keys = byKey.data
      .slice()
      .sort((a, b) => Number(b.cost_usd) - Number(a.cost_usd))
      .map((row) => ({ label: row.name ? `${row.name} (${row.prefix})` : row.prefix || row.group, value: Number(row.cost_usd), exact: row.cost_usd, note: requests(row.requests) }));
    const busiest = days.reduce((best, d) => (d.value > best.value ? d : best), { value: 0, label: null });

    const stats = h(
      "div",
      { class: "stats" },
      stat(`Spent in ${month}`, money(total.cost_usd), requests(total.requests)),
      budget ? stat("Monthly budget", budget.monthly_budget_usd === null ? "none" : money(budget.monthly_budget_usd), "set by an admin, for all your keys") : null,
      budget ? stat("Remaining", budget.remaining_usd === null ? "no limit" : money(budget.remaining_usd), "this month") : null,
      stat("Tokens", `${count(total.input_tokens)} in`, `${count(total.output_tokens)} out`)
    );
    return h(
      "div",
      {},
      stats,
      budget ? ui.card("Spend against your budget", charts.budgetMeter({ spent: budget.spent_usd, budget: budget.monthly_budget_usd, label: "owner" })) : null,
      ui.card(
        "Cost per day",
        charts.columnChart(days, {
          title: `Cost per day, ${month}`,
          description: busiest.label ? `Highest on ${busiest.label}: ${money(String(busiest.value))}. Total ${money(total.cost_usd)}.` : "No spend this month.",
        }),
        h(
          "details",
          {},
          h("summary", {}, "Cost per day as a table"),
          ui.table(
            [
              { label: "Day", cell: (d) => d.label },
              { label: "Cost", cell: (d) => PW.moneyEl(d.exact) },
              { label: "Requests", cell: (d) => count(perDay[d.label] ? perDay[d.label].requests : 0) },
            ],
            days
          )
        )
      ),
      h(
        "div",
        { class: "two-up" },
        ui.card("Cost per model", models.length ? charts.barList(models, { title: "Cost per model" }) : ui.empty("No model was used this month.")),
        ui.card("Cost per key", keys.length ? charts.barList(keys, { title: "Cost per key" }) : ui.empty("No key was used this month."))
      )
    );
  }

  function mySpend(root, signal) {
    const monthInput = h("input", { type: "month", name: "month", value: currentMonth(), max: currentMonth() });
    const body = h("div", {});
    const load = () => {
      const month = /^\d{4}-\d{2}$/.test(monthInput.value) ? monthInput.value : currentMonth();
      return ui.withLoading(body, "Loading your spend…", () => loadSpend(month, signal), renderSpend);
    };
    monthInput.addEventListener("change", load);
    replace(
      root,
      ui.pageHeader("My spend", "What your keys cost, from the gateway's exact ledger (UTC days).", h("div", { class: "inline-field" }, ui.field("Month", monthInput))),
      body
    );
    load();
  }

  PW.spend = { mySpend };
})();
