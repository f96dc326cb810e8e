// pennyworth console: the request log. Every billed request, newest first, a page at a time from
// the server (GET /admin/requests): filters run there, so the page never loads the whole ledger.
// Members see their own requests; a team's admins their team's; admins everyone's. Nothing of a
// prompt or an answer is stored.
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const { h, replace, ui, api, moneyEl, count, timeEl } = PW;

  const PAGE_SIZE = 50;
  // A CSV export follows the log's pages up to this many rows (the CLI's --all has no cap).
  const CSV_MAX_ROWS = 20000;
  // The gateway's columns, in the CLI's CSV order (cli/requests.py).
  const CSV_COLUMNS = [
    "time", "request_id", "key_prefix", "key_name", "owner_email", "owner_sub", "team", "model", "protocol",
    "operation", "status", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "cost_usd", "latency_ms", "capped",
  ].map((name) => ({ label: name, value: (row) => row[name] }));

  const daysAgo = (n) => PW.isoDay(new Date(Date.now() - n * 86400000));

  // A team's own key has the team as its owner (owner_sub "team:<id>"), no person.
  const isTeamKey = (r) => typeof r.owner_sub === "string" && r.owner_sub.startsWith("team:");

  function columns(admin) {
    return [
      { label: "Time (UTC)", cell: (r) => timeEl(r.time) },
      { label: "Key", cell: (r) => [h("span", { class: "key-name" }, r.key_name || h("span", { class: "muted" }, "(no name)")), h("code", { class: "key-prefix" }, r.key_prefix)] },
      admin ? { label: "Person", cell: (r) => (isTeamKey(r) ? h("span", { class: "muted" }, "(the team's own key)") : r.owner_email || r.owner_sub || "—") } : null,
      { label: "Team", cell: (r) => r.team || h("span", { class: "muted" }, "—") },
      { label: "Model", cell: (r) => r.model },
      { label: "Protocol", cell: (r) => r.protocol || h("span", { class: "muted" }, "—") },
      { label: "Tokens in / out", cell: (r) => `${count(r.input_tokens + r.cache_read_tokens + r.cache_write_tokens)} / ${count(r.output_tokens)}`, class: "num" },
      { label: "Cost", cell: (r) => moneyEl(r.cost_usd), class: "num" },
      { label: "Latency", cell: (r) => `${count(r.latency_ms)} ms`, class: "num" },
      { label: "Status", cell: (r) => h("span", { class: `badge status-${r.status === "ok" ? "active" : "expired"}`, title: r.status === "ok" ? "Complete" : "Cut short; billed as far as it got" }, r.status) },
      { label: "Request ID", cell: (r) => h("code", { class: "request-id" }, r.request_id) },
    ].filter(Boolean);
  }

  function requestsPage(root, signal) {
    const admin = PW.auth.user().isAdmin;
    const from = h("input", { type: "date", name: "from", value: daysAgo(30), max: daysAgo(0), required: true });
    const to = h("input", { type: "date", name: "to", value: daysAgo(0), max: daysAgo(0), required: true });
    const key = h("input", { type: "text", name: "key", placeholder: "pw-… (optional)", autocomplete: "off", spellcheck: "false" });
    const owner = admin ? h("input", { type: "text", name: "owner", placeholder: "email or sub (optional)", autocomplete: "off", spellcheck: "false" }) : null;
    // Admins pick any team; a team's admins theirs (the field appears once the teams are known).
    const team = h("select", { name: "team" }, h("option", { value: "" }, admin ? "Every team" : "My own requests"));
    const teamField = ui.field("Team", team);
    teamField.hidden = true;
    const model = h("select", { name: "model" }, h("option", { value: "" }, "Any model"));
    const status = h("select", { name: "status" }, h("option", { value: "" }, "Any status"), h("option", { value: "ok" }, "ok (complete)"), h("option", { value: "partial" }, "partial (cut short)"));
    const results = h("div", {});
    const more = h("div", { class: "list-status" });
    const csv = h("button", { type: "button", class: "secondary", disabled: true }, "Download CSV");
    let rows = [];
    let shown = null; // the query the table shows

    api
      .listAll("admin/teams", {}, { signal })
      .then(({ items }) => {
        const mine = items.filter((t) => admin || t.your_role === "admin");
        for (const t of mine) team.appendChild(h("option", { value: t.id }, t.name));
        teamField.hidden = !mine.length;
      })
      .catch(() => {});
    PW.keys.models().then((catalog) => {
      for (const m of catalog) model.appendChild(h("option", { value: m.id }, m.id));
    }).catch(() => {});

    const query = () => ({
      from: from.value,
      to: to.value,
      key: key.value.trim(),
      owner: owner ? owner.value.trim() : undefined,
      team: team.value || undefined,
      model: model.value,
      status: status.value,
    });

    function render(page) {
      replace(
        results,
        rows.length
          ? ui.table(columns(admin || Boolean(shown && shown.team)), rows, { caption: `${count(rows.length)} request${rows.length === 1 ? "" : "s"}, newest first` })
          : ui.empty(page.has_more ? "No matching request yet in the part of the range searched so far." : "No request matches these filters in this range.")
      );
      csv.disabled = !rows.length && !page.has_more;
      replace(
        more,
        page.has_more
          ? [
              h("span", { class: "muted" }, rows.length < PAGE_SIZE ? `Searched back to ${PW.dateTime(page.searched_to)} UTC. ` : ""),
              h("button", { type: "button", class: "secondary", onclick: (e) => loadMore(e.target, page.next_cursor) }, rows.length < PAGE_SIZE ? "Search further back" : "Load more requests"),
            ]
          : rows.length
            ? h("span", { class: "muted" }, "That is every request in this range.")
            : null
      );
    }

    async function loadMore(button, cursor) {
      button.disabled = true;
      button.textContent = "Loading…";
      try {
        const page = await api.get("admin/requests", { ...shown, limit: PAGE_SIZE, cursor }, { signal });
        rows = rows.concat(page.data);
        render(page);
        PW.announce(`${rows.length} requests shown`);
      } catch (error) {
        if (error.name === "AbortError") return;
        if (error instanceof PW.auth.SessionExpired) return PW.app.sessionExpired();
        replace(more, ui.errorBox(error));
      }
    }

    csv.addEventListener("click", async () => {
      if (!shown) return;
      const bar = ui.progress("Preparing the CSV");
      const controller = new AbortController();
      signal.addEventListener("abort", () => controller.abort());
      bar.cancel.addEventListener("click", () => controller.abort());
      replace(more, bar.el);
      let all = [];
      let cursor = null;
      try {
        do {
          const page = await api.get("admin/requests", { ...shown, limit: 200, cursor }, { signal: controller.signal });
          all = all.concat(page.data);
          cursor = page.next_cursor;
          bar.update(all.length, Boolean(cursor), "requests");
        } while (cursor && all.length < CSV_MAX_ROWS);
      } catch (error) {
        if (error.name === "AbortError") return replace(more, h("span", { class: "muted" }, "CSV cancelled."));
        if (error instanceof PW.auth.SessionExpired) return PW.app.sessionExpired();
        return replace(more, ui.errorBox(error));
      }
      const name = `pennyworth-requests-${shown.from}-${shown.to}.csv`;
      PW.downloadFile(name, "text/csv", PW.toCsv(all, CSV_COLUMNS));
      bar.finish(`${count(all.length)} requests in ${name}${cursor ? ` (stopped at ${count(CSV_MAX_ROWS)}; the CLI's --all has no limit)` : ""}.`);
    });

    const filters = ui.form(
      [
        h(
          "div",
          { class: "filters" },
          ui.field("From (UTC)", from),
          ui.field("To (UTC)", to),
          ui.field("Key", key),
          owner ? ui.field("Person", owner) : null,
          teamField,
          ui.field("Model", model),
          ui.field("Status", status)
        ),
      ],
      async () => {
        csv.disabled = true;
        replace(more);
        replace(results, ui.loading("Loading requests…"));
        const wanted = query();
        let page;
        try {
          page = await api.get("admin/requests", { ...wanted, limit: PAGE_SIZE }, { signal });
        } catch (error) {
          replace(results); // the form shows the API's error, next to its field
          throw error;
        }
        // The person asked for, as the log found them (their sub): later pages and the CSV send it,
        // so the gateway does not look them up in the user pool again for each page.
        shown = wanted.owner && page.owner ? { ...wanted, owner: page.owner } : wanted;
        rows = page.data;
        render(page);
      },
      { submitLabel: "Show requests" }
    );
    filters.classList.add("query-form");
    replace(
      root,
      ui.pageHeader(
        "Requests",
        admin
          ? "Every billed request, newest first: who, which key and model, what it cost and how long it took."
          : "Every request billed to your keys, newest first: which key and model, what it cost and how long it took.",
        csv
      ),
      h("p", { class: "notice privacy", role: "note" }, h("strong", {}, "No prompt or answer text is stored. "), "The gateway keeps what each request cost, never what it said; this log is all there is."),
      filters,
      results,
      more
    );
    filters.requestSubmit();
  }

  PW.requests = { requestsPage };
})();
