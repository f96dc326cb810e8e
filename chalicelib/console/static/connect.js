// pennyworth console: "Connect a client": the base URL and ready-to-copy snippets for the
// openai SDK, curl, Claude Code and Codex, with the chosen key's prefix filled in.
// Secrets are never shown here: the snippets read the key from PENNYWORTH_API_KEY.
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const { h, replace, ui, api } = PW;

  function snippets({ root, base, prefix, model, claudeModel }) {
    const keyLine = `export PENNYWORTH_API_KEY="${prefix}-…"   # paste your whole key: it starts with ${prefix}-`;
    return [
      {
        title: "1. Your key, in your shell",
        text: keyLine,
        note: "Every snippet below reads the key from this variable, so it stays out of files and code.",
      },
      {
        title: "OpenAI SDK (Python)",
        text: [
          "import os",
          "from openai import OpenAI",
          "",
          `client = OpenAI(base_url="${base}", api_key=os.environ["PENNYWORTH_API_KEY"])`,
          "reply = client.chat.completions.create(",
          `    model="${model}",`,
          '    messages=[{"role": "user", "content": "Hello!"}],',
          ")",
          "print(reply.choices[0].message.content)",
        ].join("\n"),
        note: "Any OpenAI-compatible tool works the same way: base URL plus key (OPENAI_BASE_URL and OPENAI_API_KEY for most).",
      },
      {
        title: "curl",
        text: [
          `curl ${base}/chat/completions \\`,
          '  -H "Authorization: Bearer $PENNYWORTH_API_KEY" \\',
          '  -H "Content-Type: application/json" \\',
          `  -d '{"model": "${model}", "messages": [{"role": "user", "content": "Hello!"}]}'`,
        ].join("\n"),
      },
      {
        title: "Claude Code",
        text: [
          `export ANTHROPIC_BASE_URL="${root}"`,
          'export ANTHROPIC_AUTH_TOKEN="$PENNYWORTH_API_KEY"',
          `export ANTHROPIC_MODEL="${claudeModel}"`,
          `export ANTHROPIC_DEFAULT_HAIKU_MODEL="${claudeModel}"`,
          "claude",
        ].join("\n"),
        note: "Claude Code speaks the Anthropic Messages API (/v1/messages): its base URL is the gateway's root, without /v1.",
      },
      {
        title: "Codex (~/.codex/config.toml)",
        // The README's tested configuration ("Use with Codex"); tests/browser/test_console.py compares them.
        text: [
          `model = "${model}"`,
          'model_provider = "pennyworth"',
          "check_for_update_on_startup = false",
          "",
          "[model_providers.pennyworth]",
          'name = "pennyworth"',
          `base_url = "${base}"`,
          'env_key = "PENNYWORTH_API_KEY"          # sent as Authorization: Bearer',
          'wire_api = "responses"',
          "",
          "[analytics]",
          "enabled = false                 # no calls to chatgpt.com",
          "",
          "[features]",
          "plugins = false                 # no calls to github.com and chatgpt.com",
          "goals = false                   # fewer tool definitions in every request: cheaper",
          "",
          "[agents]",
          "enabled = false                 # the same, for the multi-agent tools",
        ].join("\n"),
        note: "Codex uses the Responses API (/v1/responses); the web search it offers runs at OpenAI, so it is dropped. Then run: codex",
      },
    ];
  }

  function connect(root, signal) {
    const body = h("div", {});
    replace(
      root,
      ui.pageHeader("Connect a client", "Point your tools at this gateway. Choose a key and a model; the snippets follow."),
      body
    );
    ui.withLoading(
      body,
      "Loading your keys and the models…",
      async () => {
        const [{ items }, catalog] = await Promise.all([api.listAll("admin/keys", { owner: "me" }, { signal }), PW.keys.models()]);
        return { keys: items.filter((k) => k.status === "active"), catalog };
      },
      ({ keys, catalog }) => {
        const root_ = api.gatewayRoot();
        const base = `${root_}/v1`;
        const chat = catalog.filter((m) => m.mode === "chat").map((m) => m.id);
        const keySelect = h(
          "select",
          { name: "key" },
          keys.map((k) => h("option", { value: k.prefix }, `${k.name || "(no name)"} — ${k.prefix}`))
        );
        const modelSelect = h("select", { name: "model" }, chat.map((id) => h("option", { value: id }, id)));
        const out = h("div", { class: "snippets", "aria-live": "polite" });
        const render = () => {
          const keyAllows = keys.find((k) => k.prefix === keySelect.value);
          const model = modelSelect.value || "nova-micro";
          const claudeModel = chat.find((id) => id.startsWith("claude")) || model;
          if (keyAllows && keyAllows.allowed_models && !keyAllows.allowed_models.includes(model)) {
            replace(out, h("p", { class: "warning", role: "note" }, `This key may not call ${model}; it allows ${keyAllows.allowed_models.join(", ")}.`));
          } else {
            replace(out);
          }
          for (const s of snippets({ root: root_, base, prefix: keySelect.value || "pw-xxxxxxxxxxxx", model, claudeModel })) {
            out.appendChild(ui.card(s.title, s.note ? h("p", { class: "muted" }, s.note) : null, ui.codeBlock(s.text, s.title)));
          }
        };
        keySelect.addEventListener("change", render);
        modelSelect.addEventListener("change", render);
        const baseInput = h("input", { type: "text", readonly: true, value: base, class: "mono", spellcheck: "false" });
        const choices = h(
          "div",
          { class: "card connect-choices" },
          h("div", { class: "base-url" }, ui.field("Base URL (OpenAI-compatible)", baseInput), PW.copyButton(() => base, "Copy base URL")),
          keys.length
            ? h("div", { class: "filters" }, ui.field("Key", keySelect), ui.field("Model", modelSelect))
            : h("p", { class: "warning", role: "note" }, "You have no active key. ", h("a", { href: "#/keys" }, "Create one"), " first; the snippets below show where it goes.")
        );
        render();
        return h("div", {}, choices, out);
      }
    );
  }

  PW.connect = { connect, snippets };
})();
