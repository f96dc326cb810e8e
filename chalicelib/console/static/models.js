// pennyworth console: the admin "Models" page. The live catalog with its prices per million
// tokens, an add/edit form (new prices become a new price version), enable/disable, remove, and
// the model test (one billed call through the whole path: status, latency, tokens, exact cost),
// and the guardrail prices (per 1,000 text units, versioned like a model's).
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const { h, replace, announce, ui, api } = PW;

  const RATES = [
    ["input", "Input"],
    ["output", "Output"],
    ["cache_read", "Cache read"],
    ["cache_write", "Cache write (5 min)"],
    ["cache_write_1h", "Cache write (1 h)"],
  ];

  function perMillion(value) {
    return value === null || value === undefined ? h("span", { class: "muted" }, "—") : h("span", { class: "money" }, `$${value}`);
  }

  // In and out first, then the cache's rates, then the tiers: what a reader compares first.
  function pricesCell(p) {
    return h(
      "div",
      { class: "prices" },
      h("div", {}, "in ", perMillion(p.input), " · out ", perMillion(p.output)),
      h("div", { class: "muted" }, "cache read ", perMillion(p.cache_read), " · write ", perMillion(p.cache_write), " (5 min), ", perMillion(p.cache_write_1h), " (1 h)"),
      (p.tiers || []).length ? h("div", { class: "muted" }, tiersText(p)) : null
    );
  }

  function tiersText(prices) {
    const tiers = (prices && prices.tiers) || [];
    if (!tiers.length) return h("span", { class: "muted" }, "none");
    return tiers.map((t) => h("div", {}, `above ${Number(t.above_input_tokens).toLocaleString("en-US")} tokens: $${t.input} in, $${t.output} out`));
  }

  function servedBy(m) {
    if (m.provider === "openai") return h("div", {}, h("code", {}, m.model_id), h("div", { class: "muted" }, m.base_url || ""));
    return h("div", {}, h("code", {}, m.model_id), m.region ? h("div", { class: "muted" }, m.region) : null);
  }

  // --- Add and edit --------------------------------------------------------------------------

  function modelDialog(current, onDone) {
    const editing = Boolean(current);
    ui.dialog(editing ? `Edit ${current.id}` : "Add a model", (close) => {
      const input = (name, attrs = {}) => h("input", { name, type: "text", autocomplete: "off", spellcheck: "false", ...attrs });
      const alias = editing ? null : input("alias", { required: true, maxlength: "128", autofocus: true, placeholder: "nova-pro" });
      const provider = h(
        "select",
        { name: "provider" },
        h("option", { value: "bedrock" }, "Amazon Bedrock"),
        h("option", { value: "openai" }, "OpenAI-compatible API")
      );
      provider.value = editing ? current.provider : "bedrock";
      const modelId = input("model_id", { required: true, value: editing ? current.model_id : "", placeholder: "us.amazon.nova-pro-v1:0", autofocus: editing });
      const aliases = input("aliases", { value: editing ? (current.aliases || []).join(", ") : "", placeholder: "other names, comma-separated" });
      const region = input("region", { value: editing ? current.region || "" : "", placeholder: "the stack's region" });
      const baseUrl = input("base_url", { type: "url", value: editing ? current.base_url || "" : "", placeholder: "https://api.openai.com/v1" });
      const keyParameter = input("api_key_parameter", { value: editing ? current.api_key_parameter || "" : "", placeholder: "/pennyworth/<stack>/openai" });
      const mode = editing ? null : h("select", { name: "mode" }, h("option", { value: "chat" }, "chat"), h("option", { value: "embedding" }, "embedding"));
      const rates = RATES.map(([name, label]) => [
        name,
        label,
        input(`prices.${name}`, { inputmode: "decimal", pattern: "\\d{1,9}(\\.\\d{1,12})?", placeholder: editing ? (current.prices || {})[name] : "from LiteLLM's price map" }),
      ]);
      const effective = editing ? h("input", { name: "effective_from", type: "datetime-local" }) : null;
      const force = h("input", { type: "checkbox", name: "force", id: PW.uid("force") });
      const enabled = editing ? null : h("input", { type: "checkbox", name: "enabled", id: PW.uid("enabled"), checked: true });
      // Fallbacks (aliases tried in order when throttled or failing) and a Bedrock guardrail (docs/resilience.md).
      const fallbacks = input("fallbacks", { value: editing ? (current.fallbacks || []).join(", ") : "", placeholder: "e.g. claude-haiku-4-5-global" });
      const guardrail = input("guardrail", { value: editing && current.guardrail ? `${current.guardrail.id}:${current.guardrail.version}` : "", placeholder: "guardrail id:version" });
      const note = h("textarea", { name: "note", rows: "2", maxlength: "500" });
      note.value = editing ? current.note || "" : "";
      const bedrockOnly = ui.field("Region (optional)", region, "Bedrock: the region to call it in. An inference profile (us., eu., global.) is part of the model id.");
      const openaiOnly = h(
        "div",
        {},
        ui.field("Base URL", baseUrl, "The API's base URL, ending in /v1."),
        ui.field("API key (SSM parameter, optional)", keyParameter, "A SecureString under the stack's ProviderKeyPrefix. The key itself never passes through the console.")
      );
      const showProvider = () => {
        bedrockOnly.hidden = provider.value !== "bedrock";
        openaiOnly.hidden = provider.value !== "openai";
      };
      provider.addEventListener("change", showProvider);
      showProvider();
      const priceFields = h(
        "fieldset",
        { class: "field" },
        h("legend", {}, editing ? "New prices, USD per million tokens (a new price version; empty: unchanged)" : "Prices, USD per million tokens (empty: LiteLLM's price map)"),
        h("div", { class: "price-grid" }, rates.map(([, label, control]) => ui.field(label, control))),
        effective ? ui.field("New prices apply from (optional, UTC)", effective, "Now, or a later time. Requests admitted before it keep the old prices.") : null,
        h("div", { class: "check" }, force, h("label", { for: force.id }, "Accept a price over $1,000 per million tokens"))
      );
      return ui.form(
        [
          alias ? ui.field("Alias", alias, "What callers send as model. Cannot change later.") : null,
          ui.field("Provider", provider),
          ui.field("Model id", modelId, "Bedrock's model or inference-profile id, or the upstream's model name."),
          ui.field("Other names (optional)", aliases, "Names callers may also send, e.g. the Anthropic ids Claude Code sends."),
          bedrockOnly,
          openaiOnly,
          mode ? ui.field("Mode", mode) : null,
          priceFields,
          ui.field("Fallbacks (optional)", fallbacks, "Catalog aliases tried in order when this model is throttled or failing, comma-separated."),
          ui.field("Bedrock guardrail (optional)", guardrail, "Every call to this model carries it (one of the stack's GuardrailIds); one an admin put on a key, or the key's team's, wins."),
          ui.field("Note (optional)", note),
          enabled ? h("div", { class: "check" }, enabled, h("label", { for: enabled.id }, "Serve it now (untick to test it first)")) : null,
        ],
        async () => {
          const body = {};
          if (alias) body.alias = alias.value.trim();
          if (!editing || provider.value !== current.provider) body.provider = provider.value;
          if (!editing || modelId.value.trim() !== current.model_id) body.model_id = modelId.value.trim();
          const names = aliases.value.split(",").map((s) => s.trim()).filter(Boolean);
          if (!editing || names.join(",") !== (current.aliases || []).join(",")) body.aliases = names;
          const optional = (control, key) => {
            const value = control.value.trim();
            if (!editing ? value : value !== (current[key] || "")) body[key] = value || null;
          };
          if (provider.value === "bedrock") optional(region, "region");
          if (provider.value === "openai") {
            optional(baseUrl, "base_url");
            optional(keyParameter, "api_key_parameter");
          }
          if (mode) body.mode = mode.value;
          const prices = {};
          for (const [name, , control] of rates) if (control.value.trim()) prices[name] = control.value.trim();
          if (Object.keys(prices).length) {
            if (editing) {
              // A new version: the rates not typed stay what they are.
              for (const [name] of RATES) if (!(name in prices) && current.prices[name] !== undefined) prices[name] = current.prices[name];
              if ((current.prices.tiers || []).length) prices.tiers = current.prices.tiers.map(({ above_input_tokens, input: i, output, cache_read, cache_write, cache_write_1h }) => ({ above_input_tokens, input: i, output, cache_read, cache_write, cache_write_1h }));
            }
            body.prices = prices;
          }
          if (effective && effective.value) body.effective_from = effective.value.length === 16 ? `${effective.value}:00Z` : `${effective.value}Z`;
          if (force.checked) body.force = true;
          const chain = fallbacks.value.split(",").map((s) => s.trim()).filter(Boolean);
          if (editing ? chain.join(",") !== (current.fallbacks || []).join(",") : chain.length) body.fallbacks = chain.length ? chain : null;
          const shownGuardrail = editing && current.guardrail ? `${current.guardrail.id}:${current.guardrail.version}` : "";
          if (guardrail.value.trim() !== shownGuardrail) {
            const [id, version] = guardrail.value.trim().split(":");
            body.guardrail = id ? { id, version: version || "DRAFT" } : null;
          }
          if (!editing || note.value.trim() !== (current.note || "")) body.note = note.value.trim() || null;
          if (enabled && !enabled.checked) body.enabled = false;
          if (editing && !Object.keys(body).length) throw new PW.ApiError("Nothing to change.");
          const saved = editing
            ? await api.patch(`admin/models/${encodeURIComponent(current.id)}`, body)
            : await api.post("admin/models", body);
          close("saved");
          PW.keys.forgetModels();
          ui.toast(editing ? `${saved.id} saved.` : `${saved.id} added: callers may use it now.`);
          onDone();
        },
        { submitLabel: editing ? "Save changes" : "Add model", cancel: () => close() }
      );
    });
  }

  // --- Test and remove -----------------------------------------------------------------------

  async function testModel(m, button) {
    button.disabled = true;
    const label = button.textContent;
    button.textContent = "Testing…";
    try {
      const result = await api.post(`admin/models/${encodeURIComponent(m.id)}/test`, {});
      ui.dialog(`Test of ${m.id}`, (close) => {
        const usage = result.usage || {};
        const rows = [
          ["Status", result.ok ? `${result.status} OK` : `${result.status} failed`],
          ["Latency", `${result.latency_ms} ms`],
          ["Tokens", result.ok ? `${usage.input_tokens} in, ${usage.output_tokens} out` : "—"],
          ["Cost (exact)", result.ok ? `$${result.cost_usd}` : "—"],
          ["Price version", result.price_version ?? "—"],
          ["Served by", result.served_by || "—"],
          ["Billed to key", result.key_id],
          ["Answer", result.answer || (result.error && result.error.message) || "—"],
        ];
        return h(
          "div",
          { class: "test-result" },
          h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
          h("div", { class: "form-actions" }, h("button", { type: "button", class: "primary", onclick: () => close() }, "Close"))
        );
      });
      announce(result.ok ? `Test of ${m.id} passed.` : `Test of ${m.id} failed.`);
    } catch (error) {
      if (error instanceof PW.auth.SessionExpired) return PW.app.sessionExpired();
      ui.toast(`Test of ${m.id}: ${error.message}`);
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  }

  function removeDialog(m, onDone) {
    ui.dialog(`Remove ${m.id}?`, (close) => {
      const force = h("input", { type: "checkbox", name: "force", id: PW.uid("force") });
      return ui.form(
        [
          h("p", {}, "Callers naming it get “model not found” from now on. Its price history is kept, so past bills stay explained."),
          h("div", { class: "check" }, force, h("label", { for: force.id }, "Also take it out of the keys that allow it (each change audited)")),
        ],
        async () => {
          await api.del(`admin/models/${encodeURIComponent(m.id)}`, force.checked ? { force: "true" } : {});
          close("removed");
          PW.keys.forgetModels();
          ui.toast(`${m.id} removed.`);
          onDone();
        },
        { submitLabel: "Remove model", cancel: () => close(), danger: true }
      );
    });
  }

  // --- The page ------------------------------------------------------------------------------

  // --- Guardrail prices (USD per 1,000 text units; LiteLLM's map unless an admin set them) ----

  function guardrailPricesCard(signal) {
    const slot = h("div", {});
    async function load() {
      await ui.withLoading(
        slot,
        "Loading the guardrail prices…",
        () => api.get("admin/guardrail-prices", {}, { signal }),
        (found) => guardrailPrices(found, load)
      );
    }
    load();
    return slot;
  }

  function guardrailPrices(found, reload) {
    const current = found.in_force.per_1000_units;
    const defaults = found.default.per_1000_units;
    const counters = [...new Set([...Object.keys(current), ...Object.keys(defaults)])].sort();
    const inputs = counters.map((c) => h("input", { name: c, type: "text", inputmode: "decimal", value: current[c] || "", placeholder: "not priced", autocomplete: "off", spellcheck: "false" }));
    const effective = h("input", { name: "effective_from", type: "text", placeholder: "now (or e.g. 2027-01-01T00:00:00Z)", autocomplete: "off", spellcheck: "false" });
    const form = ui.form(
      [
        h("div", { class: "two-fields" }, counters.map((c, i) => ui.field(c, inputs[i], defaults[c] !== undefined ? `LiteLLM's map: $${defaults[c]}` : "Not in LiteLLM's map."))),
        ui.field("Effective from", effective, "When the new prices apply (ISO 8601 UTC; never in the past). Requests admitted before keep the old ones."),
      ],
      async () => {
        // Only what changed: each change makes a new version, the other counters carried over.
        const changes = {};
        counters.forEach((c, i) => {
          const value = inputs[i].value.trim();
          if (value !== (current[c] || "")) changes[c] = value === "" ? null : value;
        });
        if (!Object.keys(changes).length) {
          ui.toast("Nothing changed.");
          return;
        }
        const body = { per_1000_units: changes };
        if (effective.value.trim()) body.effective_from = effective.value.trim();
        const saved = await api.patch("admin/guardrail-prices", body);
        const latest = saved.versions[saved.versions.length - 1];
        ui.toast(`Guardrail prices version ${latest.version} from ${latest.effective_from}.`);
        reload();
      },
      { submitLabel: "Save guardrail prices" }
    );
    const versions = ui.table(
      [
        { label: "Version", cell: (v) => String(v.version), class: "num" },
        { label: "From (UTC)", cell: (v) => PW.timeEl(v.effective_from) },
        { label: "Prices", cell: (v) => Object.entries(v.per_1000_units).map(([c, p]) => h("div", {}, `${c} $${p}`)) },
        { label: "Set by", cell: (v) => v.set_by || "—" },
      ],
      found.versions,
      { caption: "Versions an admin set", emptyText: "No version set: LiteLLM's map prices every guardrail." }
    );
    return ui.card("Guardrail prices, USD per 1,000 text units", [
      h("p", { class: "muted" }, "What Bedrock guardrails cost per policy type. Changes apply without a deploy, to requests admitted from their effective time."),
      h("p", {}, h("strong", {}, `In force: ${found.in_force.version ? `version ${found.in_force.version}` : "LiteLLM's map"}`)),
      versions,
      form,
    ]);
  }

  function modelsPage(root, signal) {
    const results = h("div", {});
    async function load() {
      await ui.withLoading(
        results,
        "Loading the catalog…",
        () => api.get("admin/models", {}, { signal }),
        (page) => {
          const data = page.data || [];
          const actions = (m) => {
            if (m.status === "unreadable") return h("span", { class: "badge status-revoked" }, "unreadable");
            const test = h("button", { type: "button", class: "secondary small", "aria-label": `Test ${m.id}` }, "Test");
            test.addEventListener("click", () => testModel(m, test));
            return h(
              "div",
              { class: "row-actions" },
              h("button", { type: "button", class: "secondary small", "aria-label": `Edit ${m.id}`, onclick: () => modelDialog(m, load) }, "Edit"),
              h(
                "button",
                {
                  type: "button",
                  class: "secondary small",
                  "aria-label": `${m.enabled ? "Disable" : "Enable"} ${m.id}`,
                  onclick: async () => {
                    try {
                      await api.patch(`admin/models/${encodeURIComponent(m.id)}`, { enabled: !m.enabled });
                      PW.keys.forgetModels();
                      ui.toast(`${m.id} ${m.enabled ? "disabled" : "enabled"}.`);
                      load();
                    } catch (error) {
                      ui.toast(`${m.id}: ${error.message}`);
                    }
                  },
                },
                m.enabled ? "Disable" : "Enable"
              ),
              test,
              h("button", { type: "button", class: "secondary small", "aria-label": `Remove ${m.id}`, onclick: () => removeDialog(m, load) }, "Remove")
            );
          };
          return ui.table(
            [
              { label: "Model", cell: (m) => h("div", {}, h("strong", {}, m.id), h("div", { class: "muted" }, [m.mode, m.aliases && m.aliases.length ? `also ${m.aliases.join(", ")}` : null].filter(Boolean).join(" · ")), m.error ? h("div", { class: "muted" }, m.error) : null) },
              { label: "Served by", cell: (m) => (m.model_id ? servedBy(m) : "—") },
              { label: "Status", cell: (m) => (m.status === "unreadable" ? "—" : h("span", { class: `badge status-${m.enabled ? "active" : "expired"}` }, m.enabled ? "enabled" : "disabled")) },
              { label: "Prices per million tokens", cell: (m) => (m.prices ? pricesCell(m.prices) : "—") },
              { label: "Actions", class: "actions-cell", cell: actions },
            ],
            data,
            { caption: `${data.length} model${data.length === 1 ? "" : "s"}; prices in USD per million tokens`, emptyText: "The catalog is empty: add a model." }
          );
        }
      );
    }
    replace(
      root,
      ui.pageHeader(
        "Models",
        "The models callers may use, where each is served and what it costs. Changes apply without a deploy: at once here, on every gateway function within 30 seconds.",
        h("button", { type: "button", class: "primary", onclick: () => modelDialog(null, load) }, "Add a model")
      ),
      results,
      guardrailPricesCard(signal)
    );
    load();
  }

  PW.models = { modelsPage };
})();
